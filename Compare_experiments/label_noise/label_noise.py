"""MASC as a label-noise detector next to cleanlab, and relabel-vs-prune retraining (beyond the paper).

    python pytorch_training.py -corr 0.2 0.4 0.6 0.8 -model CNN -dataset MNIST -run 1 2 --subset 5000 --holdout 0.1
    python Compare_experiments/label_noise/label_noise.py -corr 0.2 0.4 0.6 0.8 -model CNN -dataset MNIST -run 1 2

For each memorised run (trained with --holdout: the clean protocol) every training label is
flagged and scored by MASC at the layer the hold-out's corrupted labels choose, by cleanlab on a
logistic-regression probe's K-fold out-of-sample probabilities at that layer, and by cleanlab on
the network's own softmax (MASC/noise.py says how). Then the memorised model is fine-tuned, once
per variant: on MASC's relabels, on the rows cleanlab (probe) did not flag, and with cleanlab's
flagged rows relabelled to the probe's class (early stopping on the hold-out, best epoch kept).
No test label is used except to report test accuracy. Needs cleanlab (requirements-study.txt).

Results under results/label_noise/{ds}_{model}/ of --out: {p}/Run_{r}_scores.csv (one row per
training row), _layers.csv (the clean protocol's layer table), _metrics.csv (per detector:
precision, recall, F1, average precision, AUROC), _retrain.csv (per variant); detectors_summary.csv,
retrain_summary.csv and table.md over the runs found. A rerun resumes: scored runs are not scored
again and finished variants not retrained (delete a run's files to redo it).
"""
# Defaults: edit them here or override them on the command line.
FOLDS = 5             # K of the probe's cross-validated probabilities
PROBE_SEED = 0        # the folds' shuffle
VARIANTS = ["masc_relabel", "cleanlab_prune", "cleanlab_relabel"]
# The others are the settings groups' (--help lists them): the read-out (MASC/readout.py,
# Settings; LAYERS: the candidate layers; TEST_SUBSET only changes reported accuracies), MASC's
# THRESHOLD, the fine-tuning per variant (MASC/retrain.py: MAX_EPOCHS, PATIENCE, SHUFFLE) and
# DEVICE, DATA, OUT.

import pandas as pd  # noqa: E402

from MASC import cli, noise, results  # noqa: E402
from MASC.devices import pick_device  # noqa: E402

_READOUT = cli.without(cli.READOUT, "ROWS_ON_DISK")
_FINE_TUNING = cli.without(cli.FINE_TUNING, "SEED")  # seed: the run index
_SCORE_COLUMNS = ["row", "given", "true", "layer", "masc_pred", "probe_pred"] + \
    [c for pair in noise.DETECTORS.values() for c in pair]


def score_run(args, trained, settings):
    """The run's scores: read back if written with these ``settings``, else computed and written
    with its layer table and metrics (a retraining CSV of the run goes: it belonged to other
    scores)."""
    key = trained.key
    path = key.label_noise_csv("scores")
    if path.exists():
        scores = results.read_csv(path, _SCORE_COLUMNS)
        if results.same_settings(scores, settings):
            return scores, results.read_csv(key.label_noise_csv("layers"))
        print(f"{key}: scored with other settings before; scoring again")
    scores, table = noise.detect(trained, readout=cli.readout_settings(args),
                                 threshold=args.threshold, folds=args.folds, seed=args.probe_seed)
    ids = trained.key.ids()
    results.write_csv(pd.concat([pd.DataFrame([ids] * len(table)), table,
                                 pd.DataFrame([settings] * len(table))], axis=1),
                      key.label_noise_csv("layers"))
    metrics = noise.metrics_table(scores, {**ids, "layer": scores.layer.iloc[0]})
    results.write_csv(metrics.assign(**settings), key.label_noise_csv("metrics"))
    key.label_noise_csv("retrain").unlink(missing_ok=True)
    print(metrics[["detector", "n_flagged", "precision", "recall", "f1", "average_precision",
                   "auroc"]].to_string(index=False))
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
    study = results.tidy_dir(args.out, "label_noise", args.dataset, args.model)
    for trained in cli.trained_runs(args):
        key = trained.key
        # what changes the scores, and the retrainings: a rerun with others does them again
        settings = {"threshold": args.threshold, "folds": args.folds,
                    "probe_seed": args.probe_seed, "layers": " ".join(args.layers or ["all"]),
                    "per_sample_bn": args.per_sample_bn, "n_labels": len(trained.labels.train_rows),
                    "n_test": len(trained.test), **trained.provenance}
        retraining = {**settings, "max_epochs": args.max_epochs, "patience": args.patience,
                      "shuffle": args.shuffle}
        with results.lock(key.label_noise_lock, wait=False, what="scored"):
            scores, table = score_run(args, trained, settings)
            path = key.label_noise_csv("retrain")
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
