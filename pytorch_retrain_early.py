"""Fine-tune a memorised model on the labels MASC predicts at its best layer, with early stopping.

    python pytorch_retrain_early.py -corr 0.8 -model CNN -dataset MNIST -run 1
    python pytorch_retrain_early.py -corr 0.8 -model CNN -dataset MNIST -run 1 --protocol clean

Needs the model that pytorch_training.py trained at -corr / -run. Once with subspaces from the
corrupted labels and once from the original, true ones (--subspaces): pick the layer where MASC is most
accurate on the validation data, relabel the training set with MASC's predictions there, fine-tune
from the memorised checkpoint. --protocol reference validates on 20% of the test set and reports
the other 80% (the paper's); --protocol clean validates on the training images held out when
the model was trained (pytorch_training.py --holdout 0.1), with their corrupted labels, and
reports the full test set. Results:
results/retrain/{ds}_{model}/{p}/Run_{r}_{protocol}_{epochs,summary,layers}.csv, the fine-tuned
model under models/{ds}_{model}/Network/{p}/{corr,org}_subspace[_clean]/Run_{r}/ and, for the
reference protocol, the reference's files under angle_results_retrain_30/.
"""
# Defaults: edit them here or override them on the command line.
PROTOCOL = "reference"  # reference: test20 selects, test80 reports; clean: noisy training hold-out
SUBSPACES = "both"      # corrupted, original (the true labels) or both
# The others are the settings groups' (--help lists them): the read-out (MASC/readout.py,
# Settings), MASC's THRESHOLD = 0.99, the fine-tuning (MASC/retrain.py: MAX_EPOCHS = 30,
# PATIENCE = 3; SEED = 0, run r fine-tunes with seed SEED + r; SHUFFLE = False, the fixed data
# order) and DEVICE, DATA, OUT. To change one for this script, set it here or pass its flag.

from MASC import cli, corruption, retrain  # noqa: E402


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(),
                   (cli.READOUT, cli.MASC, cli.FINE_TUNING, cli.COMMON), readout=True)
    args = p.parse_args(argv)
    subspaces = corruption.LABELLINGS if args.subspaces == "both" else (args.subspaces,)
    trained, = cli.trained_runs(args)
    summary = retrain.retrain(trained, protocol=args.protocol, subspaces=subspaces,
                              threshold=args.threshold, max_epochs=args.max_epochs,
                              patience=args.patience, seed=args.seed + args.run,
                              shuffle=args.shuffle, readout=cli.readout_settings(args))
    show = summary[["subspaces_from", "layer", "model_test_acc", "masc_test_acc", "best_epoch",
                    "kept_epoch", "test_acc_final", "test_acc_max", "wrong_relabelled_correctly",
                    "correct_relabelled_wrongly", "net_change", "detector_precision",
                    "detector_recall"]]
    print(show.to_string(index=False))
    print(f"results: {args.out}/results/retrain/{args.dataset}_{args.model}/{args.corr}/")


if __name__ == "__main__":
    main()
