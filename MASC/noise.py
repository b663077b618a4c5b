"""Label noise: MASC as a finder of wrong labels for anyone's features, and the study that
measures it next to cleanlab (confident learning) on memorising networks
(Compare_experiments/label_noise/).

Finding wrong labels from features alone (a layer's activations, a pretrained backbone's
embeddings, raw pixels): NumPy arrays, torch tensors, DataFrames or a
:class:`~MASC.rowfile.RowFile` in; no network training, no predicted probabilities::

    from MASC import noise
    issues = noise.find_label_issues(features, labels)            # boolean mask, one per sample
    ranked = noise.find_label_issues(features, labels, return_indices_ranked_by="label_quality")
    quality = noise.label_quality_scores(features, labels)        # in [0, 1], higher = more likely right
    report = noise.label_report(features, labels)                 # one row per sample (a DataFrame)

How a sample is judged: MASC fits one subspace per class (``threshold``: the share of each
class's energy kept, 0.99 as in the paper). With theta_given the angle (degrees) between the
sample and its given label's subspace and theta_other the smallest angle to another class's
subspace, the sample's **label quality** is (90 + theta_other - theta_given) / 180, in [0, 1].
**The flag rule** (the only one): a label is an issue when its quality is below 0.5, i.e. when
another class's subspace is closer than its own; that class is the suggested label. The flagged
set is therefore exactly the start of the ranking by quality (lowest first).

**Cross-fitted by default** (``cv=5``): seeded stratified folds; each sample's angles come from
subspaces fitted on the other folds, so no sample judges itself. ``cv=None`` fits once on every
sample and judges those same samples (in-sample: a subspace that holds a sample's own direction
rarely flags it).

The study part (below :data:`DETECTORS`): every training label of a memorised run (trained with a
hold-out) gets a flag and a suspicion score (higher = more suspicious) from each detector, all at
or from the layer that the clean protocol chooses (MASC's best accuracy on the hold-out's
corrupted labels):

* ``MASC``: :func:`label_report`, cross-fitted (suspicion: 1 - label quality);
* ``MASC_in_sample``: the same with ``cv=None``;
* ``knn_vote``: :func:`knn_vote`, the labels of each sample's nearest neighbours by cosine (the
  SimiFeat idea, written here);
* ``cleanlab_probe``: ``cleanlab.filter.find_label_issues`` on out-of-sample probabilities of a
  logistic-regression probe (scikit-learn ``LogisticRegression`` on standardised activations,
  ``cross_val_predict`` with K stratified folds); suspicion: 1 - cleanlab's self-confidence;
* ``cleanlab_datalab``: cleanlab's own check from features (``Datalab.find_issues(features=...)``:
  k-nearest-neighbour probabilities, then confident learning); suspicion: 1 - its label score;
* ``cleanlab_softmax``: cleanlab on the network's own in-sample softmax (the naive use).

No test label is used: the detectors see the training rows' corrupted labels, the layer is chosen
on the hold-out's corrupted labels; the test set is only scored for reporting. cleanlab is an
optional dependency of the study (requirements-study.txt); the finder needs none.
"""
import math
import numbers
import time
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
from .masc import THRESHOLD, MinimumAngleSubspaceClassifier, _as_labels, _numpy, _sorted
from .rowfile import RowFile

RANKED_BY = "label_quality"  # find_label_issues(return_indices_ranked_by=...): the one ranking


def _features(features):
    """Features as a 2-D floating tensor (from a tensor, an array, a list or a DataFrame) or a
    RowFile, checked: numeric, 2-D, not empty, finite."""
    if isinstance(features, RowFile):
        features.check_complete()  # its rows were checked finite as they were written
        return features
    if not torch.is_tensor(features):
        array = np.asarray(features.to_numpy() if isinstance(features, pd.DataFrame) else features)
        if array.dtype.kind not in "biuf":
            raise MASCError(f"features must be numbers, got {array.dtype} values; encode or drop "
                            f"the non-numeric columns")
        features = torch.from_numpy(np.array(array, copy=not array.flags.writeable))
    X = features.detach()
    if X.dim() != 2 or 0 in X.shape:
        raise MASCError(f"features must be 2-D, one row of numbers per sample, got shape "
                        f"{tuple(X.shape)}; flatten images first, e.g. X.reshape(len(X), -1)")
    if X.is_complex():
        raise MASCError("features must be real numbers, not complex")
    if not X.is_floating_point():
        X = X.double()
    bad = (~torch.isfinite(X).all(1)).nonzero().squeeze(1)
    if len(bad):
        raise MASCError(f"features row {int(bad[0])} ({len(bad)} row(s) in all) holds NaN or "
                        f"infinite values; impute or drop those rows")
    return X


