"""Probes on layer activations: MASC and the stronger baselines behind one estimator interface.

Every probe has ``fit(X, y) -> self``, ``predict(X) -> numpy labels`` and ``score(X, y)`` (the
accuracy as a fraction rounded to 4 decimals, as MASC reports it); X is an (n, D) tensor or array.
After fit, ``fit_flops_`` is the cost of the fit, ``predict_flops(M)`` that of predicting M rows,
and ``notes_`` says what was fitted (e.g. MASC's mean component count, QDA's regularisation).

FLOP conventions (raw counts; plots show GFLOPs): a multiply-add counts 2; N training rows, N_c of
class c, M rows predicted, D features, C classes; a symmetric eigendecomposition with eigenvectors of
an n x n matrix costs 9 n^3 (symmetric QR, Golub and Van Loan); a thin SVD of an a x b matrix with
s = min(a, b), l = max(a, b) costs 4 l s^2 + 8 s^3 (Golub-Reinsch); comparisons, sorting and memory
traffic are not counted. Each probe's docstring gives its formulas. Unlike the reference's
counts, MASC's fit counts its true component numbers and both routes, logistic regression counts every
step of every epoch, and all units are the same.
"""
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.linalg import LinAlgError
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, QuadraticDiscriminantAnalysis
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from .devices import sync
from .corruption import LABELLINGS
from .errors import MASCError
from .masc import THRESHOLD, MinimumAngleSubspaceClassifier, accuracy


def eigh_flops(n):
    return 9 * n ** 3


def svd_flops(a, b):
    s, l = min(a, b), max(a, b)
    return 4 * l * s ** 2 + 8 * s ** 3


def _numpy(X, dtype=np.float64):
    X = X.cpu().numpy() if torch.is_tensor(X) else np.asarray(X)
    return X.astype(dtype, copy=False)


def _labels(y):
    return y.cpu().numpy() if torch.is_tensor(y) else np.asarray(y)


class Probe:
    """The shared part: scoring and empty notes."""

    notes_ = ""

    def score(self, X, y):
        return accuracy(self.predict(X), _labels(y))


class MASCProbe(MinimumAngleSubspaceClassifier, Probe):
    """:class:`MASC.MinimumAngleSubspaceClassifier` with its costs (k_c components of class c,
    K = sum_c k_c).

    fit = sum_c [2 N_c^2 D + 9 N_c^3 + 2 N_c D k_c] while N_c < D (Gram route: Gram matrix,
    eigh, back-projection), else [2 N_c D^2 + 9 D^3] (X_c^T X_c and eigh);
    predict = M (2 D K + 2 K + 2 D + C) (projections, their squares summed per class, the row's
    squared norm, one division per class)."""

    def predict(self, X):
        return super().predict(_numpy(X, np.float32))

    @property
    def fit_flops_(self):
        D = self.n_features_in_
        return float(sum(2 * n * n * D + eigh_flops(n) + 2 * n * D * k if n < D
                         else 2 * n * D * D + eigh_flops(D)
                         for n, k in zip(self.n_samples_per_class_, self.n_components_)))

    def predict_flops(self, M):
        D, K = self.n_features_in_, int(self.n_components_.sum())
        return float(M * (2 * D * K + 2 * K + 2 * D + len(self.n_components_)))

    @property
    def notes_(self):
        return f"k_mean={self.n_components_.mean():.2f}"


