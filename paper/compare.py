"""Our results next to the paper's: writes paper/RESULTS.md and paper/results.png.

    python paper/compare.py                              # the committed full-scale results
    python paper/compare.py --out . --report /tmp/R.md   # whatever you have run under ./results

Reads only tidy CSVs under OUT (results/training/..., results/masc/...), the runs' labels.npz and
the paper's numbers in paper/headline.csv (section 12 of the reference's shipped results). Runs are
aggregated per cell (dataset, model, p): mean, min-max and n. The best MASC layer of a cell is the
layer with the highest mean test accuracy over its runs (the first in layer order on ties); the
random-init control's rows are not counted. Beside p, the realised share of training labels that
the corruption changed (the MASC CSVs' changed_labels, else the runs' labels.npz; n/a when neither
is there). Cells of the paper that have no results under OUT are listed as not run; nothing is
tuned or filled in.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

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


def read_csvs(paths):
    frames = [pd.read_csv(p) for p in sorted(paths)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def per_run(out):
    """One row per (cell, run, quantity) in %: the training CSVs' final, peak and epoch count,
    and each MASC experiment's per-layer test accuracy; and the runs still training (their
    CSVs do not say ``finished``), which count nowhere else."""
    rows, unfinished = [], []
    training = read_csvs(Path(out).glob("results/training/*/*_Run_*.csv"))
    for keys, h in (training.groupby(CELL + ["run"], sort=True) if len(training) else []):
        h = h.sort_values("epoch")
        cell = dict(zip(CELL + ["run"], keys))
        if not ("finished" in h and h.finished.eq(True).all()):  # absent or NaN: not finished
            unfinished.append({**cell, "epochs": int(h.epoch.iloc[-1]),
                               "train": 100 * h.train_acc_vs_corrupted.iloc[-1],
                               "test": 100 * h.test_acc.iloc[-1]})
            continue
        rows += [{**cell, "quantity": "test_acc_final", "value": 100 * h.test_acc.iloc[-1]},
                 {**cell, "quantity": "test_acc_peak", "value": 100 * h.test_acc.max()},
                 {**cell, "quantity": "train_acc_final",
                  "value": 100 * h.train_acc_vs_corrupted.iloc[-1]},
                 {**cell, "quantity": "epochs", "value": float(h.epoch.iloc[-1])}]
    masc = read_csvs(Path(out).glob("results/masc/*/*/Run_*_exp[123].csv"))
    if "network" in masc:  # the random-init control's rows are not the trained network's
        masc = masc[masc.network.fillna("trained") == "trained"]
    for row in masc.itertuples() if len(masc) else []:
        rows.append({"dataset": row.dataset, "model": row.model, "corrupt": row.corrupt,
                     "run": row.run, "quantity": f"masc_layer_exp{row.exp}", "layer": row.layer,
                     "value": 100 * row.test_acc})
    frame = pd.DataFrame(rows, columns=CELL + ["run", "quantity", "layer", "value"])
    frame["layer"] = frame["layer"].fillna("")
    return frame, unfinished


def changed_labels(out):
    """{(dataset, model, p to 0.1): realised share of changed training labels, mean over runs}:
    from the MASC CSVs' changed_labels, else from the runs' labels.npz (the rows trained on)."""
    found = {}
    masc = read_csvs(Path(out).glob("results/masc/*/*/Run_*_exp[123].csv"))
    if "changed_labels" in masc:
        masc = masc.dropna(subset=["changed_labels"]).drop_duplicates(CELL + ["run"])
        for (dataset, model, p), group in masc.groupby(CELL):
            found[dataset, model, round(p, 1)] = group.changed_labels.mean()
    shares = {}
    for path in sorted(Path(out).glob("models/*_*/Network/*/Run_*/labels.npz")):
        dataset, model = path.parents[3].name.split("_", 1)
        with np.load(path) as f:
            rows = np.setdiff1d(np.arange(len(f["true"])), f["holdout"] if "holdout" in f else [])
            share = float(np.mean(f["corrupted"][rows] != f["true"][rows]))
        shares.setdefault((dataset, model, round(float(path.parents[1].name), 1)), []).append(share)
    return {**{cell: sum(v) / len(v) for cell, v in shares.items()}, **found}


def summarise(runs):
    """Mean, min, max and n over runs per (cell, quantity, layer); for each MASC experiment also
    its best layer as quantity masc_best_exp{n}."""
    keys = CELL + ["quantity", "layer"]
    stats = (runs.groupby(keys, sort=False).value.agg(["mean", "min", "max", "count"])
             .reset_index().rename(columns={"count": "n"}))
    layers = stats[stats.quantity.str.startswith("masc_layer_")]
    best = layers.loc[layers.groupby(CELL + ["quantity"], sort=False)["mean"].idxmax()]
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
    """One row per (cell, quantity) we have: ours (mean, min, max, n, layer) and the paper's."""
    rows = []
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
    return pd.DataFrame(rows)


