"""Our results next to the paper's: writes paper/RESULTS.md and paper/results.png.

    python paper/compare.py                              # the committed full-scale results
    python paper/compare.py --out . --report /tmp/R.md   # whatever you have run under ./results

Reads only tidy CSVs under OUT (results/training/..., results/masc/...) and the paper's numbers in
paper/headline.csv (section 12 of the reference's shipped results). Runs are aggregated per cell
(dataset, model, p): mean, min-max and n. The best MASC layer of a cell is the layer with the
highest mean test accuracy over its runs (the first in layer order on ties); the random-init
control's rows are not counted. Beside p, the realised share of training labels that the
corruption changed (the MASC CSVs' changed_labels, else the runs' labels.npz; n/a when neither is
there). Cells of the paper that have no results under OUT are listed as not run; nothing is tuned
or filled in.

Only results made with the paper's settings are set beside the paper's numbers: full training and
test sets, no hold-out, label seed 42, the fixed data order, float32, epoch cap 500, MASC at
threshold 0.99 on every trained row, read from the run's final checkpoint. Each result's settings
come from its CSV's columns; for CSVs written before those columns, from the run's progress.pt
under OUT, or from OUT/provenance.csv (the record of who ran which cell at full scale: a run listed
there for its training stage ran with the paper's settings). Results of other or unknown settings
are summarised apart, each group saying how it differs, and never compared. A CSV that is
damaged (cut short, NaN accuracies, rows of another run) stops the comparison with one line
naming it.
"""
import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd

from MASC import cli, data, models, results, training
from MASC.corruption import RunLabels
from MASC.errors import MASCError

HERE = Path(__file__).resolve().parent
OUT = HERE / "full_scale"           # an --out root of the scripts (only its tidy CSVs are read)
PAPER = HERE / "headline.csv"
REPORT = HERE / "RESULTS.md"
FIGURE = HERE / "results.png"
NOTES = HERE / "NOTES.md"           # our findings where we differ, appended to the report

CELL = ["dataset", "model", "corrupt"]
WHAT = {  # our quantity -> (what it is, the paper's quantity and labelling in headline.csv)
    "test_acc_final": ("network, final test accuracy", "test_acc_final", ""),
    "test_acc_peak": ("network, peak test accuracy over epochs", "test_acc_peak", ""),
    "train_acc_final": ("network, final train accuracy vs corrupted labels", "train_acc_final", ""),
    "epochs": ("epochs trained", "epochs", ""),
    "masc_best_exp1": ("MASC best layer, corrupted-label subspaces (exp1)",
                       "masc_best_test_acc", "corrupted"),
    "masc_best_exp2": ("MASC best layer, true-label subspaces (exp2)",
                       "masc_best_test_acc", "original"),
    "masc_best_exp3": ("MASC best layer of the p = 0.0 model, labels corrupted at p (exp3)",
                       None, ""),
}
EPOCH_CAP = 500  # the reference's range(500)
TRAINING_NEEDS = ["dataset", "model", "corrupt", "run", "epoch", "train_acc_vs_corrupted",
                  "test_acc"]
MASC_NEEDS = ["dataset", "model", "corrupt", "run", "exp", "layer", "test_acc"]
TRAINED = ["subset", "n_test", "holdout", "label_seed", "shuffle", "bf16", "tf32", "batch", "init",
           "scaling", "epoch_cap"]


def paper_settings(dataset, model):
    """The paper's training settings of a (dataset, model), as the training CSVs record them."""
    spec = data.info(dataset)
    return {"subset": spec.train_size, "n_test": spec.test_size, "holdout": 0.0,
            "label_seed": 42, "shuffle": False, "bf16": False, "tf32": False,
            "batch": models.batch_size(model, dataset), "init": "pytorch", "scaling": "reference",
            "epoch_cap": EPOCH_CAP}


def differences(settings, key):
    """How ``settings`` (a run's, None: not recorded) differ from the paper's for the run
    ``key``, as text ("" for none)."""
    if settings is None:
        return "settings not recorded"
    paper = paper_settings(key.dataset, key.model)
    found = []
    for name, value in settings.items():
        want = paper.get(name)
        if value is None or value != value or want is None:
            continue
        if (value < want) if name == "epoch_cap" else (value != want):
            found.append(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}")
    return ", ".join(found)