class LogisticRegressionProbe(Probe):
    """A linear softmax probe, the reference's settings: ``nn.Linear(D, C)``, Adam lr 1e-3, 20
    epochs, batches of 128 reshuffled every epoch, cross-entropy, float32, seed 42 (weights and
    order); C = the classes present in y.

    fit = E [N (4 D C + 8 C) + S 10 (D + 1) C] with E epochs of S = ceil(N / 128) steps: per row
    the forward pass (2DC + C), the weight and bias gradient (2DC + C) and softmax with its
    gradient (~6C); per step Adam's ~10 FLOPs per parameter. predict = M (2 D C + C)."""

    def __init__(self, epochs=20, batch_size=128, lr=1e-3, seed=42, device=None):
        self.epochs, self.batch_size, self.lr, self.seed, self.device = epochs, batch_size, lr, seed, device

    def fit(self, X, y):
        X = torch.as_tensor(X, dtype=torch.float32)
        X = X.to(self.device or X.device)
        self.classes_, target = np.unique(_labels(y), return_inverse=True)
        target = torch.as_tensor(target, device=X.device)
        (N, D), C = X.shape, len(self.classes_)
        order = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.linear = nn.Linear(D, C).to(X.device)
        optimiser = torch.optim.Adam(self.linear.parameters(), lr=self.lr)
        for _ in range(self.epochs):
            for rows in torch.randperm(N, generator=order).to(X.device).split(self.batch_size):
                loss = F.cross_entropy(self.linear(X[rows]), target[rows])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        steps = -(-N // self.batch_size)
        self.fit_flops_ = float(self.epochs * (N * (4 * D * C + 8 * C) + steps * 10 * (D + 1) * C))
        return self

    @torch.no_grad()
    def predict(self, X):
        X = torch.as_tensor(X, dtype=torch.float32).to(self.linear.weight.device)
        return self.classes_[self.linear(X).argmax(1).cpu().numpy()]

    def predict_flops(self, M):
        C, D = self.linear.weight.shape
        return float(M * (2 * D * C + C))


class NearestClassMean(Probe):
    """Class means of the raw activations; a row goes to the mean of highest cosine similarity
    (a zero row or zero mean has similarity 0).

    fit = N D + C D + 3 C D (sums, divisions, the means' norms);
    predict = M (2 D C + 3 D + C) (dot products, the row's norm, one division per class)."""

    def __init__(self, device=None):
        self.device = device

    def fit(self, X, y):
        X = torch.as_tensor(X, dtype=torch.float32)
        X = X.to(self.device or X.device)
        self.classes_, target = np.unique(_labels(y), return_inverse=True)
        target = torch.as_tensor(target, device=X.device)
        sums = torch.zeros(len(self.classes_), X.shape[1], device=X.device).index_add_(0, target, X)
        counts = torch.bincount(target, minlength=len(self.classes_)).unsqueeze(1)
        self.means_ = F.normalize(sums / counts, dim=1)
        N, D = X.shape
        self.fit_flops_ = float(N * D + 4 * len(self.classes_) * D)
        return self

    def predict(self, X):
        X = torch.as_tensor(X, dtype=torch.float32).to(self.means_.device)
        return self.classes_[(F.normalize(X, dim=1) @ self.means_.T).argmax(1).cpu().numpy()]

    def predict_flops(self, M):
        C, D = self.means_.shape
        return float(M * (2 * D * C + 3 * D + C))


class _SklearnProbe(Probe):
    """A scikit-learn classifier on float64 NumPy copies of the activations."""

    dtype = np.float64

    def fit(self, X, y):
        X, y = _numpy(X, self.dtype), _labels(y)
        self.n_train_, self.n_features_in_ = X.shape
        self.estimator = self._fit(X, y)
        self.classes_ = self.estimator.classes_
        self.fit_flops_ = float(self._fit_flops(X, y))
        return self

    def predict(self, X):
        return self.estimator.predict(_numpy(X, self.dtype))


class KNearestNeighbours(_SklearnProbe):
    """``KNeighborsClassifier(n_neighbors=5, metric="cosine")`` (brute force, uniform votes).

    fit = 0 (it stores the rows); predict = 2 M N D + 3 (M + N) D + M N (cosine distances:
    dot products, both sides' norms, 1 - similarity; the neighbour search is not counted)."""

    dtype = np.float32

    def _fit(self, X, y):
        return KNeighborsClassifier(n_neighbors=5, metric="cosine").fit(X, y)

    def _fit_flops(self, X, y):
        return 0

    def predict_flops(self, M):
        N, D = self.n_train_, self.n_features_in_
        return float(2 * M * N * D + 3 * (M + N) * D + M * N)


class LDAProbe(_SklearnProbe):
    """``LinearDiscriminantAnalysis()`` with scikit-learn's defaults (svd solver, no shrinkage).

    fit = 7 N D + svd(N, D) + 2 C D r + svd(C, r) + 2 D r q + 4 C D q with r = min(N, D) (the
    within-class rank, at most) and q <= C - 1 the discriminant directions (centring and scaling,
    the two SVDs, the projections and coefficients); predict = M (2 D C' + C'), C' = rows of
    ``coef_`` (C, or 1 for two classes)."""

    def _fit(self, X, y):
        with warnings.catch_warnings():  # collinear layers are the rule here, not news
            warnings.filterwarnings("ignore", message="Variables are collinear")
            return LinearDiscriminantAnalysis().fit(X, y)

    def _fit_flops(self, X, y):
        (N, D), C = X.shape, len(self.classes_)
        r, q = min(N, D), self.estimator.scalings_.shape[1]
        return 7 * N * D + svd_flops(N, D) + 2 * C * D * r + svd_flops(C, r) + 2 * D * r * q + 4 * C * D * q

    def predict_flops(self, M):
        rows, D = self.estimator.coef_.shape
        return float(M * (2 * D * rows + rows))


class QDAProbe(_SklearnProbe):
    """``QuadraticDiscriminantAnalysis()``, scikit-learn's defaults when they work.

    Layer activations often have singular class covariances (fewer rows than dimensions, or dead
    ReLU units); the reference then fitted anyway and scored NaN-ridden log-densities, and
    scikit-learn >= 1.8 refuses such a fit. We then refit with the smallest regularisation that
    scikit-learn accepts: ``solver="eigen"`` with shrinkage a in 1e-6, 1e-5, ..., 1 (each class
    covariance S becomes (1 - a) S + a (tr S / D) I, so a is scale-free); ``notes_`` records it.
    The rows are divided by one number s (s^2 = the mean feature variance of the training rows):
    that changes no prediction of QDA, shrunk or not, but makes scikit-learn's absolute rank
    tolerance (1e-4) relative to the layer's scale.

    fit = sum over the attempts made: defaults sum_c [2 N_c D + svd(N_c, D)]; shrinkage
    sum_c [N_c D + 2 N_c D^2 + 2 D^2 + 9 D^3] (counted in full also for a rejected attempt, which
    stops at the first singular class: an upper bound); predict = M sum_c (D + 2 D r_c + 3 r_c)
    + M C, r_c the columns of class c's rotation (centring, rotation, scaled squares)."""

    SHRINKAGES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)

    def _fit(self, X, y):
        counts = np.unique(y, return_counts=True)[1]
        if counts.min() < 2:
            raise MASCError("QDA needs at least two training rows in every class")
        self.scale_ = float(np.sqrt(X.var(0).mean())) or 1.0
        X = X / self.scale_
        self._attempts = [None]
        try:
            return QuadraticDiscriminantAnalysis().fit(X, y)
        except LinAlgError:
            pass
        for shrinkage in self.SHRINKAGES:
            self._attempts.append(shrinkage)
            try:
                fitted = QuadraticDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage).fit(X, y)
            except LinAlgError:
                continue
            self.notes_ = f"shrinkage={shrinkage:g}"
            return fitted
        raise MASCError("QDA: a class covariance stays singular even at shrinkage 1 (a class of "
                        "identical rows?)")

    def predict(self, X):
        return self.estimator.predict(_numpy(X, self.dtype) / self.scale_)

    def _fit_flops(self, X, y):
        D = X.shape[1]
        counts = np.unique(y, return_counts=True)[1]
        default = sum(2 * n * D + svd_flops(n, D) for n in counts)
        shrunk = sum(n * D + 2 * n * D * D + 2 * D * D + eigh_flops(D) for n in counts)
        return default + shrunk * (len(self._attempts) - 1)

    def predict_flops(self, M):
        D = self.n_features_in_
        ranks = [r.shape[1] for r in self.estimator.rotations_]
        return float(M * sum(D + 2 * D * r + 3 * r for r in ranks) + M * len(ranks))