def not_run(paper, summary):
    """The paper's cells with no results here."""
    cells = paper[CELL].drop_duplicates()
    have = set(map(tuple, summary[CELL].round({"corrupt": 1}).itertuples(index=False)))
    return [c for c in cells.sort_values(CELL).itertuples(index=False)
            if (c[0], c[1], round(c[2], 1)) not in have]


def number(value, quantity, mean=True):
    """A percentage to 0.1; an epoch count whole (a mean of counts to 0.1)."""
    if value is None or value != value:
        return "not in the paper"
    whole = quantity == "epochs" and (not mean or value == int(value))
    return f"{value:.0f}" if whole else f"{value:.1f}"


def ours_text(row):
    text = number(row.ours, row.quantity)
    if row.n > 1:
        low, high = (number(v, row.quantity, mean=False) for v in (row.ours_min, row.ours_max))
        text += f" [{low}-{high}]"
    return text + (f" ({row.ours_layer})" if row.ours_layer else "")


def markdown(frame):
    """A DataFrame as a markdown table (its values as written in the CSV)."""
    rows = [list(frame.columns), ["---"] * frame.shape[1]]
    rows += [["" if v != v else str(v) for v in row] for row in frame.itertuples(index=False)]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in rows)


def report(table, missing, provenance, notes, unfinished=(), source="paper/full_scale",
           changed=None):
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
            share = changed.get((row.dataset, row.model, round(row.corrupt, 1)))
            paper = number(row.paper, row.quantity)
            if row.paper_layer and row.paper is not None and row.paper == row.paper:
                paper += f" ({row.paper_layer})"
            diff = "" if row.diff is None or row.diff != row.diff else f"{row.diff:+.1f}"
            lines.append(f"| {row.dataset} | {row.model} | {row.corrupt:.1f} | "
                         f"{'n/a' if share is None else f'{100 * share:.1f}%'} | "
                         f"{WHAT[row.quantity][0]} | {paper} | {ours_text(row)} | {row.n} | "
                         f"{diff} |")
        lines.append("")
    else:
        lines += ["No results found.", ""]
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=OUT, help="results root to read (its results/ folder)")
    p.add_argument("--report", default=REPORT, help="markdown file to write")
    p.add_argument("--figure", default=FIGURE, help="PNG to write")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not (out / "results").is_dir():
        sys.exit(f"error: no results/ folder under {out}; give the --out root the scripts wrote to")
    paper = pd.read_csv(PAPER)
    runs, unfinished = per_run(out)
    summary = summarise(runs)
    table = comparison(summary, paper)
    provenance = out / "provenance.csv"
    provenance = pd.read_csv(provenance) if provenance.exists() else None
    notes = NOTES.read_text() if NOTES.exists() and out.resolve() == OUT.resolve() else ""
    source = "paper/full_scale" if out.resolve() == OUT.resolve() else str(args.out)
    Path(args.report).write_text(report(table, not_run(paper, summary), provenance, notes,
                                        unfinished, source, changed_labels(out)))
    if len(table):
        figure(table, args.figure)
    print(f"wrote {args.report}" + (f" and {args.figure}" if len(table) else ""))


if __name__ == "__main__":
    main()