def _labels(labels, n, classes, cv):
    """``(labels, classes, column of each label in classes)``, checked: one label per row, each
    among ``classes`` (default: the labels present), at least two classes, each with a row in
    every fold."""
    if cv is not None and (isinstance(cv, bool) or not isinstance(cv, numbers.Integral) or cv < 2):
        raise MASCError(f"cv must be a whole number of folds >= 2, or None to judge in-sample, "
                        f"got {cv!r}")
    y = _numpy(labels)
    if y.ndim != 1:
        raise MASCError(f"labels must be 1-D, one label per sample, got shape {y.shape}")
    if len(y) != n:
        raise MASCError(f"features have {n} rows but labels has {len(y)}; give one label per row")
    y = _as_labels(y, "labels")
    if classes is None:
        classes = np.unique(y)
    else:
        classes = np.asarray(_sorted(set(_as_labels(np.asarray(classes).ravel(), "classes")
                                         .tolist()), "classes"))
        outside = ~np.isin(y, classes)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise MASCError(f"label {y[row].item()!r} of row {row} is out of range: not among the "
                            f"classes {classes.tolist()}; fix the label or add its class")
    if len(classes) < 2:
        raise MASCError(f"the labels hold one class ({classes[0].item()!r}); finding wrong labels "
                        f"needs two or more")
    column = np.searchsorted(classes, y)
    counts = np.bincount(column, minlength=len(classes))
    if counts.min() < (cv or 1):
        c, m = classes[counts.argmin()].item(), int(counts.min())
        raise MASCError(
            f"class {c!r} has {m} row(s), fewer than the {cv} folds: each sample is judged by "
            f"subspaces fitted on the other folds, so every class needs a row in each; use fewer "
            f"folds (cv=2), cv=None (in-sample) or drop the class" if cv else
            f"class {c!r} has no rows; list only classes that have samples")
    return y, classes, column


def _take(X, rows):
    return X.take(rows) if isinstance(X, RowFile) else X[torch.as_tensor(rows)]


def _angles(X, y, classes, threshold, cv, seed, device):
    """(n, classes) angles in degrees between each sample and each class's MASC subspace:
    fitted on the other folds (cv folds) or on every sample (cv=None)."""
    def judged(train, rows):
        masc = MinimumAngleSubspaceClassifier(threshold, device=device)
        masc.fit(_take(X, train), y[train], classes=classes)
        return _numpy(masc.angles(_take(X, rows))).astype(np.float64)

    everything = np.arange(len(y))
    if cv is None:
        return judged(everything, everything)
    angles = np.empty((len(y), len(classes)))
    for train, held in StratifiedKFold(cv, shuffle=True, random_state=seed).split(everything, y):
        angles[held] = judged(train, held)
    return angles


def label_report(features, labels, *, threshold=THRESHOLD, cv=5, seed=0, classes=None, device=None):
    """One row per sample, in input order: ``given_label``, ``suggested_label`` (the closest other
    class where the label is an issue, else the given one), ``label_quality`` (in [0, 1], higher
    = more likely right), ``is_label_issue`` (quality < 0.5), ``rank`` (1 = lowest quality, ties
    in input order), ``angle_given`` and ``angle_other`` (degrees to the label's subspace and to
    the closest other class's).

    ``features``: (n, d) numbers (array, tensor, DataFrame, list) or a RowFile; ``labels``: n
    integers or strings; ``threshold``: MASC's share of each class's energy (or a whole number of
    components); ``cv``: stratified folds (``seed`` shuffles them), None to judge in-sample;
    ``classes``: every class expected (default: the labels present; a label outside it is an
    error); ``device``: where MASC computes (default: the features' device)."""
    X = _features(features)
    y, classes, column = _labels(labels, len(X), classes, cv)
    angles = _angles(X, y, classes, threshold, cv, seed, device)
    rows = np.arange(len(y))
    own = angles[rows, column]
    angles[rows, column] = np.inf
    nearest = angles.argmin(1)
    other = angles[rows, nearest]
    quality = ((90 + other - own) / 180).clip(0, 1)
    issue = quality < 0.5
    rank = np.empty(len(y), dtype=np.int64)
    rank[np.argsort(quality, kind="stable")] = rows + 1
    return pd.DataFrame({"given_label": y, "suggested_label": np.where(issue, classes[nearest], y),
                         "label_quality": quality, "is_label_issue": issue, "rank": rank,
                         "angle_given": own, "angle_other": other})


