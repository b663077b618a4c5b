"""MASC's sensitivity to its threshold and to the training seed (sensitivity and ablation study).

    python pytorch_training.py -corr 0.8 -model CNN -dataset MNIST -run 10 20 30 40 50
    python Compare_experiments/sensitivity_ablation_studies/sensitivity.py -corr 0.8 -model CNN -dataset MNIST -run 10 20 30 40 50

Run r is a model trained with seed r (pytorch_training.py's default seed for run r is r), so runs
differ in initial weights and data order; the reference's seeds (set after training) changed nothing. For
each threshold (a share of each class's energy, or a whole number of components: 1 = "1 PC") MASC
is fitted on every layer from one read-out pass per run and scored on the test rows. Results:
results/sensitivity/{ds}_{model}/{p}/Run_{r}.csv (tidy rows) and
results/sensitivity/{ds}_{model}/summary.csv (mean and 95% t-interval over the runs found there,
per p, threshold, labelling and layer).
"""
# Defaults: edit them here or override them on the command line.
THRESHOLDS = [0.25, 0.5, 0.75, 0.99, 1]
LABELS = ["corrupted"]   # subspaces from the corrupted labels (the reference's study); add "original"
# The others are the settings groups' (--help lists them): the read-out (MASC/readout.py,
# Settings; activations are held in memory here) and DEVICE, DATA, OUT.

import pandas as pd  # noqa: E402

from MASC import cli, plots, probes, results  # noqa: E402
from MASC.devices import pick_device  # noqa: E402

_READOUT = cli.without(cli.READOUT, "ROWS_ON_DISK")  # rows in memory
_GROUP = ["dataset", "model", "corrupt", "labels_from", "threshold", "layer"]
# runs read with other settings, or of models trained otherwise, are summarised apart
_APART = ["n_train", "n_test", "per_sample_bn", "label_seed", "subset", "holdout"]


def summarise(folder):
    """The t-interval summary of every run's CSV in ``folder`` (written to summary.csv)."""
    frame = pd.concat([results.read_csv(path) for _, _, path in
                       results.find_in(folder, "sensitivity")], ignore_index=True)
    group = _GROUP + [c for c in _APART if c in frame]
    summary = plots.t_summary(frame, group)
    network = frame.groupby(group, dropna=False).model_test_acc.mean().reset_index()
    return results.write_csv(summary.merge(network, on=group), folder / "summary.csv")


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), (_READOUT, cli.COMMON), many=True,
                   readout=True)
    args = p.parse_args(argv)
    device = pick_device(args.device)
    folder = results.tidy_dir(args.out, "sensitivity", args.dataset, args.model)
    settings = cli.readout_settings(args)
    for trained in cli.trained_runs(args):
        acts = probes.layer_activations(trained, settings)
        recorded = {"per_sample_bn": args.per_sample_bn, **trained.provenance}
        thresholds = {f"MASC {t}": t for t in args.thresholds}  # every threshold per layer read
        frame = probes.evaluate(acts, {name: lambda t=t: probes.make("MASC", device, t)
                                       for name, t in thresholds.items()},
                                trained.ids(), args.labels, settings=recorded)
        frame = frame.assign(probe="MASC", threshold=frame.probe.map(thresholds)).sort_values(
            "threshold", key=lambda t: t.map(list(thresholds.values()).index), kind="stable")
        print(f"results: {results.write_csv(frame, trained.key.sensitivity_csv)}")
    print(f"summary: {summarise(folder)}")


if __name__ == "__main__":
    main()
