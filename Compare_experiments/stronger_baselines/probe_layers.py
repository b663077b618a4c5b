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

from MASC import cli, probes, results  # noqa: E402
from MASC.devices import pick_device  # noqa: E402

_KEYS = ["probe", "labels_from", "layer"]


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), many=True, readout=True)
    args = p.parse_args(argv)
    device = pick_device(args.device)
    factories = {name: (lambda name=name: probes.make(name, device, args.threshold))
                 for name in args.probes}
    settings = cli.readout_settings(args)
    for trained in cli.trained_runs(args):
        acts = probes.layer_activations(trained, settings)
        frame = probes.evaluate(acts, factories, trained.ids(), args.labels)
        path = results.probes_csv(args.out, args.dataset, args.model, trained.p, trained.run)
        print(f"results: {results.merge_csv(frame, path, _KEYS)}")


if __name__ == "__main__":
    main()