def find_label_issues(features, labels, *, return_indices_ranked_by=None, **options):
    """The samples whose label looks wrong (:func:`label_report`'s flag rule): a boolean mask, or
    with ``return_indices_ranked_by="label_quality"`` their indices, most suspicious first (the
    first ``mask.sum()`` of the ranking by quality). ``options``: :func:`label_report`'s
    (threshold, cv, seed, classes, device)."""
    if return_indices_ranked_by not in (None, RANKED_BY):
        raise MASCError(f"return_indices_ranked_by must be None (a boolean mask) or "
                        f"{RANKED_BY!r}, got {return_indices_ranked_by!r}")
    report = label_report(features, labels, **options)
    if return_indices_ranked_by is None:
        return report.is_label_issue.to_numpy()
    return report.index[report.is_label_issue].to_numpy()[
        np.argsort(report["rank"][report.is_label_issue].to_numpy())]


def label_quality_scores(features, labels, **options):
    """Each sample's label quality in [0, 1] (higher = more likely right; below 0.5 flagged):
    :func:`label_report`'s, with its ``options``."""
    return label_report(features, labels, **options).label_quality.to_numpy()


# detector -> (flag column, suspicion column) of a scores frame
DETECTORS = {"MASC": ("masc_flag", "masc_score"),
             "MASC_in_sample": ("masc_in_flag", "masc_in_score"),
             "knn_vote": ("knn_flag", "knn_score"),
             "cleanlab_probe": ("probe_flag", "probe_score"),
             "cleanlab_datalab": ("datalab_flag", "datalab_score"),
             "cleanlab_softmax": ("softmax_flag", "softmax_score")}
LIFT_AT = 100  # lift@k: the share of corrupted labels among the k most suspicious, over the base rate
METRICS = ["precision", "recall", "f1", "average_precision", "auroc", f"lift_at_{LIFT_AT}"]
VARIANTS = ("masc_relabel", "cleanlab_prune", "cleanlab_relabel")
PROBE_MAX_ITER = 300
KNN = 10  # neighbours of the k-NN vote (and of cleanlab's Datalab, its default)
RUN_KEYS = ["dataset", "model", "corrupt", "run"]
# Confident Learning's published F1 at 70% wrong labels (other data and model: CIFAR-10, 4-fold
# out-of-sample probabilities of a ResNet-50), shaded at p = 0.8 (72% wrong) in the summary figure
PUBLISHED = {("f1", 0.8): (0.70, 0.83, "Confident Learning, CIFAR-10, 70% wrong labels\n"
                                       "(published; other data and model)")}


def _cleanlab():
    try:
        import cleanlab.filter
        import cleanlab.rank
        import datasets  # noqa: F401 (cleanlab's Datalab needs it)
    except ImportError:
        raise MASCError("the label-noise study needs cleanlab: pip install 'cleanlab[datalab]' "
                        "(or pip install -r requirements-study.txt)") from None
    return cleanlab


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


