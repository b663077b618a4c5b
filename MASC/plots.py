"""Reading the tidy result CSVs back, summarising them over runs, and the Compare_experiments figures.

Accuracy rows come from results/probes/{ds}_{model}/{p}/Run_{r}.csv (any probe, MASC included) and
results/masc/{ds}_{model}/{p}/Run_{r}_exp{1,2}.csv (MASC with corrupted / original-label subspaces). Where a
run has MASC rows of both kinds, the probes' own win: they share the other probes' activations and
test rows. The random-init control's MASC rows (``network`` = random-init) are the probe
:data:`CONTROL`, drawn dashed. Every figure is written as PNG and PDF (matplotlib, Agg backend).
"""
import itertools
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from . import models, results  # noqa: E402
from .corruption import LABELLINGS  # noqa: E402
from .errors import MASCError  # noqa: E402

RUN_KEYS = ["dataset", "model", "corrupt", "run"]
IN_WORDS = {"corrupted": "corrupted labels", "original": "true labels"}
CONTROL = "MASC, untrained network"  # MASC on the random-init control's layers
PROBE_ORDER = ["MASC", CONTROL, "LogReg", "NCM", "kNN", "LDA", "QDA"]
COLOURS = {"MASC": "black", CONTROL: "black", "LogReg": "tab:blue", "NCM": "tab:orange",
           "kNN": "tab:green", "LDA": "tab:red", "QDA": "tab:purple"}