PROBES = {"MASC": MASCProbe, "LogReg": LogisticRegressionProbe, "NCM": NearestClassMean,
          "kNN": KNearestNeighbours, "LDA": LDAProbe, "QDA": QDAProbe}
TORCH_PROBES = ("MASC", "LogReg", "NCM")  # these run on the chosen device


def make(name, device="cpu", threshold=THRESHOLD):
    """A fresh probe by name (MASC takes ``threshold``)."""
    if name not in PROBES:
        raise MASCError(f"unknown probe {name!r}; choose from {', '.join(PROBES)}")
    if name == "MASC":
        return MASCProbe(threshold, device=device)
    return PROBES[name](device=device) if name in TORCH_PROBES else PROBES[name]()


def evaluate(acts, probes, ids, labellings=LABELLINGS, log=print, settings=None):
    """Fit every probe on every layer (``acts``: :class:`Activations` or :class:`LayerReadout`)
    with each labelling of the training rows; score on the test rows. ``probes``: {name:
    zero-argument factory}; ``ids``: identifying columns of every row, ``settings``: what made
    it, its last columns. Returns a tidy DataFrame (one row per layer x labelling x probe)."""
    _warm_up(probes.values())
    rows = []
    for layer, X, T, model_test_acc in acts.layers():
        for labels_from in labellings:
            y = acts.corrupted if labels_from == "corrupted" else acts.true
            for name, factory in probes.items():
                result = _fit_and_score(factory(), X, y, T, acts.test_labels)
                row = {**ids, "probe": name, "labels_from": labels_from, "layer": layer,
                       "dim": X.shape[1], "n_train": len(X), "n_test": len(T),
                       "test_acc": result.pop("test_acc"), "model_test_acc": model_test_acc,
                       **result, **(settings or {})}
                rows.append(row)
                log(f"  {layer:>8} {labels_from:>9} {name:>6}: test {row['test_acc']:.4f} "
                    f"(fit {row['fit_seconds']:.2f} s, predict {row['predict_seconds']:.2f} s) "
                    f"{row['notes']}")
    return pd.DataFrame(rows)