def knn_vote(X, given, num_classes, k=KNN, batch=1024):
    """``(flags, suggested, quality)`` of a features-only k-nearest-neighbour vote (the SimiFeat
    idea): each sample's k most cosine-similar other samples vote with their labels; quality is
    the share voting for its own label, a label is flagged where another label has more votes
    (that label suggested; ties keep the given one)."""
    X = torch.nn.functional.normalize(torch.as_tensor(_numpy(X), dtype=torch.float32), dim=1)
    given = np.asarray(given)
    labels = torch.as_tensor(given)
    if not 0 < k < len(X):
        raise MASCError(f"the k-NN vote needs 0 < k < {len(X)} samples, got k={k}")
    votes = []
    for start in range(0, len(X), batch):
        similar = X[start:start + batch] @ X.T
        rows = torch.arange(len(similar))
        similar[rows, start + rows] = -math.inf  # not itself
        neighbours = similar.topk(k, dim=1).indices
        votes.append(torch.nn.functional.one_hot(labels[neighbours], num_classes).sum(1))
    votes = torch.cat(votes).numpy()
    own = votes[np.arange(len(given)), given]
    flags = votes.max(1) > own
    return flags, np.where(flags, votes.argmax(1), given), own / k


def datalab_issues(X, given, k=KNN):
    """``(flags, suspicion)`` of cleanlab's own check from features alone:
    ``Datalab.find_issues(features=X)`` (label issues only: k-nearest-neighbour probabilities with
    each sample left out, then confident learning); suspicion = 1 - its label score."""
    _cleanlab()
    from cleanlab import Datalab
    lab = Datalab({"label": np.asarray(given)}, label_name="label", verbosity=0)
    with warnings.catch_warnings():  # cleanlab's own pandas deprecations
        warnings.filterwarnings("ignore", module="cleanlab")
        lab.find_issues(features=_numpy(X).astype(np.float32), issue_types={"label": {"k": k}})
    issues = lab.get_issues("label")
    return issues.is_label_issue.to_numpy(dtype=bool), 1 - issues.label_score.to_numpy()


def _share(a, b):
    return a / b if b else math.nan


def lift_at(k, scores, corrupted):
    """The share of corrupted labels among the ``k`` most suspicious (ties at the cut counted at
    their mean, as a random order among them would), over the share among all."""
    scores, corrupted = np.asarray(scores, dtype=np.float64), np.asarray(corrupted, dtype=bool)
    if not corrupted.any() or not len(scores):
        return math.nan
    k = min(k, len(scores))
    cut = np.sort(scores)[::-1][k - 1]
    above, at = scores > cut, scores == cut
    hits = corrupted[above].sum() + (k - above.sum()) * corrupted[at].mean()
    return hits / k / corrupted.mean()


def detection_metrics(flags, scores, given, true):
    """Precision, recall and F1 of the flagged set, average precision, AUROC and lift@LIFT_AT of
    the ranking, against the known truth (a label is corrupted where given != true). NaN where
    undefined: precision with nothing flagged, recall, AP, AUROC and lift without corrupted
    labels (AUROC also when every label is)."""
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
            "auroc": roc_auc_score(corrupted, scores) if both else math.nan,
            f"lift_at_{LIFT_AT}": lift_at(LIFT_AT, scores, corrupted)}


def metrics_table(scores, ids=None, seconds=None):
    """One row of :func:`detection_metrics` per detector of a scores frame that has its columns
    (``ids`` prefixed; ``seconds``: each detector's wall time, a column)."""
    return pd.DataFrame([{**(ids or {}), "detector": name,
                          **detection_metrics(scores[flag], scores[score], scores.given, scores.true),
                          **({"seconds": seconds[name]} if seconds else {})}
                         for name, (flag, score) in DETECTORS.items() if flag in scores])