def read(path, needs):
    """A result CSV, checked: an empty, unreadable or column-less file is one error line."""
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise MASCError(f"{path} is empty; rerun what writes it, or move it away") from None
    except Exception as e:  # pandas raises several types for garbage
        raise MASCError(f"{path} is unreadable ({type(e).__name__}); rerun what writes it, or "
                        f"move it away") from None
    missing = [c for c in needs if c not in frame]
    if missing or frame.empty:
        raise MASCError(f"{path} lacks {', '.join(missing) or 'rows'} (not a results CSV of this "
                        f"project, or damaged); rerun what writes it, or move it away")
    return frame


def check_rows(frame, key, path, **more):
    """Refuse rows that are not of the run (and experiment) the file's name says, or are cut
    short (NaN where a number must be)."""
    expected = {**key.ids(), **more}
    for column, value in expected.items():
        if not frame[column].eq(value).all():
            raise MASCError(f"{path} holds rows of another run ({column} "
                            f"{sorted(set(frame[column].astype(str)))}, its name says {value}): "
                            f"copied? move it away")
    needs = [c for c in ("epoch", "train_acc_vs_corrupted", "test_acc", "layer") if c in frame]
    missing = frame.isna().any() & frame.columns.isin(needs)
    if len(frame) > 1:  # a last row cut short: NaN where every other row has a value
        missing |= frame.iloc[-1].isna() & frame.iloc[:-1].notna().all()
    if missing.any():
        columns = ", ".join(missing.index[missing])
        raise MASCError(f"{path} has rows with missing values ({columns}): "
                        f"cut short while written, or damaged; rerun what writes it (training "
                        f"rewrites it from its progress.pt), or move it away")


def recorded_settings(out, key, frame):
    """A run's training settings: its CSV's columns, else its progress.pt's, else the paper's
    if OUT/provenance.csv lists its training, else None (not recorded)."""
    if set(TRAINED) <= set(frame):
        return {name: frame[name].iloc[-1] for name in TRAINED}
    state = key.load_progress()
    if state is not None:  # settings added since it was saved: what every run had before them
        config, spec = training.saved_config(state["config"], key), data.info(key.dataset)
        return {"subset": config["subset"] or spec.train_size,
                "n_test": config["test_subset"] or spec.test_size,
                **{name: config[name] for name in TRAINED[2:-1]},
                "epoch_cap": state.get("schedule", {}).get("epochs")}
    if (key.dataset, key.model, key.corrupt, key.run) in listed_full_scale(out):
        return paper_settings(key.dataset, key.model)
    return None


def listed_full_scale(out):
    """The runs whose training OUT/provenance.csv lists (cell "MODEL / DATASET p = P run R")."""
    path = Path(out) / "provenance.csv"
    if not path.exists():
        return set()
    listed = set()
    for row in read(path, ["cell", "stage"]).itertuples():
        match = re.fullmatch(r"(\w+) / (\w+) p = ([0-9.]+) run (\d+)", str(row.cell).strip())
        if match and row.stage == "training":
            listed.add((match[2], match[1], float(match[3]), int(match[4])))
    return listed


def per_run(out):
    """One row per (cell, run, quantity) in %: the training CSVs' final, peak and epoch count,
    and each MASC experiment's per-layer test accuracy, with ``differs``: how the result's
    settings differ from the paper's ("" for none); and the runs still training (their CSVs do
    not say ``finished``), which count nowhere else."""
    rows, unfinished, trained = [], [], {}
    for key, _, path in results.find(out, "training"):
        h = read(path, TRAINING_NEEDS)
        check_rows(h, key, path)
        h = h.sort_values("epoch")
        if not h.epoch.tolist() == list(range(1, len(h) + 1)) or (
                "epochs_trained" in h and h.epochs_trained.ne(len(h)).any()):
            raise MASCError(f"{path} has {len(h)} epochs but not epochs 1 to "
                            f"{int(h.get('epochs_trained', h.epoch).max())} (cut short while "
                            f"written, or damaged); rerun the training (it rewrites the CSV "
                            f"from progress.pt), or move it away")
        cell = {**{c: getattr(key, c) for c in CELL}, "run": key.run}
        settings = recorded_settings(out, key, h)
        trained[key] = (settings, int(h.epoch.iloc[-1]))
        if not ("finished" in h and h.finished.eq(True).all()):  # absent or NaN: not finished
            unfinished.append({**cell, "epochs": int(h.epoch.iloc[-1]),
                               "train": 100 * h.train_acc_vs_corrupted.iloc[-1],
                               "test": 100 * h.test_acc.iloc[-1]})
            continue
        cell["differs"] = differences(settings, key)
        rows += [{**cell, "quantity": "test_acc_final", "value": 100 * h.test_acc.iloc[-1]},
                 {**cell, "quantity": "test_acc_peak", "value": 100 * h.test_acc.max()},
                 {**cell, "quantity": "train_acc_final",
                  "value": 100 * h.train_acc_vs_corrupted.iloc[-1]},
                 {**cell, "quantity": "epochs", "value": float(h.epoch.iloc[-1])}]
    for key, named, path in results.find(out, "masc"):
        frame = read(path, MASC_NEEDS)
        check_rows(frame, key, path, exp=named["exp"])
        model = key.at(0.0) if named["exp"] == 3 else key
        for row in frame.to_dict("records"):
            if row.get("network", "trained") == "random-init":  # the control: not the run's
                continue
            rows.append({**{c: getattr(key, c) for c in CELL}, "run": key.run,
                         "quantity": f"masc_layer_exp{row['exp']}", "layer": row["layer"],
                         "value": 100 * row["test_acc"],
                         "differs": masc_differences(out, model, row, trained)})
    frame = pd.DataFrame(rows, columns=CELL + ["run", "differs", "quantity", "layer", "value"])
    frame["layer"] = frame["layer"].fillna("")
    return frame, unfinished


