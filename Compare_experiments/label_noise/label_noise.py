"""MASC as a label-noise detector next to cleanlab, and relabel-vs-prune retraining (beyond the paper).

    python pytorch_training.py -corr 0.2 0.4 0.6 0.8 -model CNN -dataset MNIST -run 1 2 --subset 5000 --holdout 0.1
    python Compare_experiments/label_noise/label_noise.py -corr 0.2 0.4 0.6 0.8 -model CNN -dataset MNIST -run 1 2

For each memorised run (trained with --holdout: the clean protocol) every training label is
flagged and scored at the layer the hold-out's corrupted labels choose by: MASC cross-fitted
(noise.find_label_issues) and in-sample, a k-nearest-neighbour vote, cleanlab on a
logistic-regression probe's K-fold out-of-sample probabilities, cleanlab's Datalab from the
features, and cleanlab on the network's own softmax (MASC/noise.py says how). Then the memorised
model is fine-tuned, once per variant: on MASC's relabels, on the rows cleanlab (probe) did not
flag, and with cleanlab's flagged rows relabelled to the probe's class (early stopping on the
hold-out, best epoch kept). No test label is used except to report test accuracy. Needs cleanlab
(requirements-study.txt). --features clean takes the features (and softmax) from the p = 0.0
network of the same run number instead, trained on the same rows (detection only, no retraining).

Results under results/label_noise/{ds}_{model}/ of --out (--features clean: its clean_features/):
{p}/Run_{r}_scores.csv (one row per training row), _layers.csv (the clean protocol's layer table),
_metrics.csv (per detector: precision, recall, F1, average precision, AUROC, lift@100, seconds),
_retrain.csv (per variant); detectors_summary.csv, retrain_summary.csv and table.md over the runs
found. A rerun resumes: scored runs are not scored again and finished variants not retrained
(delete a run's files to redo it).
"""
# Defaults: edit them here or override them on the command line.
THRESHOLD = 0.99      # MASC's share of each class's energy
FOLDS = 5             # K of MASC's cross-fitting and of the probe's out-of-sample probabilities
FOLD_SEED = 0         # the folds' shuffle
FEATURES = "own"      # own: the memorised network's layers; clean: the p = 0.0 run's
VARIANTS = ["masc_relabel", "cleanlab_prune", "cleanlab_relabel"]
MAX_EPOCHS = 30       # fine-tuning cap per variant
PATIENCE = 3          # epochs without a better hold-out accuracy before stopping
SHUFFLE = False       # the fine-tuning's data order: the reference's fixed order
LAYERS = None         # None: every probed layer is a candidate
SUBSET = None         # None: the training samples the model was trained on
TEST_SUBSET = None    # None: the whole test set (only reported: the network's and the retrained test accuracy)
PER_SAMPLE_BN = True  # ResNet BatchNorm on each image alone, as the paper read it (--eval-bn: off)
BATCH = 1000
DEVICE = "auto"
DATA = None
OUT = "."

import time  # noqa: E402

import pandas as pd  # noqa: E402

from MASC import cli, noise, results, runs  # noqa: E402
from MASC.devices import pick_device  # noqa: E402

_SCORE_COLUMNS = ["row", "given", "true", "layer", "masc_pred", "knn_pred", "probe_pred"] + \
    [c for pair in noise.DETECTORS.values() for c in pair]


def score_run(args, trained, folder, ids):
    """The run's scores: read back if written, else computed and written with its layer table
    and metrics (an older retraining CSV of the run goes: it belonged to other scores)."""
    run = trained.run
    path = folder / f"Run_{run}_scores.csv"
    if path.exists():
        return results.read_csv(path, _SCORE_COLUMNS), results.read_csv(folder / f"Run_{run}_layers.csv")
    clean = None
    if args.features == "clean":
        clean = runs.load_run(args.out, args.dataset, args.model, 0.0, run, root=args.data,
                              subset=args.subset, test_subset=args.test_subset)
    tic = time.perf_counter()
    scores, table, seconds = noise.detect(trained, readout=cli.readout_settings(args),
                                          threshold=args.threshold, folds=args.folds,
                                          seed=args.fold_seed, features_from=clean)
    print(f"scored in {time.perf_counter() - tic:.0f} s")
    results.write_csv(pd.concat([pd.DataFrame([ids] * len(table)), table], axis=1),
                      folder / f"Run_{run}_layers.csv")
    metrics = noise.metrics_table(scores, {**ids, "layer": scores.layer.iloc[0]}, seconds)
    results.write_csv(metrics, folder / f"Run_{run}_metrics.csv")
    (folder / f"Run_{run}_retrain.csv").unlink(missing_ok=True)
    print(metrics[["detector", "n_flagged"] + noise.METRICS + ["seconds"]].to_string(index=False))
    for i, (key, value) in enumerate(ids.items()):
        scores.insert(i, key, value)
    results.write_csv(scores, path)
    return scores, table


@cli.main(resumes=True)
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), many=True, readout=True)
    args = p.parse_args(argv)
    unknown = sorted(set(args.variants) - set(noise.VARIANTS))
    if unknown:
        p.error(f"argument --variants: unknown {', '.join(unknown)}; choose from "
                f"{', '.join(noise.VARIANTS)}")
    device = pick_device(args.device)
    if args.features == "clean" and args.variants:
        p.error("argument --variants: --features clean scores only; give --variants alone")
    study = results.tidy_dir(args.out, "label_noise", args.dataset, args.model)
    if args.features == "clean":
        study = study / "clean_features"
    for trained in cli.trained_runs(args):
        corrupt, run = trained.p, trained.run
        folder = study / results.p_str(corrupt)
        ids = {"dataset": args.dataset, "model": args.model, "corrupt": corrupt, "run": run}
        with results.lock(folder / f"Run_{run}", wait=False, what="scored"):
            scores, table = score_run(args, trained, folder, ids)
            path = folder / f"Run_{run}_retrain.csv"
            done = set(results.read_csv(path, ["variant"]).variant) if path.exists() else set()
            for variant in [v for v in args.variants if v not in done]:
                row = noise.retrain_variant(trained, scores, variant, device=device,
                                            max_epochs=args.max_epochs, patience=args.patience,
                                            shuffle=args.shuffle)
                row = {**ids, "layer": table.layer[table.chosen].iloc[0],
                       "model_test_acc": table.model_test_acc.iloc[0], **row}
                results.merge_csv(pd.DataFrame([row]), path, ["variant"])
    detectors, retrained = noise.study_summary(study)
    (study / "table.md").write_text(noise.markdown(detectors, retrained))
    print(noise.markdown(detectors, retrained), end="")
    print(f"results: {study}")


if __name__ == "__main__":
    main()
