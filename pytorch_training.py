"""Train a model on labels corrupted at degree p until it memorises them (docs/protocol.md,
'Training and stop rules').

    python pytorch_training.py -corr 0.8 -model CNN -dataset MNIST -run 1
    python pytorch_training.py -corr all -model CNN -dataset MNIST -run all      # an 18-run sweep

Several -corr / -run values train together in one process as stacked models (one GPU step for
all of them); each run still stops on its own and writes the same files as a lone run:
models/{ds}_{model}/Network/{p}/Run_{r}/model_{e}.pth (+ labels.npz, progress.pt) and
models/{ds}_{model}/Accuracy_results/{p}/Run_{r}.csv. An interrupted run resumes from progress.pt.
"""
# Defaults are the settings groups' (--help lists them): the training schedule
# (MASC/training.py, Schedule: EPOCHS = 500, the reference's cap; SEED = 0, run r trains with
# seed SEED + r; LABEL_SEED = 42, the reference's labels; TRAIN_BATCH, INIT, SCALING, STOP_ON:
# the MLP protocol study's, the reference's by default; ...) and DEVICE, DATA, OUT. To change
# one for this script, set it here (e.g. EPOCHS = 100) or pass its flag (--epochs 100).

from MASC import cli, training  # noqa: E402


@cli.main(resumes=True)
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), (cli.TRAINING, cli.COMMON), many=True)
    args = p.parse_args(argv)
    corrs = cli.expand(args.corr, cli.CORRUPTIONS, cli.corruption)
    run_ids = cli.expand(args.run, cli.RUNS, int)
    schedule = cli.build(training.Schedule, args)
    runs = [schedule.run(args.dataset, args.model, c, r) for c in corrs for r in run_ids]
    done = training.train(runs, out=args.out, root=args.data, device=args.device,
                          schedule=schedule)
    for run, checkpoint in done.items():
        print(f"p={run.corrupt} run {run.run}: {checkpoint}")


if __name__ == "__main__":
    main()