def _read(paths, columns=()):
    frames = [results.read_csv(p, columns) for p in sorted(paths)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_accuracy(out="."):
    """All probe and MASC test accuracies under ``out`` as one tidy frame (see the module doc)."""
    probe = _read((path for _, _, path in results.find(out, "probes")),
                  RUN_KEYS + ["probe", "labels_from", "layer", "test_acc"]).assign(source="probes")
    masc = _read((path for _, named, path in results.find(out, "masc") if named["exp"] in (1, 2)),
                 RUN_KEYS + ["subspaces_from", "layer", "test_acc", "model_test_acc"])
    if len(masc):
        masc = masc_rows(masc)
        if len(probe):
            own = probe.loc[probe.probe == "MASC", RUN_KEYS].drop_duplicates()
            masc = masc.merge(own, how="left", indicator=True)  # the control: from masc/ only
            masc = masc[(masc.pop("_merge") == "left_only") | (masc.probe == CONTROL)]
    frames = [f for f in (probe, masc) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=RUN_KEYS + ["probe", "labels_from", "layer", "test_acc", "model_test_acc", "source"])


def masc_rows(masc):
    """Rows of MASC CSVs as accuracy rows: ``labels_from``, and ``probe`` MASC (the trained
    network) or :data:`CONTROL` (the random-init control)."""
    control = masc.get("network", pd.Series("trained", index=masc.index)) == "random-init"
    return masc.rename(columns={"subspaces_from": "labels_from"}).assign(
        probe=np.where(control, CONTROL, "MASC"), source="masc")


def training_histories(out, dataset, model):
    """Per-epoch test accuracy (a fraction) of every trained run: corrupt, run, epoch, test_acc.

    Our tidy CSVs (results/training/...) first; the reference-format ones (models/.../
    Accuracy_results/{p}/Run_{r}.csv, in %) for runs that have no tidy CSV."""
    tidy = _read((path for _, _, path in results.find(out, "training", dataset, model)),
                 ["corrupt", "run", "epoch", "test_acc"])
    frames = [tidy[["corrupt", "run", "epoch", "test_acc"]]] if len(tidy) else []
    have = set(zip(tidy.corrupt, tidy.run)) if len(tidy) else set()
    for key, _, path in results.find(out, "accuracy", dataset, model):
        if (key.corrupt, key.run) not in have:
            ref = results.read_csv(path, ["epoch", "Test_accuracy"])
            frames.append(pd.DataFrame({"corrupt": key.corrupt, "run": key.run, "epoch": ref.epoch,
                                        "test_acc": ref.Test_accuracy / 100}))
    return pd.concat(frames, ignore_index=True) if frames else \
        pd.DataFrame(columns=["corrupt", "run", "epoch", "test_acc"])


def layer_order(model, layers):
    """``layers`` in the model's input-to-output order (unknown names last, as given)."""
    known = list(models.REGISTRY[model].taps) if model in models.REGISTRY else []
    return [n for n in known if n in set(layers)] + [n for n in dict.fromkeys(layers) if n not in known]


def t_summary(frame, by, value="test_acc", level=0.95):
    """Mean, standard deviation and ``level`` t-interval of ``value`` over the rows of each group
    (the runs/seeds); the interval is NaN for a single run."""
    def one(v):
        n, mean = len(v), v.mean()
        sd = v.std(ddof=1) if n > 1 else math.nan
        half = stats.t.ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
        return pd.Series({"n_runs": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half})
    return frame.groupby(by, sort=False, dropna=False)[value].apply(one).unstack().reset_index()


def summary_table(acc, out="."):
    """The paper's Table_values per (dataset, model, p): the network's final test accuracy (mean over
    runs, on the read-out's test rows), the best test accuracy it reached at any epoch (mean over
    runs of the per-run maximum, from the training CSVs) and the best-layer MASC test accuracy with
    corrupted and original-label subspaces (max over layers of the mean over runs)."""
    masc = acc[acc.probe == "MASC"]
    rows = []
    for (dataset, model, corrupt), group in masc.groupby(["dataset", "model", "corrupt"]):
        history = training_histories(out, dataset, model)
        history = history[np.isclose(history.corrupt.astype(float), corrupt)]
        runs = sorted(group.run.unique())
        best_epoch = history[history.run.isin(runs)].groupby("run").test_acc.max()
        row = {"dataset": dataset, "model": model, "corrupt": corrupt, "n_runs": len(runs),
               "model_test_acc": group.groupby("run").model_test_acc.first().mean(),
               "model_best_epoch_test_acc": best_epoch.mean() if len(best_epoch) else math.nan}
        for labels in LABELLINGS:
            means = group[group.labels_from == labels].groupby("layer").test_acc.mean()
            row[f"masc_{labels}_best"] = means.max() if len(means) else math.nan
            row[f"masc_{labels}_layer"] = means.idxmax() if len(means) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table):
    """The summary table as Markdown, accuracies in %."""
    head = ["model", "dataset", "p", "runs", "network final", "network best epoch",
            "MASC corrupted (layer)", "MASC original (layer)"]
    pct = lambda v: "n/a" if pd.isna(v) else f"{100 * v:.1f}"  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.itertuples():
        lines.append(f"| {r.model} | {r.dataset} | {r.corrupt:g} | {r.n_runs} | {pct(r.model_test_acc)} | "
                     f"{pct(r.model_best_epoch_test_acc)} | {pct(r.masc_corrupted_best)} "
                     f"({r.masc_corrupted_layer}) | {pct(r.masc_original_best)} ({r.masc_original_layer}) |")
    return "\n".join(lines) + "\n"


