"""MASC on the nine layers of trained ResNet-18s (l0 ... bf_last), corrupted- and true-label subspaces.

    python Compare_experiments/Modern_backbones/masc_resnet18.py -corr all -run 1
    python Compare_experiments/Modern_backbones/masc_resnet18.py -corr 0.8 -run 1 --eval-bn

For each p and run: the final checkpoint of train_resnet18.py is read out one layer at a time over
its training and test rows; per layer, MASC subspaces are fitted from the corrupted labels (exp1)
and from the true labels (exp2), then training and test rows are classified. Results:
results/masc/CIFAR10_ResNet18/{p}/Run_{r}_exp{1,2}.csv (tidy: training accuracy vs corrupted and
true labels, test accuracy, fit_seconds, and predict_seconds over the training and test rows,
each per (subspaces, layer), the read-out passes not included) and the reference's
single-value files under angle_results/. By default BatchNorm uses each image's own statistics, as
the reference's extraction did (train mode, one image at a time); --eval-bn uses its running
statistics instead.
"""
# Defaults: edit them here or override them on the command line.
BATCH = 500           # images per forward pass (ResNet-18's activations are large)
# The others are the settings groups' (--help lists them): the read-out (MASC/readout.py,
# Settings: LAYERS = None, l0 l0_1 l0_2 l0_3 l1 l2 l3 l4 bf_last; PER_SAMPLE_BN = True, as the
# paper read it out; ROWS_ON_DISK = False, or True for layers too big for RAM), MASC's
# THRESHOLD and DEVICE, DATA, OUT.

import sys  # noqa: E402

from MASC import cli, experiments  # noqa: E402

_FIXED = ["-model", "ResNet18", "-dataset", "CIFAR10"]


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), (cli.READOUT, cli.MASC, cli.COMMON),
                   models=("ResNet18",), many=True, readout=True)
    args = p.parse_args(_FIXED + list(sys.argv[1:] if argv is None else argv))
    for trained in cli.trained_runs(args):
        table = experiments.masc_experiments(trained, [1, 2], threshold=args.threshold,
                                             readout=cli.readout_settings(args))
        print(table[["subspaces_from", "layer", "dim", "k_mean", "train_acc_vs_corrupted",
                     "train_acc_vs_true", "test_acc", "fit_seconds", "predict_seconds"]]
              .to_string(index=False))
        print(f"results: {trained.key.masc_csv(1).parent}")


if __name__ == "__main__":
    main()
