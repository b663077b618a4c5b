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
# The others are the settings groups' (--help lists them): the read-out (MASC/readout.py,
# Settings; activations are held in memory here), MASC's THRESHOLD and DEVICE, DATA, OUT.

from MASC import cli, probes, results  # noqa: E402
from MASC.devices import pick_device  # noqa: E402

_READOUT = cli.without(cli.READOUT, "ROWS_ON_DISK")  # rows in memory
_KEYS = ["probe", "labels_from", "layer", *results.READOUT_COLUMNS]  # rows of other weights go


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), (_READOUT, cli.MASC, cli.COMMON),
                   many=True, readout=True)
    args = p.parse_args(argv)
    device = pick_device(args.device)
    factories = {name: (lambda name=name: probes.make(name, device, args.threshold))
                 for name in args.probes}
    settings = cli.readout_settings(args)
    for trained in cli.trained_runs(args):
        acts = probes.layer_activations(trained, settings)
        frame = probes.evaluate(acts, factories, trained.ids(), args.labels, settings={
            "threshold": args.threshold, "per_sample_bn": args.per_sample_bn,
            **trained.provenance})
        path = results.merge_csv(frame, trained.key.probes_csv, _KEYS, results.MODEL_COLUMNS)
        print(f"results: {path}")


if __name__ == "__main__":
    main()
