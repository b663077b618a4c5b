"""Train a model on labels corrupted at degree p until it memorises them (docs/protocol.md,
'Training and stop rules').

    python pytorch_training.py -corr 0.8 -model CNN -dataset MNIST -run 1
    python pytorch_training.py -corr all -model CNN -dataset MNIST -run all      # an 18-run sweep

Several -corr / -run values train together in one process as stacked models (one GPU step for
all of them); each run still stops on its own and writes the same files as a lone run:
models/{ds}_{model}/Network/{p}/Run_{r}/model_{e}.pth (+ labels.npz, progress.pt) and
models/{ds}_{model}/Accuracy_results/{p}/Run_{r}.csv. An interrupted run resumes from progress.pt.
"""
# Defaults: edit them here or override them on the command line.
EPOCHS = 500          # epoch cap (the reference's range(500))
SEED = 0              # run r uses seed SEED + r: initial weights and data order
LABEL_SEED = 42       # corruption seed; 42 reproduces the reference's labels
SHUFFLE = False       # the reference's fixed data order; True (--shuffle): reshuffle every epoch
SAVE_EVERY = 10       # epochs between progress saves
SUBSET = None         # first N training samples only
TEST_SUBSET = None    # first N test images in the per-epoch evaluation only
HOLDOUT = 0.0         # share of the training images kept out of training (retraining's clean protocol)
DEVICE = "auto"
DATA = None           # $MASC_DATA or ./data
OUT = "."
BF16 = False          # bf16 autocast (measured, not the default)
TF32 = False          # TF32 matmuls on CUDA (off, as PyTorch and the reference default them)
TRAIN_BATCH = None    # images per step; None: the reference's for the model and dataset
INIT = "pytorch"      # "glorot": Keras's Glorot-uniform weights and zero biases (MLP protocol study)
SCALING = "reference" # "unit": input pixels in [0, 1] only (MLP protocol study)
STOP_ON = None        # "post-epoch" or "running"; None: the reference's rule for the model

from MASC import cli, training  # noqa: E402


@cli.main(resumes=True)
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), many=True)
    args = p.parse_args(argv)
    corrs = cli.expand(args.corr, cli.CORRUPTIONS, cli.corruption)
    run_ids = cli.expand(args.run, cli.RUNS, int)
    runs = [training.Run(args.dataset, args.model, c, r, args.seed + r, args.label_seed)
            for c in corrs for r in run_ids]
    done = training.train(runs, out=args.out, root=args.data, device=args.device,
                          epochs=args.epochs, subset=args.subset, test_subset=args.test_subset,
                          holdout=args.holdout, shuffle=args.shuffle,
                          save_every=args.save_every, bf16=args.bf16, tf32=args.tf32,
                          train_batch=args.train_batch, init=args.init, scaling=args.scaling,
                          stop_on=args.stop_on)
    for run, checkpoint in done.items():
        print(f"p={run.corrupt} run {run.run}: {checkpoint}")


if __name__ == "__main__":
    main()