def _warm_up(factories):
    """Fit each probe once on a tiny problem, untimed: a process's first fit pays one-time costs
    (torch's lazy initialisation: seconds) that would otherwise land on the first layer's time."""
    X, y = torch.randn(40, 4, generator=torch.Generator().manual_seed(0)), np.arange(40) % 4
    for factory in factories:
        factory().fit(X, y).predict(X)


def _fit_and_score(probe, X, y, T, t):
    """Accuracy, seconds and FLOPs of one probe; a probe that cannot be fitted (a MASCError)
    gives NaNs and the reason in ``notes``."""
    try:
        tic = time.perf_counter()
        probe.fit(X, y)
        sync("cuda")
        fit_seconds = time.perf_counter() - tic
        tic = time.perf_counter()
        pred = probe.predict(T)
        predict_seconds = time.perf_counter() - tic
    except MASCError as e:
        return dict.fromkeys(["test_acc", "fit_seconds", "predict_seconds", "fit_flops",
                              "predict_flops"], math.nan) | {"notes": f"failed: {e}"}
    return {"test_acc": accuracy(pred, t), "fit_seconds": round(fit_seconds, 6),
            "predict_seconds": round(predict_seconds, 6), "fit_flops": probe.fit_flops_,
            "predict_flops": probe.predict_flops(len(T)), "notes": probe.notes_}


@dataclass
class Activations:
    """Activations in memory: {layer: (n, D)} of the training rows and the test rows, their
    labels, and the network's own accuracy on those test rows."""

    train: dict
    test: dict
    corrupted: np.ndarray
    true: np.ndarray
    test_labels: np.ndarray
    model_test_acc: float

    def layers(self):
        """``(layer, training rows, test rows, the network's test accuracy)`` per layer."""
        for layer, X in self.train.items():
            yield layer, X, self.test[layer], self.model_test_acc


@dataclass
class LayerReadout:
    """A trained run's layers read out one at a time (:meth:`MASC.readout.Reader.layer_rows`,
    the bounded path of every read-out): ``layers()`` as :class:`Activations`' (CPU float32
    rows), with the labels of the trained-on rows and of the test rows."""

    reader: object
    train_images: torch.Tensor
    test_images: torch.Tensor
    corrupted: np.ndarray
    true: np.ndarray
    test_labels: np.ndarray

    def layers(self):
        for found in self.reader.layer_rows(self.train_images, [self.test_images]):
            yield (found.layer, found.rows.float().cpu(), found.image_sets[0].float().cpu(),
                   accuracy(found.network[0], self.test_labels))


def layer_activations(trained, readout, log=print):
    """The :class:`LayerReadout` of a :class:`~MASC.runs.TrainedRun`'s layers on its training
    rows and its test rows, read out with :class:`~MASC.readout.Settings` ``readout``."""
    reader = readout.reader(trained.net, trained.dataset)
    log(f"{trained.key}: reading the layers out ({reader.device})")
    trained_on, corrupted, true = trained.training()
    return LayerReadout(reader, trained_on.images, trained.test.images, corrupted, true,
                        trained.test.labels.numpy())
