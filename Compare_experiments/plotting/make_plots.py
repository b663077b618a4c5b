"""Figures (PNG and PDF) and the summary table of the results, one set per model and dataset found.

    python Compare_experiments/plotting/make_plots.py [--out RESULTS_ROOT] [--plots FOLDER]

Reads results/probes, results/masc and results/sensitivity under --out and writes, per
{ds}_{model}: ACCURACY_{ds}_{model} (test accuracy vs layer: a column per corruption degree, a row per
training labelling, every probe and MASC, MASC on the untrained network dashed black where
--control random-init ran, the network's final test accuracy dashed grey),
SENSITIVITY_{ds}_{model} (MASC per threshold, mean and 95% t-interval over seeds) and
COST_{ds}_{model} (fit and predict seconds and GFLOPs per probe and layer); and the paper's
summary table (Table_values) as table_values.csv (fractions) and table_values.md (%): per
(dataset, model, p) the network's final test accuracy, the best test accuracy it reached at any
epoch of training, and the best layer's MASC test accuracy with corrupted and original-label
subspaces (max over layers of the mean over runs). From results/label_noise and
results/label_noise_clean (the label-noise study, and its --features clean):
LABEL_NOISE_{ds}_{model} (precision-recall curves of every detector, a panel per p),
LABEL_NOISE_SUMMARY_{ds}_{model} (F1 and AUROC of every detector per p, mean and min-max over runs,
on the memorised network's features and, where scored, the p = 0.0 network's; Confident
Learning's published F1 shaded) and label_noise_{ds}_{model}[_clean_features].md / .csv (detection
metrics and retrained test accuracy over runs); from results/label_noise_pixels
(fixed_features.py) the same summary figure and table of {ds}_pixels.
"""
# Defaults: edit them here or override them on the command line.
OUT = "."             # results root (the --out of the experiment scripts)
PLOTS = None          # None: Compare_experiments/plotting/plots

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from MASC import cli, noise, plots, results  # noqa: E402
from MASC.errors import MASCError  # noqa: E402


def label_noise_summary(folder, tables, summaries):
    """Write into ``folder`` the label-noise tables ({name: (detectors, retrained)}:
    label_noise_{name}.md / .csv) and the summary figure of the detectors' ``summaries`` ({features source: detectors});
    returns the paths."""
    written = []
    for name, found in tables.items():
        table = Path(folder) / f"label_noise_{name}.md"
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(noise.markdown(*found))
        written += [results.write_csv(pd.concat(found, ignore_index=True),
                                      table.with_suffix(".csv")), table]
    detectors = next(iter(summaries.values()))
    dataset, model = detectors.dataset.iloc[0], detectors.model.iloc[0]
    return written + plots.save(plots.label_noise_summary_figure(summaries, dataset, model,
                                                                 reference=noise.PUBLISHED),
                                Path(folder) / f"LABEL_NOISE_SUMMARY_{results.tag(dataset, model)}")


@cli.main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cli.add_settings(p, cli.constants(globals()))
    args = p.parse_args(argv)
    args.plots = args.plots or Path(__file__).resolve().parent / "plots"
    stem = lambda kind, dataset, model: Path(args.plots) / f"{kind}_{results.tag(dataset, model)}"  # noqa: E731
    acc = plots.load_accuracy(args.out)
    written = []
    for (dataset, model), group in acc.groupby(["dataset", "model"]):
        written += plots.save(plots.accuracy_figure(group, dataset, model), stem("ACCURACY", dataset, model))
        if (group.source == "probes").any():
            written += plots.save(plots.cost_figure(group, dataset, model), stem("COST", dataset, model))
    for path in sorted((results.tidy_root(args.out) / "sensitivity").glob("*/summary.csv")):
        summary = results.read_csv(path, ["dataset", "model"])
        for (dataset, model), group in summary.groupby(["dataset", "model"]):
            written += plots.save(plots.sensitivity_figure(group, dataset, model),
                                  stem("SENSITIVITY", dataset, model))
    for folder in sorted(results.kind_folders(args.out, "label_noise")):
        if not noise.study_files(folder, "metrics"):
            continue
        detectors, retrained = noise.study_summary(folder)
        scores = noise.load_scores(folder)
        for (dataset, model), group in scores.groupby(["dataset", "model"]):
            written += plots.save(plots.label_noise_figure(group, dataset, model, noise.DETECTORS),
                                  stem("LABEL_NOISE", dataset, model))
        tables = {folder.name: (detectors, retrained)}
        summaries = {"memorised network's features": detectors}
        clean = results.tidy_root(args.out) / results.LABEL_NOISE["clean"] / folder.name
        if noise.study_files(clean, "metrics"):
            tables[f"{folder.name}_clean_features"] = noise.study_summary(clean)
            summaries["p = 0.0 network's features"] = tables[f"{folder.name}_clean_features"][0]
        written += label_noise_summary(args.plots, tables, summaries)
    for folder in sorted(results.kind_folders(args.out, results.LABEL_NOISE["pixels"])):
        if noise.study_files(folder, "metrics"):  # fixed_features.py: no network
            detectors, retrained = noise.study_summary(folder)
            written += label_noise_summary(args.plots, {folder.name: (detectors, retrained)},
                                           {"raw pixels": detectors})
    if not written:
        raise MASCError(f"no result CSVs under {results.tidy_root(args.out)} (probes, masc, "
                        f"sensitivity, label_noise); run an experiment first, or pass its --out")
    table = plots.summary_table(acc, args.out) if len(acc) else None
    if table is not None and not table.empty:
        written.append(results.write_csv(table, Path(args.plots) / "table_values.csv"))
        (Path(args.plots) / "table_values.md").write_text(plots.markdown(table))
        written.append(Path(args.plots) / "table_values.md")
        print(plots.markdown(table), end="")
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
