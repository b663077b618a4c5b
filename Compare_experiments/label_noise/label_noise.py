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

Results under results/label_noise/{ds}_{model}/ of --out (--features clean: label_noise_clean/):
{p}/Run_{r}_scores.csv (one row per training row), _layers.csv (the clean protocol's layer table),
_metrics.csv (per detector: precision, recall, F1, average precision, AUROC, lift@100, seconds),
_retrain.csv (per variant); detectors_summary.csv, retrain_summary.csv and table.md over the runs
found. A rerun resumes: runs scored with the same settings (MASC's, the folds', the read-out's and
the weights' provenance, recorded in every row) are not scored again and finished variants not
retrained; other settings score and retrain again (delete a run's files to redo it).
"""
# Defaults: edit them here or override them on the command line.
FOLDS = 5             # K of MASC's cross-fitting and of the probe's out-of-sample probabilities
FOLD_SEED = 0         # the folds' shuffle
FEATURES = "own"      # own: the memorised network's layers; clean: the p = 0.0 run's
VARIANTS = ["masc_relabel", "cleanlab_prune", "cleanlab_relabel"]
# The others are the settings groups' (--help lists them): the read-out (MASC/readout.py,
# Settings; LAYERS: the candidate layers; TEST_SUBSET only changes reported accuracies), MASC's
# THRESHOLD, the fine-tuning per variant (MASC/retrain.py: MAX_EPOCHS, PATIENCE, SHUFFLE) and
# DEVICE, DATA, OUT.

import time  # noqa: E402

import pandas as pd  # noqa: E402

from MASC import cli, noise, results, runs  # noqa: E402
from MASC.devices import pick_device  # noqa: E402

_READOUT = cli.without(cli.READOUT, "ROWS_ON_DISK")
_FINE_TUNING = cli.without(cli.FINE_TUNING, "SEED")  # seed: the run index
_SCORE_COLUMNS = ["row", "given", "true", "layer", "masc_pred", "knn_pred", "probe_pred"] + \
    [c for pair in noise.DETECTORS.values() for c in pair]


def score_run(args, trained, clean, settings):
    """The run's scores (on the features of the ``clean`` run's network, if given): read back if
    written with these ``settings``, else computed and written with its layer table and metrics
    (a retraining CSV of the run goes: it belonged to other scores)."""
    key = trained.key
    path = key.label_noise_csv("scores", args.features)
    if path.exists():
        scores = results.read_csv(path)
        if results.same_settings(scores, settings) and set(_SCORE_COLUMNS) <= set(scores):
            return scores, results.read_csv(key.label_noise_csv("layers", args.features))
        print(f"{key}: scored with other settings or detectors before; scoring again")
    tic = time.perf_counter()
    scores, table, seconds = noise.detect(trained, readout=cli.readout_settings(args),
                                          threshold=args.threshold, folds=args.folds,
                                          seed=args.fold_seed, features_from=clean)
    print(f"scored in {time.perf_counter() - tic:.0f} s")
    ids = key.ids()
    results.write_csv(pd.concat([pd.DataFrame([ids] * len(table)), table,
                                 pd.DataFrame([settings] * len(table))], axis=1),
                      key.label_noise_csv("layers", args.features))
    metrics = noise.metrics_table(scores, {**ids, "layer": scores.layer.iloc[0]}, seconds)
    results.write_csv(metrics.assign(**settings), key.label_noise_csv("metrics", args.features))
    key.label_noise_csv("retrain", args.features).unlink(missing_ok=True)
    print(metrics[["detector", "n_flagged"] + noise.METRICS + ["seconds"]].to_string(index=False))
    for i, (column, value) in enumerate(ids.items()):
        scores.insert(i, column, value)
    results.write_csv(scores.assign(**settings), path)
    return scores, table


@cli.main(resumes=True)
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), (_READOUT, cli.MASC, _FINE_TUNING,
                                                        cli.COMMON), many=True, readout=True)
    args = p.parse_args(argv)
    unknown = sorted(set(args.variants) - set(noise.VARIANTS))
    if unknown:
        p.error(f"argument --variants: unknown {', '.join(unknown)}; choose from "
                f"{', '.join(noise.VARIANTS)}")
    device = pick_device(args.device)
    if args.features == "clean" and args.variants:
        p.error("argument --variants: --features clean scores only; give --variants alone")
    study = results.tidy_dir(args.out, results.LABEL_NOISE[args.features], args.dataset,
                             args.model)
    for trained in cli.trained_runs(args):
        key = trained.key
        clean = None
        if args.features == "clean":
            clean = runs.load_run(key.at(0.0), root=args.data, subset=args.subset,
                                  test_subset=args.test_subset)
        # what changes the scores, and the retrainings: a rerun with others does them again
        settings = {"threshold": args.threshold, "folds": args.folds,
                    "fold_seed": args.fold_seed, "layers": " ".join(args.layers or ["all"]),
                    "per_sample_bn": args.per_sample_bn, "n_labels": len(trained.labels.train_rows),
                    "n_test": len(trained.test), **trained.provenance,
                    **{f"features_{k}": v for k, v in (clean.provenance if clean else {}).items()}}
        retraining = {**settings, "max_epochs": args.max_epochs, "patience": args.patience,
                      "shuffle": args.shuffle}
        with results.lock(key.label_noise_lock(args.features), wait=False, what="scored"):
            scores, table = score_run(args, trained, clean, settings)
            path = key.label_noise_csv("retrain", args.features)
            done = set()
            if path.exists():
                old = results.read_csv(path, ["variant"])
                done = set(old.variant[results.same_settings(old, retraining, rows=True)])
            for variant in [v for v in args.variants if v not in done]:
                row = noise.retrain_variant(trained, scores, variant, device=device,
                                            max_epochs=args.max_epochs, patience=args.patience,
                                            shuffle=args.shuffle)
                row = {**key.ids(), "layer": table.layer[table.chosen].iloc[0],
                       "model_test_acc": table.model_test_acc.iloc[0], **row, **retraining}
                results.merge_csv(pd.DataFrame([row]), path, ["variant"], list(retraining))
    detectors, retrained = noise.study_summary(study)
    (study / "table.md").write_text(noise.markdown(detectors, retrained))
    print(noise.markdown(detectors, retrained), end="")
    print(f"results: {study}")


if __name__ == "__main__":
    main()
