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
LAYERS = None
SUBSET = None
TEST_SUBSET = None
PER_SAMPLE_BN = True   # ResNet BatchNorm on each image alone, as the paper read it (--eval-bn: off)
BATCH = 1000
DEVICE = "auto"
DATA = None
OUT = "."

import pandas as pd  # noqa: E402

from MASC import cli, plots, probes, results  # noqa: E402
from MASC.devices import pick_device  # noqa: E402

_GROUP = ["dataset", "model", "corrupt", "labels_from", "threshold", "layer"]


def summarise(folder):
    """The t-interval summary of every run's CSV in ``folder`` (written to summary.csv)."""
    frame = pd.concat([results.read_csv(p) for p in sorted(folder.glob("*/Run_*.csv"))], ignore_index=True)
    summary = plots.t_summary(frame, _GROUP)
    network = frame.groupby(_GROUP).model_test_acc.mean().reset_index()
    return results.write_csv(summary.merge(network, on=_GROUP), folder / "summary.csv")


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), many=True, readout=True)
    args = p.parse_args(argv)
    device = pick_device(args.device)
    folder = results.tidy_dir(args.out, "sensitivity", args.dataset, args.model)
    settings = cli.readout_settings(args)
    for trained in cli.trained_runs(args):
        acts = probes.layer_activations(trained, settings)
        frame = pd.concat([probes.evaluate(acts, {"MASC": lambda t=t: probes.make("MASC", device, t)},
                                           trained.ids(), args.labels).assign(threshold=t)
                           for t in args.thresholds], ignore_index=True)
        path = folder / results.p_str(trained.p) / f"Run_{trained.run}.csv"
        print(f"results: {results.write_csv(frame, path)}")
    print(f"summary: {summarise(folder)}")


if __name__ == "__main__":
    main()
