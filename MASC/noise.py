"""MASC as a label-noise detector next to cleanlab (confident learning), and retraining on the
cleaned labels (a study beyond the paper: Compare_experiments/label_noise/).

Every training label of a memorised run (trained with a hold-out) gets a flag and a suspicion
score (higher = more suspicious) from three detectors, all at or from the layer that the clean
protocol chooses (MASC's best accuracy on the hold-out's corrupted labels):

* ``MASC``: MASC (fitted on the corrupted labels) disagrees with the label; score: the angle to
  the label's subspace minus the smallest angle to another class's subspace (degrees);
* ``cleanlab_probe``: ``cleanlab.filter.find_label_issues`` on out-of-sample probabilities of a
  logistic-regression probe (scikit-learn ``LogisticRegression`` on standardised activations,
  ``cross_val_predict`` with K stratified folds); score: 1 - cleanlab's self-confidence;
* ``cleanlab_softmax``: the same on the memorised network's own in-sample softmax (the naive use).

No test label is used: the detectors see the training rows' corrupted labels, the layer is chosen
on the hold-out's corrupted labels; the test set is only scored for reporting. cleanlab is an
optional dependency of this study (requirements-study.txt).
"""
import math
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import data, plots, results, retrain, training
from .readout import Settings
from .errors import MASCError
from .masc import THRESHOLD, MinimumAngleSubspaceClassifier

# detector -> (flag column, score column) of a scores frame
DETECTORS = {"MASC": ("masc_flag", "masc_margin"),
             "cleanlab_probe": ("probe_flag", "probe_score"),
             "cleanlab_softmax": ("softmax_flag", "softmax_score")}
METRICS = ["precision", "recall", "f1", "average_precision", "auroc"]
VARIANTS = ("masc_relabel", "cleanlab_prune", "cleanlab_relabel")
PROBE_MAX_ITER = 300
RUN_KEYS = ["dataset", "model", "corrupt", "run"]


def _cleanlab():
    try:
        import cleanlab.filter
        import cleanlab.rank
    except ImportError:
        raise MASCError("the label-noise study needs cleanlab: pip install cleanlab (or pip "
                        "install -r requirements-study.txt)") from None
    return cleanlab


def _numpy(a):
    return a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)


def masc_scores(estimator, X, given):
    """``(predicted, margins)`` of a fitted MASC on rows X with labels ``given``: MASC's class
    (it flags a label where they differ) and the angle to the label's subspace minus the smallest
    angle to another class's subspace (degrees; > 0 where another class is closer)."""
    given, classes = np.asarray(given), np.asarray(estimator.classes_)
    column = np.searchsorted(classes, given).clip(0, len(classes) - 1)
    if not np.array_equal(classes[column], given):
        raise MASCError(f"labels {sorted(set(given.tolist()) - set(classes.tolist()))} are not "
                        f"among MASC's classes {classes.tolist()}; fit MASC with every class")
    angles = _numpy(estimator.angles(X)).astype(np.float64)
    own = angles[np.arange(len(given)), column]
    angles[np.arange(len(given)), column] = np.inf
    return _numpy(estimator.predict(X)), own - angles.min(1)


def probe_probabilities(X, given, num_classes, folds=5, seed=0):
    """Out-of-sample class probabilities (n, num_classes) of a logistic-regression probe on
    standardised ``X``: ``cross_val_predict`` over ``folds`` stratified folds (seeded)."""
    given = np.asarray(given)
    counts = np.bincount(given, minlength=num_classes)
    if counts.min() < folds:
        raise MASCError(f"class {int(counts.argmin())} has {int(counts.min())} training labels, "
                        f"fewer than the {folds} folds of the probe; use fewer folds (--folds) or "
                        f"more training samples")
    X = X.cpu().numpy() if torch.is_tensor(X) else np.asarray(X)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))
    with warnings.catch_warnings():  # noisy labels rarely converge fully; the cap is stated
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_val_predict(probe, X, given, method="predict_proba",
                                 cv=StratifiedKFold(folds, shuffle=True, random_state=seed))