def score_labels(X, given, num_classes, softmax=None, *, threshold=THRESHOLD, folds=5, seed=0,
                 device=None):
    """``(columns, seconds)``: each detector's flag and suspicion (and MASC's, the k-NN vote's
    and the probe's suggested classes) for the labels ``given`` of the rows of features X, one
    row per sample; the softmax detector only with the network's ``softmax`` probabilities. And
    each detector's wall time (the softmax's: cleanlab alone)."""
    seconds = {}

    def timed(name, work):
        tic = time.perf_counter()
        out = work()
        seconds[name] = time.perf_counter() - tic
        return out

    def masc(cv):
        return label_report(X, given, threshold=threshold, cv=cv, seed=seed,
                            classes=range(num_classes), device=device)

    def probe():
        probs = probe_probabilities(X, given, num_classes, folds, seed)
        return (*confident_learning(given, probs), probs.argmax(1))

    cross = timed("MASC", lambda: masc(folds))
    inside = timed("MASC_in_sample", lambda: masc(None))
    knn_flag, knn_pred, knn_quality = timed("knn_vote", lambda: knn_vote(X, given, num_classes))
    probe_flag, probe_score, probe_pred = timed("cleanlab_probe", probe)
    datalab_flag, datalab_score = timed("cleanlab_datalab", lambda: datalab_issues(X, given))
    columns = {
        "masc_pred": cross.suggested_label, "masc_flag": cross.is_label_issue,
        "masc_score": 1 - cross.label_quality, "masc_in_flag": inside.is_label_issue,
        "masc_in_score": 1 - inside.label_quality, "knn_pred": knn_pred, "knn_flag": knn_flag,
        "knn_score": 1 - knn_quality, "probe_pred": probe_pred, "probe_flag": probe_flag,
        "probe_score": probe_score, "datalab_flag": datalab_flag, "datalab_score": datalab_score}
    if softmax is not None:
        columns["softmax_flag"], columns["softmax_score"] = timed(
            "cleanlab_softmax", lambda: confident_learning(given, softmax))
    return pd.DataFrame(columns), seconds


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


def detect(trained, *, readout=Settings(), threshold=THRESHOLD, folds=5, seed=0,
           features_from=None, log=print):
    """Score every trained-on label of a memorised :class:`~MASC.runs.TrainedRun` with each
    detector of :data:`DETECTORS`. ``features_from``: another TrainedRun trained on the same rows
    (e.g. at p = 0.0) whose network gives the features and the softmax (default: the run's own).

    Returns ``(scores, layers_table, seconds)``: one row per training row (row, given and true
    label, each detector's flag and suspicion, MASC's, the k-NN vote's and the probe's suggested
    classes), the clean protocol's per-layer MASC table (its ``chosen`` row is the layer used),
    and each detector's wall time on the chosen layer's features (the softmax's: cleanlab
    alone; the forward pass is shared)."""
    _cleanlab()  # fail before any work
    dataset, num_classes = trained.dataset, data.info(trained.dataset).num_classes
    fit_split, given, true, rows, splits = memorised_run(trained)
    source = features_from or trained
    if source is not trained and not np.array_equal(source.labels.train_rows, rows):
        raise MASCError(f"the p={source.p} run {source.run} was trained on other rows than the "
                        f"p={trained.p} run {trained.run}; train both with the same --subset and "
                        f"--holdout")
    reader = readout.reader(source.net, dataset)
    table, _, (model_val, model_test) = retrain.masc_layers(
        reader, fit_split, {"corrupted": given}, splits, threshold=threshold)
    chosen = table[table.chosen].iloc[0]
    layer = chosen.layer
    log(f"{dataset} {trained.model} p={trained.p} run {trained.run}, features of the p={source.p} "
        f"network: layer {layer} (MASC on the hold-out's corrupted labels "
        f"{chosen.masc_val_acc:.4f}); {len(given)} training labels")
    X, softmax = _layer_and_softmax(reader, fit_split.images, layer)
    found, seconds = score_labels(X, given, num_classes, softmax, threshold=threshold,
                                  folds=folds, seed=seed, device=reader.device)
    scores = pd.concat([pd.DataFrame({"row": rows, "given": given, "true": true, "layer": layer}),
                        found], axis=1)
    table = table.assign(model_val_acc=model_val, model_test_acc=model_test)
    return scores, table, seconds


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
    set and AP, AUROC and lift@LIFT_AT of the ranking; per p and retraining variant, test accuracy
    (%). Mean over runs, (min-max) with several runs."""
    lines = ["| model | dataset | p | detector | runs | F1 | precision | recall | AP | AUROC | "
             f"lift@{LIFT_AT} |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, model, corrupt, detector), rows in detectors.groupby(
            ["dataset", "model", "corrupt", "detector"], sort=False):
        lines.append(f"| {model} | {dataset} | {corrupt:g} | {detector} | {int(rows.n_runs.iloc[0])} | "
                     + " | ".join(_cell(rows, m) for m in ["f1", "precision", "recall",
                                                           "average_precision", "auroc",
                                                           f"lift_at_{LIFT_AT}"]) + " |")
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
