"""Read every layer of a trained model out with MASC (experiments exp1, exp2, exp3).

    python pytorch_MASC_all.py -corr 0.8 -model CNN -dataset MNIST -run 1 -exp1 True -exp2 True

exp1: the memorised model at p with subspaces from the corrupted labels; exp2: the same model with
subspaces from the true labels; exp3: the model trained at p = 0.0 with subspaces from the labels
corrupted at p. Results: results/masc/{ds}_{model}/{p}/Run_{r}_exp{n}.csv (one row per layer, plus
a _per_class.csv) and the reference's single-value files under angle_results/.
"""
# Defaults are the settings groups' (--help lists them): the read-out (MASC/readout.py,
# Settings: LAYERS = None, every probed layer; PER_SAMPLE_BN = True, ResNet BatchNorm on each
# image alone as the paper read it out; BATCH = 1000; ROWS_ON_DISK = False; SUBSET and
# TEST_SUBSET = None, the rows the model was trained on and every test image), MASC's
# THRESHOLD = 0.99 and DEVICE, DATA, OUT. To change one for this script, set it here or pass
# its flag.

from MASC import cli, experiments  # noqa: E402


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), (cli.READOUT, cli.MASC, cli.COMMON),
                   readout=True)
    for n in (1, 2, 3):
        p.add_argument(f"-exp{n}", type=cli.str2bool, default=False, metavar="{True,False}")
    args = p.parse_args(argv)
    exps = [n for n in (1, 2, 3) if getattr(args, f"exp{n}")]
    if not exps:
        p.error("choose at least one experiment: -exp1 True, -exp2 True or -exp3 True")
    trained, = cli.trained_runs(args)
    table = experiments.masc_experiments(trained, exps, threshold=args.threshold,
                                         readout=cli.readout_settings(args))
    show = table[["exp", "subspaces_from", "layer", "k_mean", "train_acc_vs_corrupted",
                  "train_acc_vs_true", "test_acc", "model_test_acc"]]
    print(show.to_string(index=False))
    print(f"results: {args.out}/results/masc/{args.dataset}_{args.model}/{args.corr}/")


if __name__ == "__main__":
    main()