def confident_learning(given, probs):
    """``(flags, scores)`` of cleanlab: ``find_label_issues`` with its defaults (one process) and
    1 - ``get_label_quality_scores`` (self-confidence)."""
    cl = _cleanlab()
    given, probs = np.asarray(given), np.asarray(probs, dtype=np.float64)
    flags = cl.filter.find_label_issues(given, probs, n_jobs=1)
    return np.asarray(flags, dtype=bool), 1 - cl.rank.get_label_quality_scores(given, probs)


def _share(a, b):
    return a / b if b else math.nan


def detection_metrics(flags, scores, given, true):
    """Precision, recall and F1 of the flagged set, average precision and AUROC of the ranking,
    against the known truth (a label is corrupted where given != true). NaN where undefined:
    precision with nothing flagged, recall, AP and AUROC without corrupted labels (AUROC also
    when every label is)."""
    flags, scores = np.asarray(flags, dtype=bool), np.asarray(scores, dtype=np.float64)
    corrupted = np.asarray(given) != np.asarray(true)
    if not len(flags) == len(scores) == len(corrupted):
        raise MASCError(f"flags, scores and labels differ in length ({len(flags)}, {len(scores)}, "
                        f"{len(corrupted)}); score every training row once")
    tp, n_flagged, n_corrupted = int((flags & corrupted).sum()), int(flags.sum()), int(corrupted.sum())
    both = corrupted.any() and not corrupted.all()
    return {"n_rows": len(flags), "n_corrupted": n_corrupted, "n_flagged": n_flagged,
            "true_positives": tp, "precision": _share(tp, n_flagged),
            "recall": _share(tp, n_corrupted), "f1": _share(2 * tp, n_flagged + n_corrupted),
            "average_precision": average_precision_score(corrupted, scores) if corrupted.any() else math.nan,
            "auroc": roc_auc_score(corrupted, scores) if both else math.nan}


def metrics_table(scores, ids=None):
    """One row of :func:`detection_metrics` per detector of a scores frame (``ids`` prefixed)."""
    return pd.DataFrame([{**(ids or {}), "detector": name,
                          **detection_metrics(scores[flag], scores[score], scores.given, scores.true)}
                         for name, (flag, score) in DETECTORS.items()])


def memorised_run(trained):
    """``(trained-on split, corrupted labels, true labels, rows, clean-protocol Splits)`` of a
    :class:`~MASC.runs.TrainedRun` trained with a hold-out (``rows``: the trained-on rows'
    indices in the training set; its test split is only reported)."""
    splits = retrain.protocol_splits("clean", trained.train, trained.labels, trained.test)
    fit_split, corrupted, true = trained.training()
    return fit_split, corrupted, true, trained.labels.train_rows, splits


def _layer_and_softmax(reader, images, layer):
    acts, probs = [], []
    for _, found, logits in reader.batches(images, [layer]):
        acts.append(found[layer].float().cpu())
        probs.append(torch.softmax(logits.double(), 1).cpu())
    return torch.cat(acts), torch.cat(probs).numpy()


def detect(trained, *, readout=Settings(), threshold=THRESHOLD, folds=5, seed=0, log=print):
    """Score every trained-on label of a memorised :class:`~MASC.runs.TrainedRun` with each
    detector.

    Returns ``(scores, layers_table)``: one row per training row (row, given and true label,
    each detector's flag and score, MASC's and the probe's predicted classes), and the clean
    protocol's per-layer MASC table (its ``chosen`` row is the layer used)."""
    _cleanlab()  # fail before any work
    dataset = trained.dataset
    fit_split, given, true, rows, splits = memorised_run(trained)
    reader = readout.reader(trained.net, dataset)
    table, _, (model_val, model_test) = retrain.masc_layers(
        reader, fit_split, {"corrupted": given}, splits, threshold=threshold)
    chosen = table[table.chosen].iloc[0]
    layer = chosen.layer
    log(f"{dataset} {trained.model} p={trained.p} run {trained.run}: layer {layer} (MASC on the "
        f"hold-out's corrupted labels {chosen.masc_val_acc:.4f}); {len(given)} training labels")
    X, softmax = _layer_and_softmax(reader, fit_split.images, layer)
    X = X.to(reader.device)  # the chosen layer's MASC again, now kept for its angles
    masc = MinimumAngleSubspaceClassifier(threshold, device=reader.device).fit(
        X, given, classes=range(data.info(dataset).num_classes))
    masc_pred, margin = masc_scores(masc, X, given)
    probs = probe_probabilities(X, given, data.info(dataset).num_classes, folds, seed)
    probe_flag, probe_score = confident_learning(given, probs)
    softmax_flag, softmax_score = confident_learning(given, softmax)
    scores = pd.DataFrame({"row": rows, "given": given, "true": true, "layer": layer,
                           "masc_pred": masc_pred, "masc_flag": masc_pred != given,
                           "masc_margin": margin,
                           "probe_pred": probs.argmax(1), "probe_flag": probe_flag,
                           "probe_score": probe_score, "softmax_flag": softmax_flag,
                           "softmax_score": softmax_score})
    table = table.assign(model_val_acc=model_val, model_test_acc=model_test)
    return scores, table