def changed_labels(out):
    """{(dataset, model, p to 0.1): realised share of changed training labels, mean over runs}:
    from the MASC CSVs' changed_labels, else from the runs' labels.npz (the rows trained on)."""
    shares = {}
    for key, _, path in results.find(out, "masc"):
        frame = read(path, [])
        if "changed_labels" in frame and frame.changed_labels.notna().any():
            shares[key] = float(frame.changed_labels.dropna().iloc[0])
    for key, _, _ in results.find(out, "training"):
        if key not in shares and key.labels.exists():
            labels = RunLabels.load(key.labels)
            rows = labels.train_rows
            shares[key] = float(np.mean(labels.corrupted[rows] != labels.true[rows]))
    cells = {}
    for key, share in shares.items():
        cells.setdefault((key.dataset, key.model, round(key.corrupt, 1)), []).append(share)
    return {cell: sum(v) / len(v) for cell, v in cells.items()}


def share_text(changed, row):
    """A cell's realised share of changed labels (:func:`changed_labels`) as text."""
    share = changed.get((row.dataset, row.model, round(row.corrupt, 1)))
    return "n/a" if share is None else f"{100 * share:.1f}%"


def masc_differences(out, key, row, trained):
    """How a MASC row's settings differ from the paper's: those of the model it read (the row's
    columns where it has them, else its training run's) and its own (threshold, rows fitted,
    test images, the checkpoint's epoch against the run's final one)."""
    settings, final_epoch = trained.get(key, (None, None))
    if settings is None:
        settings = recorded_settings(out, key, pd.DataFrame([row]))
    model = {**(settings or {}), **{c: row[c] for c in ("subset", "holdout", "label_seed")
                                     if known(row.get(c))}}
    if not model:
        return "settings not recorded"
    found = [differences(model, key)]
    spec = data.info(key.dataset)
    if known(row.get("threshold")) and row["threshold"] != 0.99:
        found.append(f"threshold {row['threshold']:g}")
    rows = round(model.get("subset", spec.train_size) * (1 - model.get("holdout", 0.0)))
    if known(row.get("n_train")) and row["n_train"] != rows:
        found.append(f"MASC on {row['n_train']:g} rows")
    if known(row.get("n_test")) and row["n_test"] != spec.test_size:
        found.append(f"{row['n_test']:g} test images")
    epoch = row.get("checkpoint_epoch")
    if final_epoch and known(epoch) and epoch != final_epoch:
        found.append(f"checkpoint of epoch {epoch:g}, not the final {final_epoch}")
    return ", ".join(f for f in found if f)


def known(value):
    return value is not None and value == value


def summarise(runs):
    """Mean, min, max and n over runs per (cell, settings, quantity, layer): results of other
    settings (``differs``) apart; for each MASC experiment also its best layer as quantity
    masc_best_exp{n}."""
    keys = CELL + ["differs", "quantity", "layer"]
    stats = (runs.groupby(keys, sort=False).value.agg(["mean", "min", "max", "count"])
             .reset_index().rename(columns={"count": "n"}))
    layers = stats[stats.quantity.str.startswith("masc_layer_")]
    best = layers.loc[layers.groupby(CELL + ["differs", "quantity"], sort=False)["mean"].idxmax()]
    best = best.assign(quantity=best.quantity.str.replace("masc_layer_", "masc_best_"))
    return pd.concat([stats, best], ignore_index=True)