def save(fig, stem):
    """Write ``stem``.png and ``stem``.pdf; returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths


def _panels(rows, cols, width=3.0, height=2.6):
    fig, axes = plt.subplots(rows, cols, figsize=(max(0.6 + width * cols, 6.5), 0.9 + height * rows),
                             squeeze=False, sharey=True, layout="constrained")
    return fig, axes


def _layer_axis(ax, layers):
    ax.set_xticks(range(len(layers)), layers, rotation=45 if len(layers) > 5 else 0,
                  ha="right" if len(layers) > 5 else "center", fontsize=8)
    ax.grid(alpha=0.3)


def _probes(names):
    return [p for p in PROBE_ORDER if p in set(names)] + sorted(set(names) - set(PROBE_ORDER))


def accuracy_figure(acc, dataset, model):
    """Test accuracy vs layer: one column per corruption degree, one row per training labelling;
    every probe (mean over runs), MASC on the untrained network (the random-init control) dashed
    black, the network's final test accuracy dashed grey."""
    acc = acc[(acc.dataset == dataset) & (acc.model == model)]
    degrees = sorted(acc.corrupt.unique())
    labellings = [lab for lab in LABELLINGS if lab in set(acc.labels_from)]
    layers = layer_order(model, acc.layer.unique())
    fig, axes = _panels(len(labellings), len(degrees))
    for i, labels in enumerate(labellings):
        for j, corrupt in enumerate(degrees):
            ax, cell = axes[i, j], acc[(acc.corrupt == corrupt) & (acc.labels_from == labels)]
            for probe in _probes(cell.probe.unique()):
                means = cell[cell.probe == probe].groupby("layer").test_acc.mean()
                x = [layers.index(layer) for layer in means.index]
                order = np.argsort(x)
                ax.plot(np.array(x)[order], means.values[order], marker="o", ms=3.5, label=probe,
                        color=COLOURS.get(probe), lw=2.2 if probe in ("MASC", CONTROL) else 1.3,
                        ls="--" if probe == CONTROL else "-")
            trained = acc[(acc.corrupt == corrupt) & (acc.probe != CONTROL)]
            network = trained.groupby("run").model_test_acc.first().mean()
            ax.axhline(network, ls="--", color="grey", lw=1.2, label="network (final)")
            ax.set_ylim(0, 1.02)
            _layer_axis(ax, layers)
            if i == 0:
                ax.set_title(f"p = {corrupt:g}")
        axes[i, 0].set_ylabel(f"test accuracy\nfitted on {IN_WORDS[labels]}")
    _legend(fig, axes)
    runs = acc.groupby("corrupt").run.nunique()
    count = f"{runs.min()}" if runs.min() == runs.max() else f"{runs.min()}-{runs.max()}"
    fig.suptitle(f"{model} on {dataset}: probes per layer (mean of {count} run"
                 f"{'' if runs.max() == 1 else 's'})")
    return fig


def sensitivity_figure(summary, dataset, model, labels="corrupted"):
    """MASC test accuracy vs layer for each threshold, mean over seeds with the 95% t-interval,
    one panel per corruption degree; the network's final test accuracy dashed."""
    summary = summary[(summary.dataset == dataset) & (summary.model == model)
                      & (summary.labels_from == labels)]
    degrees = sorted(summary.corrupt.unique())
    layers = layer_order(model, summary.layer.unique())
    fig, axes = _panels(1, len(degrees))
    thresholds = sorted(summary.threshold.unique())
    colours = plt.cm.viridis(np.linspace(0, 0.85, len(thresholds)))
    offsets = 0.07 * (np.arange(len(thresholds)) - (len(thresholds) - 1) / 2)  # equal curves stay visible
    for ax, corrupt in zip(axes[0], degrees):
        cell = summary[summary.corrupt == corrupt]
        for colour, offset, threshold in zip(colours, offsets, thresholds):
            line = cell[cell.threshold == threshold].set_index("layer").reindex(layers)
            name = f"{int(threshold)} PC" if threshold >= 1 else f"{threshold:.0%} energy"
            low, high = line.ci_low.clip(0, 1), line.ci_high.clip(0, 1)  # accuracies live in [0, 1]
            ax.errorbar(np.arange(len(layers)) + offset, line["mean"], color=colour, label=name,
                        yerr=[line["mean"] - low, high - line["mean"]], marker="o", ms=3.5,
                        capsize=2, elinewidth=0.8)
        ax.axhline(cell.model_test_acc.mean(), ls="--", color="grey", lw=1.2, label="network (final)")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"p = {corrupt:g}")
        _layer_axis(ax, layers)
    axes[0, 0].set_ylabel(f"MASC test accuracy\n(subspaces from {IN_WORDS[labels]})")
    _legend(fig, axes)
    n = summary.n_runs
    fig.suptitle(f"{model} on {dataset}: MASC threshold and seed sensitivity\nmean and 95% "
                 f"t-interval over {n.min():g}{'' if n.min() == n.max() else f'-{n.max():g}'} seeds")
    return fig


