"""Fit probes (MASC, logistic regression, NCM, k-NN, LDA, QDA) on every layer of trained models.

    python Compare_experiments/stronger_baselines/probe_layers.py -corr 0.8 -model CNN -dataset MNIST -run 1
    python Compare_experiments/stronger_baselines/probe_layers.py -corr all -model CNN -dataset MNIST -run all --probes NCM kNN

One read-out pass per trained model gives every layer's activations (training rows with their
corrupted and true labels, test rows); each probe is fitted with each labelling and scored on the
test rows. Results: results/probes/{ds}_{model}/{p}/Run_{r}.csv, one tidy row per layer x labelling
x probe with times (s), FLOPs and accuracy (a fraction); rows of probes not rerun are kept.
"""
# Defaults: edit them here or override them on the command line.
PROBES = ["MASC", "LogReg", "NCM", "kNN", "LDA", "QDA"]
LABELS = ["corrupted", "original"]   # which training labels the probes are fitted on
THRESHOLD = 0.99      # MASC's share of each class's energy
LAYERS = None         # None: every probed layer of the model
SUBSET = None         # None: the training samples the model was trained on
TEST_SUBSET = None    # None: the whole test set
PER_SAMPLE_BN = True  # ResNet BatchNorm on each image alone, as the paper read it (--eval-bn: off)
BATCH = 1000
DEVICE = "auto"
DATA = None
OUT = "."

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from MASC import cli, probes, results  # noqa: E402
from MASC.corruption import LABELLINGS  # noqa: E402
from MASC.training import pick_device  # noqa: E402

KEYS = ["probe", "labels_from", "layer"]


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), many=True, readout=True)
    p.add_argument("--probes", nargs="+", default=PROBES, choices=list(probes.PROBES))
    p.add_argument("--labels", nargs="+", default=LABELS, choices=LABELLINGS)
    p.add_argument("--threshold", type=cli.threshold, default=THRESHOLD)
    p.add_argument("--test-subset", type=cli.positive_int, default=TEST_SUBSET, help="first N test images only")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    factories = {name: (lambda name=name: probes.make(name, device, args.threshold))
                 for name in args.probes}
    for corrupt, run, acts, ids in probes.each_run(args, device):
        frame = probes.evaluate(acts, factories, ids, args.labels)
        path = results.tidy_dir(args.out, "probes", args.dataset, args.model) \
            / results.p_str(corrupt) / f"Run_{run}.csv"
        print(f"results: {results.merge_csv(frame, path, KEYS)}")


if __name__ == "__main__":
    main()