def paper_value(paper, cell, quantity):
    """(value, layer) the paper gives for a cell and one of our quantities, or (None, "")."""
    _, name, labels = WHAT[quantity]
    if name is None:
        return None, ""
    found = paper[(paper.dataset == cell[0]) & (paper.model == cell[1])
                  & (paper.corrupt.round(1) == round(cell[2], 1)) & (paper.quantity == name)
                  & (paper.subspaces_from.fillna("") == labels)]
    if len(found):
        return float(found.value.iloc[0]), found.layer.fillna("").iloc[0]
    if name == "masc_best_test_acc":  # per-layer tables only (ResNet, 12.2): their best layer
        layers = paper[(paper.dataset == cell[0]) & (paper.model == cell[1])
                       & (paper.corrupt.round(1) == round(cell[2], 1))
                       & (paper.quantity == "masc_test_acc") & (paper.subspaces_from == labels)]
        if len(layers):
            top = layers.loc[layers.value.idxmax()]
            return float(top.value), top.layer
    return None, ""


def comparison(summary, paper):
    """One row per (cell, quantity) we have at the paper's settings: ours (mean, min, max, n,
    layer) and the paper's."""
    rows = []
    summary = summary[summary.differs == ""]
    cells = summary[CELL].drop_duplicates().sort_values(CELL).itertuples(index=False)
    for cell in cells:
        mine = summary[(summary.dataset == cell[0]) & (summary.model == cell[1])
                       & (summary.corrupt == cell[2])]
        for quantity in WHAT:
            got = mine[mine.quantity == quantity]
            if not len(got):
                continue
            got = got.iloc[0]
            value, layer = paper_value(paper, tuple(cell), quantity)
            rows.append({**dict(zip(CELL, cell)), "quantity": quantity, "ours": got["mean"],
                         "ours_min": got["min"], "ours_max": got["max"], "n": int(got.n),
                         "ours_layer": got.layer, "paper": value, "paper_layer": layer,
                         "diff": None if value is None else got["mean"] - value})
    return pd.DataFrame(rows, columns=[*CELL, "quantity", "ours", "ours_min", "ours_max", "n",
                                       "ours_layer", "paper", "paper_layer", "diff"])


def apart(summary):
    """The quantities we have at other (or unknown) settings than the paper's, per cell and
    settings: never set beside the paper's numbers."""
    other = summary[(summary.differs != "") & summary.quantity.isin(list(WHAT))]
    return other.sort_values(CELL + ["differs"], kind="stable").reset_index(drop=True)


def not_run(paper, summary):
    """The paper's cells with no results here at the paper's settings."""
    cells = paper[CELL].drop_duplicates()
    summary = summary[summary.differs == ""]
    have = set(map(tuple, summary[CELL].round({"corrupt": 1}).itertuples(index=False)))
    return [c for c in cells.sort_values(CELL).itertuples(index=False)
            if (c[0], c[1], round(c[2], 1)) not in have]


def number(value, quantity, mean=True):
    """A percentage to 0.1; an epoch count whole (a mean of counts to 0.1)."""
    if value is None or value != value:
        return "not in the paper"
    whole = quantity == "epochs" and (not mean or value == int(value))
    return f"{value:.0f}" if whole else f"{value:.1f}"


def ours_text(quantity, mean, low, high, n, layer):
    text = number(mean, quantity)
    if n > 1:
        text += f" [{number(low, quantity, mean=False)}-{number(high, quantity, mean=False)}]"
    return text + (f" ({layer})" if layer else "")


def markdown(frame):
    """A DataFrame as a markdown table (its values as written in the CSV)."""
    rows = [list(frame.columns), ["---"] * frame.shape[1]]
    rows += [["" if v != v else str(v) for v in row] for row in frame.itertuples(index=False)]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in rows)