def cost_figure(acc, dataset, model, labels="corrupted"):
    """Fit and predict time and FLOPs per probe and layer (probe CSVs; mean over p and runs)."""
    acc = acc[(acc.dataset == dataset) & (acc.model == model) & (acc.source == "probes")
              & (acc.labels_from == labels)]
    layers = layer_order(model, acc.layer.unique())
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), squeeze=False, layout="constrained")
    panels = [("fit_seconds", "fit time (s)", 1), ("predict_seconds", "predict time (s)", 1),
              ("fit_flops", "fit GFLOPs", 1e9), ("predict_flops", "predict GFLOPs", 1e9)]
    for ax, (column, title, scale) in zip(axes[0], panels):
        for probe in _probes(acc.probe.unique()):
            values = acc[acc.probe == probe].groupby("layer")[column].mean().reindex(layers) / scale
            ax.plot(range(len(layers)), values.where(values > 0).values, marker="o", ms=3.5,
                    label=probe, color=COLOURS.get(probe), lw=2.2 if probe == "MASC" else 1.3)
        ax.set_yscale("log")
        ax.set_title(title)
        _layer_axis(ax, layers)
    n_test = acc.n_test.max() if "n_test" in acc else math.nan
    _legend(fig, axes)
    fig.suptitle(f"{model} on {dataset}: cost per probe (fits on {IN_WORDS[labels]}, {n_test:g} test rows; "
                 f"zero values, e.g. k-NN's fit FLOPs, not drawn)")
    return fig