def cleaned_labels(scores, variant):
    """``(rows, labels)`` to fine-tune on under a retraining variant, as positions in the scores
    frame and their labels: ``masc_relabel`` every row with MASC's class; ``cleanlab_prune`` the
    rows the cleanlab probe did not flag, their given labels; ``cleanlab_relabel`` every row, the
    flagged ones with the probe's class."""
    if variant == "masc_relabel":
        return np.arange(len(scores)), scores.masc_pred.to_numpy()
    if variant == "cleanlab_prune":
        return np.flatnonzero(~scores.probe_flag.to_numpy()), scores.given.to_numpy()[~scores.probe_flag.to_numpy()]
    if variant == "cleanlab_relabel":
        return np.arange(len(scores)), np.where(scores.probe_flag, scores.probe_pred, scores.given)
    raise MASCError(f"unknown retraining variant {variant!r}; choose from {', '.join(VARIANTS)}")


def retrain_variant(trained, scores, variant, *, device="cpu", max_epochs=retrain.MAX_EPOCHS,
                    patience=retrain.PATIENCE, seed=None, shuffle=False, log=print):
    """Fine-tune the memorised model of a :class:`~MASC.runs.TrainedRun` on the labels a variant
    cleans (clean protocol: early stopping on the hold-out's corrupted labels, the best epoch
    kept); one summary row."""
    dataset, model, p, run = trained.dataset, trained.model, trained.p, trained.run
    fit_split, given, true, rows, splits = memorised_run(trained)
    if not np.array_equal(scores.row.to_numpy(), rows) or not np.array_equal(scores.given.to_numpy(), given):
        raise MASCError(f"the scores of {dataset} {model} p={p} run {run} are not of this run's "
                        f"training rows (an older run?); delete them and run the study again")
    keep, labels = cleaned_labels(scores, variant)
    log(f"{dataset} {model} p={p} run {run}, {variant}: fine-tuning on {len(keep)} of {len(given)} "
        f"rows, {int((labels != given[keep]).sum())} labels changed")
    history, stopper, _ = retrain.fine_tune(
        trained.net, data.Split(fit_split.images[torch.as_tensor(keep)],
                                torch.tensor(np.asarray(labels), dtype=torch.long)),
        splits.val, splits.test, training.Run(dataset, model, p, run, run if seed is None else seed),
        device=device, max_epochs=max_epochs, patience=patience, shuffle=shuffle,
        restore_best=True, log=log)
    frame = pd.DataFrame(history, columns=["epoch", "train", "val", "test"])
    return {"variant": variant, "n_train": len(keep), "n_removed": len(given) - len(keep),
            "n_changed": int((labels != given[keep]).sum()),
            "label_acc_vs_true": float(np.mean(labels == true[keep])),
            "epochs_run": len(history), "best_epoch": stopper.best_epoch,
            "val_acc_best": stopper.best / 100,
            "test_acc_final": frame.test[stopper.best_epoch - 1] / 100,
            "test_acc_last": frame.test.iloc[-1] / 100, "test_acc_max": frame.test.max() / 100}


def summarise(frame, by, values):
    """Mean, min, max and the 95% t-interval over runs of each of ``values`` per group ``by``
    (long format: one row per group and value)."""
    long = frame.melt(id_vars=by, value_vars=values, var_name="metric", value_name="value")
    summary = plots.t_summary(long, by + ["metric"], "value")
    spread = long.groupby(by + ["metric"], sort=False).value.agg(["min", "max"]).reset_index()
    return summary.merge(spread, on=by + ["metric"])