def report(table, missing, provenance, notes, unfinished=(), source="paper/full_scale",
           others=(), changed=None):
    """The markdown report (deterministic: the same CSVs give the same bytes); ``changed``: the
    realised share of changed labels per cell (:func:`changed_labels`)."""
    changed = changed or {}
    lines = ["# Reproduction: our results next to the paper's", "",
             f"Generated by `python paper/compare.py` from the tidy CSVs under `{source}/` "
             "and the paper's numbers in `paper/headline.csv` (section 12 of the reference's "
             "shipped results). Accuracies in %, ours as mean [min-max] over n runs; the best "
             "MASC layer is the one with the highest mean test accuracy; diff = ours - paper, "
             "in points; changed = the share of training labels the corruption at p really "
             "changed (about p x (1 - 1/C); n/a: neither the MASC CSVs nor labels.npz say).", ""]
    if len(table):
        lines += ["| dataset | model | p | changed | quantity | paper | ours | n | diff |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in table.itertuples(index=False):
            paper = number(row.paper, row.quantity)
            if row.paper_layer and row.paper is not None and row.paper == row.paper:
                paper += f" ({row.paper_layer})"
            diff = "" if row.diff is None or row.diff != row.diff else f"{row.diff:+.1f}"
            ours = ours_text(row.quantity, row.ours, row.ours_min, row.ours_max, row.n,
                             row.ours_layer)
            lines.append(f"| {row.dataset} | {row.model} | {row.corrupt:.1f} | "
                         f"{share_text(changed, row)} | "
                         f"{WHAT[row.quantity][0]} | {paper} | {ours} | {row.n} | {diff} |")
        lines.append("")
    else:
        lines += ["No results at the paper's settings found.", ""]
    if len(others):
        lines += ["## Not at the paper's settings (not compared)", "",
                  "| dataset | model | p | changed | how they differ | quantity | ours | n |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in others.itertuples(index=False):
            ours = ours_text(row.quantity, row.mean, row.min, row.max, row.n, row.layer)
            lines.append(f"| {row.dataset} | {row.model} | {row.corrupt:.1f} | "
                         f"{share_text(changed, row)} | {row.differs} | "
                         f"{WHAT[row.quantity][0]} | {ours} | {row.n} |")
        lines.append("")
    if provenance is not None and len(provenance):
        lines += ["## Where and how these ran", "", markdown(provenance), ""]
    if unfinished:
        lines += ["## Still training (not counted above)", ""]
        lines += [f"- {u['model']} / {u['dataset']} p = {u['corrupt']:.1f} run {u['run']}: "
                  f"{u['epochs']} epochs so far, train accuracy {u['train']:.2f}%, test "
                  f"{u['test']:.1f}%" for u in unfinished]
        lines.append("")
    if missing:
        lines += ["## Not run yet", "",
                  "These cells of the paper have no results here (" + str(len(missing)) + "):", ""]
        for (dataset, model), group in pd.DataFrame(missing, columns=CELL).groupby(
                ["dataset", "model"], sort=True):
            ps = ", ".join(f"{p:.1f}" for p in group.corrupt)
            lines.append(f"- {model} / {dataset}: p = {ps}")
        lines.append("")
    if notes:
        lines += [notes.rstrip(), ""]
    return "\n".join(lines)


def figure(table, path):
    """Ours against the paper's for every accuracy we can compare (y = x is agreement)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = table[table.paper.notna() & (table.quantity != "epochs")]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 100], [0, 100], color="grey", lw=1, ls="--", label="agreement")
    markers = dict(zip(WHAT, "osvD^<>"))
    for quantity, group in shown.groupby("quantity", sort=False):
        err = [group.ours - group.ours_min, group.ours_max - group.ours]
        ax.errorbar(group.paper, group.ours, yerr=err, fmt=markers[quantity], capsize=3,
                    label=WHAT[quantity][0])
        for row in group.itertuples():
            ax.annotate(f"{row.model}/{row.dataset} p={row.corrupt:.1f}", (row.paper, row.ours),
                        fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set(xlabel="paper (%)", ylabel="ours (%), mean and min-max over runs", xlim=(0, 100),
           ylim=(0, 100), title="Full-scale cells: ours vs the paper")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=150, metadata={"Software": None})
    plt.close(fig)


@cli.main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=OUT, help="results root to read (its results/ folder)")
    p.add_argument("--report", default=REPORT, help="markdown file to write")
    p.add_argument("--figure", default=FIGURE, help="PNG to write")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not (out / "results").is_dir():
        raise MASCError(f"no results/ folder under {out}; give the --out root the scripts wrote "
                        f"to")
    paper = pd.read_csv(PAPER)
    runs, unfinished = per_run(out)
    summary = summarise(runs)
    table = comparison(summary, paper)
    provenance = out / "provenance.csv"
    provenance = read(provenance, ["cell"]) if provenance.exists() else None
    notes = NOTES.read_text() if NOTES.exists() and out.resolve() == OUT.resolve() else ""
    source = "paper/full_scale" if out.resolve() == OUT.resolve() else str(args.out)
    text = report(table, not_run(paper, summary), provenance, notes, unfinished, source,
                  apart(summary), changed_labels(out))
    with results.atomic(args.report) as tmp:
        tmp.write_text(text)
    if len(table):
        with results.atomic(args.figure, ".tmp.png") as tmp:
            figure(table, tmp)
    print(f"wrote {args.report}" + (f" and {args.figure}" if len(table) else
                                     f"; no {args.figure}: no result is at the paper's settings"))


if __name__ == "__main__":
    main()