def _legend(fig, axes):
    handles, names = {}, []
    for ax in axes.flat:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in handles:
                handles[n] = h
                names.append(n)
    names.sort(key=lambda n: n.startswith("network"))  # the network's line last
    ncol = max(1, min(len(names), int(fig.get_figwidth() // 1.4)))
    fig.legend([handles[n] for n in names], names, loc="outside lower center", ncol=ncol,
               frameon=False, fontsize=9)


NOISE_COLOURS = {"MASC": "black", "MASC_in_sample": "tab:grey", "knn_vote": "tab:green",
                 "cleanlab_probe": "tab:blue", "cleanlab_datalab": "tab:purple",
                 "cleanlab_softmax": "tab:red"}


def label_noise_figure(scores, dataset, model, detectors):
    """Precision-recall curves of each label-noise detector's ranking against the known corruption,
    one panel per corruption degree, a line style per run; a dot marks each detector's flagged set and the
    dotted line the share of corrupted labels (a random ranking). ``scores``: the study's per-row
    scores with ``corrupt`` and ``run``; ``detectors``: {name: (flag column, score column)}."""
    from sklearn.metrics import precision_recall_curve

    scores = scores[(scores.dataset == dataset) & (scores.model == model)]
    degrees = sorted(scores.corrupt.unique())
    fig, axes = _panels(1, len(degrees))
    for ax, corrupt in zip(axes[0], degrees):
        cell = scores[scores.corrupt == corrupt]
        for (run, rows), style in zip(cell.groupby("run"), ["-", "--", ":", "-."] * 10):
            corrupted = rows.given != rows.true
            if not corrupted.any():
                continue
            for name, (flag, score) in detectors.items():
                precision, recall, _ = precision_recall_curve(corrupted, rows[score])
                ax.plot(recall, precision, ls=style, lw=1.3, color=NOISE_COLOURS.get(name),
                        label=name)
                flagged = rows[flag].astype(bool)
                if flagged.any():
                    ax.plot((flagged & corrupted).sum() / corrupted.sum(),
                            (flagged & corrupted).sum() / flagged.sum(), "o", ms=5,
                            color=NOISE_COLOURS.get(name))
        ax.axhline((cell.given != cell.true).mean(), ls=":", color="grey", lw=1.2,
                   label="share corrupted")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_title(f"p = {corrupt:g}")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("precision")
    _legend(fig, axes)
    runs = sorted(scores.run.unique())
    styles = ", ".join(f"run {r} {w}" for r, w in zip(runs, ["solid", "dashed", "dotted", "dash-dot"] * 10))
    fig.suptitle(f"{model} on {dataset}: finding the corrupted training labels\n(dots: the flagged "
                 f"sets; {styles})")
    return fig


def _displayable(images):
    """Images as (n, H, W) or (n, H, W, 3/4) for imshow: from (n, H, W), (n, H, W, C),
    (n, C, H, W) with C in 1, 3, 4, or flat square rows (n, H * H)."""
    images = np.asarray(images)
    if images.ndim == 2 and math.isqrt(images.shape[1]) ** 2 == images.shape[1]:
        side = math.isqrt(images.shape[1])
        return images.reshape(len(images), side, side)
    if images.ndim == 4 and images.shape[1] in (1, 3, 4) and images.shape[3] not in (1, 3, 4):
        images = images.transpose(0, 2, 3, 1)
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    if images.ndim == 3 or (images.ndim == 4 and images.shape[3] in (3, 4)):
        return images
    raise MASCError(f"images of shape {images.shape} cannot be shown: give (n, H, W), "
                    f"(n, H, W, C), (n, C, H, W) with C = 1, 3 or 4, or square flat rows (n, H*H)")


def label_issue_grid(images, report, top=36, columns=6):
    """The ``top`` most suspicious flagged samples of a :func:`MASC.noise.label_report` as a grid
    of their images, each titled with its index, given label and suggested label (and quality);
    ``images``: one per row of the report."""
    shown = _displayable(images)
    flagged = report[report.is_label_issue].sort_values("rank").head(top)
    rows = max(1, math.ceil(len(flagged) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 1.95 * rows + 0.5),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (index, row) in zip(axes.ravel(), flagged.iterrows()):
        image = shown[index].astype(np.float64)
        span = image.max() - image.min()
        ax.imshow((image - image.min()) / span if span else image * 0, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"#{index}: {row.given_label} \u2192 {row.suggested_label}\n"
                     f"quality {row.label_quality:.2f}", fontsize=8)
    fig.suptitle(f"{len(flagged)} most suspicious of {int(report.is_label_issue.sum())} flagged "
                 f"labels (given \u2192 suggested)", fontsize=10)
    return fig


def label_noise_summary_figure(summaries, dataset, model, metrics=("f1", "auroc"), reference=None):
    """Each label-noise detector's metrics, mean over runs (bars: min-max), per corruption degree
    (columns) and metric (rows); one marker per features source (``summaries``: {source:
    a detectors_summary frame of :func:`MASC.noise.study_summary`}). ``reference``: {(metric,
    p): (low, high, label)}, shaded (published figures, other data)."""
    degrees = sorted({c for s in summaries.values() for c in s.corrupt.unique()})
    detectors = list(dict.fromkeys(d for s in summaries.values() for d in s.detector))
    fig, axes = plt.subplots(len(metrics), len(degrees), squeeze=False, layout="constrained",
                             figsize=(max(6.5, 0.6 + 0.55 * len(detectors) * len(degrees)),
                                      0.9 + 2.6 * len(metrics)), sharey="row")
    shift = np.linspace(-0.15, 0.15, len(summaries)) if len(summaries) > 1 else [0.0]
    for (row, metric), (col, corrupt) in itertools.product(enumerate(metrics), enumerate(degrees)):
        ax = axes[row, col]
        low, high, label = (reference or {}).get((metric, corrupt), (None, None, None))
        if label:
            ax.axhspan(low, high, color="tab:orange", alpha=0.25, label=label)
        for (source, summary), dx, marker in zip(summaries.items(), shift, "osD^v"):
            cell = summary[(summary.corrupt == corrupt) & (summary.metric == metric)]
            cell = cell.set_index("detector").reindex(detectors)
            x = np.arange(len(detectors)) + dx
            ax.errorbar(x, cell["mean"], yerr=[cell["mean"] - cell["min"], cell["max"] - cell["mean"]],
                        fmt=marker, ms=5, capsize=2, lw=1, label=source)
        ax.set_xticks(range(len(detectors)), detectors, rotation=55, ha="right", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(f"p = {corrupt:g}", fontsize=10)
        if col == 0:
            ax.set_ylabel(metric)
    _legend(fig, axes)
    fig.suptitle(f"{model} on {dataset}: finding the corrupted training labels (mean over runs, "
                 f"bars: min-max)", fontsize=10)
    return fig