def study_files(folder, kind):
    """The per-run CSVs of one kind (scores, metrics, layers, retrain) under a study folder
    (results/label_noise/{ds}_{model}), in (p, run) order."""
    return [path for _, _, path in results.find_in(folder, "label_noise", part=kind)]


def load_scores(folder):
    """Every run's per-row scores under a study folder as one frame (with the run's ids)."""
    paths = study_files(folder, "scores")
    return pd.concat([results.read_csv(p, RUN_KEYS + ["given", "true"]) for p in paths],
                     ignore_index=True) if paths else pd.DataFrame()


def study_summary(folder):
    """Summaries over runs of every per-run CSV under ``folder``: the detectors' metrics and the
    retraining variants' accuracies (written as detectors_summary.csv and retrain_summary.csv);
    returns both frames (the second empty when nothing was retrained)."""
    paths = study_files(folder, "metrics")
    if not paths:
        raise MASCError(f"no Run_*_metrics.csv under {folder}; run "
                        f"Compare_experiments/label_noise/label_noise.py first")
    metrics = pd.concat([results.read_csv(p, RUN_KEYS + ["detector"] + METRICS) for p in paths],
                        ignore_index=True)
    detectors = summarise(metrics, ["dataset", "model", "corrupt", "detector"], METRICS)
    results.write_csv(detectors, folder / "detectors_summary.csv")
    accuracies = ["test_acc_final", "test_acc_max", "model_test_acc", "label_acc_vs_true", "n_train"]
    paths = study_files(folder, "retrain")
    retrained = pd.DataFrame()
    if paths:
        frame = pd.concat([results.read_csv(p, RUN_KEYS + ["variant"] + accuracies) for p in paths],
                          ignore_index=True)
        retrained = summarise(frame, ["dataset", "model", "corrupt", "variant"], accuracies)
        results.write_csv(retrained, folder / "retrain_summary.csv")
    return detectors, retrained


def _cell(rows, metric, percent=False):
    row = rows[rows.metric == metric]
    if row.empty or pd.isna(row["mean"].iloc[0]):
        return "n/a"
    r, scale = row.iloc[0], 100 if percent else 1
    fmt = "{:.1f}" if percent else "{:.3f}"
    text = fmt.format(scale * r["mean"])
    if r.n_runs > 1:
        text += f" ({fmt.format(scale * r['min'])}-{fmt.format(scale * r['max'])})"
    return text


def markdown(detectors, retrained):
    """The study's table as Markdown: per p and detector, F1, precision and recall of the flagged
    set and AP and AUROC of the ranking; per p and retraining variant, test accuracy (%). Mean
    over runs, (min-max) with several runs."""
    lines = ["| model | dataset | p | detector | runs | F1 | precision | recall | AP | AUROC |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, model, corrupt, detector), rows in detectors.groupby(
            ["dataset", "model", "corrupt", "detector"], sort=False):
        lines.append(f"| {model} | {dataset} | {corrupt:g} | {detector} | {int(rows.n_runs.iloc[0])} | "
                     + " | ".join(_cell(rows, m) for m in ["f1", "precision", "recall",
                                                           "average_precision", "auroc"]) + " |")
    if len(retrained):
        lines += ["", "| model | dataset | p | retrained on | runs | rows kept | labels right (%) | "
                      "test before (%) | test, best-val epoch (%) | test, best epoch (%) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for (dataset, model, corrupt, variant), rows in retrained.groupby(
                ["dataset", "model", "corrupt", "variant"], sort=False):
            kept = rows[rows.metric == "n_train"]["mean"].iloc[0]
            lines.append(f"| {model} | {dataset} | {corrupt:g} | {variant} | {int(rows.n_runs.iloc[0])} "
                         f"| {kept:.0f} | " + " | ".join(_cell(rows, m, True) for m in [
                             "label_acc_vs_true", "model_test_acc", "test_acc_final", "test_acc_max"])
                         + " |")
    return "\n".join(lines) + "\n"
