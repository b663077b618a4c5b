"""MASC: the Minimum Angle Subspace Classifier, a scikit-learn estimator on torch tensors.

For each class c, MASC takes the *uncentred* principal subspace of that class's training vectors
(the reference's "+x and -x" augmentation makes ``np.cov`` uncentred: its eigenvectors are those of
X_c^T X_c), keeps the first k_c eigenvectors, and labels a vector x by the class whose subspace
makes the smallest angle with it: cos^2 theta_c(x) = ||V_c x||^2 / ||x||^2.

Exact semantics (docs/protocol.md, 'MASC'):

* eigen-decomposition in float64; eigenvalues sorted in descending order;
* threshold n < 1: k = #{j : r_j <= n} + 1 with r_j the cumulative share of *all* D eigenvalues;
  integer n >= 1: k = n (n = 1 is the "1 PC" ablation);
* prediction = argmin angle, ties to the lowest class index;
* :meth:`score` = accuracy rounded to 4 decimals, as the reference reports it.

Defined where the reference gives NaN or crashes:

* a zero vector makes 90 degrees with every subspace, so it is predicted as the first class;
* a class whose vectors are all zero has an empty subspace (k = 0, 90 degrees to everything);
* k never exceeds the rank of a class (only reachable with an integer threshold);
* a class listed in ``classes`` but without training samples raises :class:`MASCError`.

As a scikit-learn estimator: labels may be any integers or strings (``classes_`` holds them sorted;
whole-number float labels are read as integers, other floats are refused); X may be a tensor on any
device, a NumPy array, a list or a DataFrame; NaN or infinite features, 1-D or empty X, a wrong
number of features and X and y of different lengths raise :class:`MASCError` (a ``ValueError``)
saying so; predict, angles or decision_function before fit raise scikit-learn's
``NotFittedError`` (also a MASCError). Outputs follow the input: a tensor in, a tensor out (numbers
as labels) on the fitted device; anything else in, NumPy out.

Fitting streams: :meth:`partial_fit` keeps, per class, either its rows (while it has fewer rows
than dimensions; the subspace then comes from the N_c x N_c Gram matrix) or the D x D matrix
X_c^T X_c in float64 (:class:`~MASC.class_rows.ClassRows`). Both routes give the same subspace
and the same k. :meth:`MinimumAngleSubspaceClassifier.iter_labellings` fits several labellings of
the same rows from one stored copy (float32 stays float32), one class
at a time: each class block is cast to float64 only for its Gram and eigh step and freed after, so
k and the components are bit-identical to :meth:`fit`'s. X may also be a
:class:`~MASC.rowfile.RowFile` (rows in a temporary file, for layers too big for memory): fit,
:func:`fit_labellings` and predict then read one class block or batch at a time.

Prediction (``predict_dtype="float32-checked"``): projections in float32, then every row whose best
two classes are closer than a proven float32 error bound is classified again in float64 (see
:func:`MASC.checked.margins`): the predictions are those of float64, at float32 speed.
"""
import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_array, column_or_1d, validate_data

from .errors import MASCError
from .checked import CheckedPredictor, float32_matmul_is_ieee, safe_rows
from .class_rows import ClassRows
from .rowfile import RowFile

# fitted attributes computed by solve(); partial_fit drops them, the next access solves again
_SOLVED = ("classes_", "n_samples_per_class_", "components_", "n_components_",
           "explained_variance_ratio_")
THRESHOLD = 0.99  # the paper's share of each class's energy kept (every default threshold)
CHECKED = "float32-checked"  # predict_dtype: float32 projections, float64 re-check of near ties
FINITE_CHUNK = 1 << 24  # elements checked for NaN/inf at once (bounds the temporary mask)


class NotFittedMASCError(MASCError, NotFittedError):
    """Predicting before fit: both a :class:`MASCError` and scikit-learn's ``NotFittedError``."""


def _is_checked(dtype):
    return isinstance(dtype, str) and dtype == CHECKED


def _torch_dtype(dtype):
    """A floating torch dtype from a torch dtype, a NumPy dtype or a name ("float32");
    :data:`CHECKED` computes in float64 (its fast predict re-checks in float64)."""
    if _is_checked(dtype):
        return torch.float64
    found = dtype
    if isinstance(dtype, str):
        found = getattr(torch, dtype, None)
    elif not isinstance(dtype, torch.dtype):
        try:
            found = torch.from_numpy(np.empty(0, dtype=np.dtype(dtype))).dtype
        except TypeError:
            found = None
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise MASCError(f"predict_dtype must be a floating dtype such as 'float64' or "
                        f"torch.float32, or {CHECKED!r}, got {dtype!r}")
    return found


def _all_finite(X):
    """No NaN or inf in X, checked in chunks (a chunk whose sum is finite has none)."""
    step = max(1, FINITE_CHUNK // max(1, X.shape[1]))
    for i in range(0, len(X), step):
        chunk = X[i:i + step]
        if not (chunk.is_floating_point() or chunk.is_complex()):
            return True
        if not torch.isfinite(chunk.sum()) and not torch.isfinite(chunk).all():
            return False
    return True


def _as_labels(y, what="y"):
    """1-D labels as a NumPy array of int64, bool, str or bytes; whole-number floats become int64,
    anything else (1.5, NaN, mixed strings and numbers) is refused."""
    if y.dtype == object:
        values = y.tolist()
        if all(isinstance(v, str) for v in values):
            y = y.astype(str)
        elif all(isinstance(v, numbers.Integral) for v in values):
            y = y.astype(np.int64)
        elif all(isinstance(v, numbers.Real) for v in values):
            y = y.astype(np.float64)
        else:
            raise MASCError(f"Unknown label type: {what} mixes strings, numbers or other objects; "
                            f"use one type of class label")
    kind = y.dtype.kind
    if kind == "f":
        if not np.isfinite(y).all():
            raise MASCError(f"{what} contains NaN or infinite labels; every row needs a class "
                            f"label")
        fractional = y[y != np.round(y)]
        if len(fractional):
            raise MASCError(f"Unknown label type: continuous; class labels must be whole numbers "
                            f"or strings, but {what} holds {fractional[0].item()!r}")
        return y.astype(np.int64)
    if kind in "iu":
        return y.astype(np.int64, copy=False)
    if kind in "bUS":
        return y
    raise MASCError(f"Unknown label type: {what} has dtype {y.dtype}; class labels must be "
                    f"integers or strings")


def _sorted(labels, what):
    try:
        return sorted(labels)
    except TypeError:
        types = ", ".join(sorted({type(c).__name__ for c in labels}))
        raise MASCError(f"{what} mix label types ({types}); use one type of class label") from None


class MinimumAngleSubspaceClassifier(ClassifierMixin, BaseEstimator):
    """Minimum-angle subspace classifier (fit / partial_fit / predict / score).

    Parameters (stored unchanged; checked by fit)
    ----------
    threshold : float in (0, 1) for the share of energy to keep, or an integer >= 1 for a fixed
        number of components per class (default 0.99, the paper's).
    device : torch device for the fitted state; default: the device of the first input (CPU for
        anything but a tensor).
    predict_dtype : floating dtype of the projections in predict, a torch dtype or its name
        (default "float64", as the reference), or "float32-checked": predict projects in float32
        and re-checks near ties in float64, giving float64's predictions (angles and
        decision_function stay float64).
    batch_size : rows projected at once in predict.

    Fitted attributes: ``classes_`` (NumPy array of the sorted labels), ``n_features_in_``,
    ``feature_names_in_`` (only after a DataFrame with string column names),
    ``n_samples_per_class_``, ``components_`` (list of k_c x D float64 tensors, orthonormal rows),
    ``n_components_``, ``explained_variance_ratio_`` (share of the class's energy in its subspace).
    """

    def __init__(self, threshold=THRESHOLD, device=None, predict_dtype="float64", batch_size=4096):
        self.threshold = threshold
        self.device = device
        self.predict_dtype = predict_dtype
        self.batch_size = batch_size

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # scikit-learn's definition of a poor score: accuracy <= 0.83 on 2-D make_blobs. In two
        # dimensions the 0.99 subspace of a class is usually the whole plane: every row ties.
        tags.classifier_tags.poor_score = True
        return tags

    def __sklearn_is_fitted__(self):
        return self._has_rows()

    def __getattr__(self, name):
        # only reached when normal lookup fails: a fitted attribute not (yet) solved
        if name in _SOLVED:
            if self._has_rows():
                self.solve()
                return self.__dict__[name]
            raise self._not_fitted()
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _has_rows(self):
        """Whether fit or partial_fit has given this estimator rows (fitted, or to solve)."""
        store = self.__dict__.get("_store")
        return bool(store and store.count)

    def _not_fitted(self):
        return NotFittedMASCError(f"This {type(self).__name__} instance is not fitted yet: call "
                                  f"fit or partial_fit first")

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, classes=None):
        """Fit the per-class subspaces on (X, y); returns self.

        ``classes`` (optional) lists every class expected: a listed class without rows is an
        error, and so is a label not listed. X may be a :class:`~MASC.rowfile.RowFile` (rows on
        disk): each class block is read when its subspace is solved, and X is not kept."""
        self._reset()
        if isinstance(X, RowFile):
            self._check_params()
            return self._fit_shared(self._check_X(X, reset=True, fitting=True), y, classes)
        return self.partial_fit(X, y, classes=classes).solve()

    def partial_fit(self, X, y, classes=None):
        """Add a batch of training vectors; ``classes`` (on any call) lists every class expected.

        The fitted attributes appear on :meth:`solve` (or the first access or predict)."""
        self._check_params()
        if self.__dict__.get("_frozen"):
            raise MASCError("this estimator was fitted by fit_labellings from shared rows, which "
                            "it does not keep, so partial_fit cannot extend it; fit it again on "
                            "all the rows")
        if isinstance(X, RowFile):
            raise MASCError("partial_fit takes batches in memory; fit a RowFile with fit or "
                            "fit_labellings")
        first = not self._has_rows()
        if first:
            self._reset()
        try:
            X = self._check_X(X, reset=first, fitting=True)
            y = self._check_y(y, len(X))
            self._declare(classes)
        except Exception:
            if first:  # leave no half-fitted state (n_features_in_, feature names) behind
                self._reset()
            raise
        for c, rows in self._groups(y):
            self._store.add(c, X[rows], self.n_features_in_, self._device)
        self._solved = False
        for name in _SOLVED:
            self.__dict__.pop(name, None)
        return self

    @classmethod
    def iter_labellings(cls, X, labellings, classes=None, **params):
        """Yield ``(name, fitted estimator)`` for each labelling of the same rows X.

        ``labellings`` maps a name (e.g. "corrupted", "original") to labels for the rows of X;
        ``params`` are the estimators' parameters. X is checked and stored once (a float32
        tensor stays float32, on ``device``; a RowFile stays on disk); each estimator only
        indexes it, gathers one class block at a time in float64 for its Gram and eigh step and
        frees it, and does not keep X. The k and components are bit-identical to
        ``fit(X, y)``'s. Fitting happens as the generator advances, so a caller that drops each
        estimator before the next holds one labelling's subspaces at a time."""
        if not isinstance(labellings, dict):
            raise MASCError(f"labellings must be a dict of name -> labels, got "
                            f"{type(labellings).__name__}")
        checked = None  # what the first estimator's check of X set (it is freed, X is not)
        for name, y in labellings.items():
            est = cls(**params)
            est._check_params()
            est._reset()
            if checked is None:
                X = est._check_X(X, reset=True, fitting=True)
                checked = {attr: vars(est)[attr] for attr in
                           ("n_features_in_", "feature_names_in_", "_device") if attr in vars(est)}
            else:
                vars(est).update(checked)
            yield name, est._fit_shared(X, y, classes)
            del est

    def _declare(self, classes):
        """Record the classes expected (None: whichever labels come)."""
        if classes is not None:
            declared = _as_labels(np.asarray(classes).ravel(), "classes")
            self._expected = _sorted(set(declared.tolist()), "classes")

    def _groups(self, y):
        """``(label, boolean row mask on the fitted device)`` for each label present in y."""
        labels, inverse = np.unique(y, return_inverse=True)
        inverse = torch.as_tensor(inverse.ravel(), device=self._device)
        return [(c, inverse == i) for i, c in enumerate(labels.tolist())]

    def _fit_shared(self, X, y, classes=None):
        """Fit on rows ``X`` (checked, on the fitted device) that this estimator only indexes:
        each class's block is gathered when its subspace is solved, then freed; X is not kept."""
        y = self._check_y(y, len(X))
        self._declare(classes)
        self._store = ClassRows.shared_by(X, self._groups(y))
        try:
            self.solve()
        finally:
            self._store.shared, self._frozen = None, True
        return self

    def _reset(self):
        self._store, self._frozen = ClassRows(), False
        self._expected = None
        self._solved = False
        for name in (*_SOLVED, "n_features_in_", "feature_names_in_"):
            self.__dict__.pop(name, None)

    def _check_params(self):
        n = self.threshold
        if (isinstance(n, bool) or not isinstance(n, numbers.Real)
                or not (0 < n < 1 or (n >= 1 and float(n).is_integer()))):
            raise MASCError(f"threshold must be a share in (0, 1) or a whole number of components "
                            f">= 1, got {n!r}")
        b = self.batch_size
        if isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 1:
            raise MASCError(f"batch_size must be a whole number >= 1, got {b!r}")
        _torch_dtype(self.predict_dtype)
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError, ValueError):
                raise MASCError(f"device must be a torch device such as 'cpu' or 'cuda:0', got "
                                f"{self.device!r}") from None

    def _check_X(self, X, reset=False, fitting=False):
        """X as a 2-D tensor on the fitted device (set here when ``reset``), checked; a RowFile
        (rows on disk, checked finite as they were written) is returned as it is, read later in
        batches."""
        on_disk = isinstance(X, RowFile)
        if on_disk:
            X.check_complete()
        else:
            X = self._as_tensor(X, reset)
        if fitting and reset and len(X) == 0:  # a later partial_fit may bring an empty batch
            raise MASCError(f"X is empty: found array with 0 sample(s) (shape={tuple(X.shape)}) "
                            f"while a minimum of 1 is required.")
        if not reset and X.shape[1] != self.n_features_in_:
            raise MASCError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                            f"{self.n_features_in_} features as input")
        if X.shape[1] == 0:
            raise MASCError(f"X has 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
                            f"required.")
        if reset:
            self._device = X.device if self.device is None else torch.device(self.device)
            self.n_features_in_ = X.shape[1]
        if on_disk:
            return X
        X = X.to(self._device)
        if not _all_finite(X):
            raise MASCError("X contains NaN or infinite values; MASC needs finite features "
                            "(impute or drop those rows)")
        if fitting and not X.is_floating_point():
            X = X.double()
        return X

    def _as_tensor(self, X, reset):
        """Any array-like X as a real 2-D tensor; a DataFrame's column names are recorded (reset)
        or compared."""
        given = X
        if not torch.is_tensor(X):
            try:  # DataFrames, lists, object arrays; sparse input is a TypeError from here
                X = check_array(X, dtype="numeric", ensure_all_finite=False, ensure_2d=False,
                                allow_nd=True, ensure_min_samples=0, ensure_min_features=0,
                                input_name="X")
            except ValueError as e:
                raise MASCError(f"X is not a numeric array: {str(e).splitlines()[0]}") from e
            if not X.flags.writeable:  # torch warns about tensors on read-only memory
                X = X.copy()
            X = torch.as_tensor(X)
        if X.dim() != 2:
            raise MASCError(f"X must be 2-D, of shape (n_samples, n_features), got shape "
                            f"{tuple(X.shape)}: Reshape your data, e.g. X.reshape(-1, 1) for a "
                            f"single feature or X.reshape(1, -1) for a single sample")
        try:  # a DataFrame's column names: recorded by fit, compared by the other methods
            validate_data(self, given, reset=reset, skip_check_array=True, ensure_2d=False)
        except ValueError as e:
            raise MASCError(str(e)) from e
        if X.is_complex():
            raise MASCError("Complex data not supported: MASC needs real-valued X")
        return X

    def _check_y(self, y, n):
        if y is None:
            raise MASCError(f"{type(self).__name__} requires y to be passed, but the target y is "
                            f"None")
        y = y.detach().cpu().numpy() if torch.is_tensor(y) else np.asarray(y)
        try:
            y = column_or_1d(y, warn=True)  # a column vector warns, as in scikit-learn
        except ValueError:
            raise MASCError(f"y must be 1-D, one label per row of X, got shape {y.shape}") from None
        if len(y) != n:
            raise MASCError(f"X has {n} samples but y has {len(y)} labels; they must have the same "
                            f"length")
        return _as_labels(y)

    # ------------------------------------------------------------------ solving
    def solve(self):
        """Compute the subspaces now (predict does it on demand); returns self."""
        if self.__dict__.get("_solved"):
            return self
        if not self._has_rows():
            raise self._not_fitted()
        classes = self._expected or _sorted(self._store.count,
                                            "the labels of the partial_fit calls")
        empty = [c for c in classes if self._store.count.get(c, 0) == 0]
        if empty:
            raise MASCError(f"class {empty[0]!r} has no training samples; MASC needs at least one "
                            f"vector per class (drop the class from `classes` or add samples)")
        declared = set(classes)
        extra = [c for c in _sorted(self._store.count, "the labels") if c not in declared]
        if extra:
            raise MASCError(f"label {extra[0]!r} is not among the declared classes {classes}")
        parts, ratios = zip(*[self._subspace(c) for c in classes])
        parts = list(parts)
        self._dtype = _torch_dtype(self.predict_dtype)
        self.classes_ = np.asarray(classes)
        self._classes_t = (torch.tensor(classes, device=self._device)
                           if self.classes_.dtype.kind in "iub" else None)
        self.n_samples_per_class_ = np.array([self._store.count[c] for c in classes])
        self.n_components_ = np.array([len(V) for V in parts])
        self.explained_variance_ratio_ = np.array(ratios)
        # one buffer holds every class's rows (each class's own copy freed as it is moved in);
        # components_ are views of it, or of the float64 buffer when predicting in another dtype
        W = torch.empty(int(self.n_components_.sum()), self.n_features_in_, dtype=torch.float64,
                        device=self._device)
        for i, start in enumerate(np.cumsum(self.n_components_) - self.n_components_):
            W[start:start + len(parts[i])] = parts[i]
            parts[i] = None
        self.components_ = list(W.split(self.n_components_.tolist()))
        self._W, self._checked = W.to(self._dtype), None
        self._owner = torch.repeat_interleave(
            torch.arange(len(classes), device=self._device),
            torch.as_tensor(self.n_components_, device=self._device))
        self._solved = True
        return self

    def _subspace(self, c):
        """(k x D orthonormal rows, captured energy share) of class c. Temporaries (the block,
        its Gram matrix, the eigenvectors) are freed as soon as they are used."""
        gram, R = self._store.gram.get(c), None
        if gram is None:
            R = self._store.block(c, self._device)
            if len(R) >= self.n_features_in_:  # shared rows: X_c^T X_c as fit forms it
                gram, R = R.T @ R, None
        if gram is not None:
            evals, evecs = torch.linalg.eigh(gram)
            del gram
            evals, evecs = evals.flip(0), evecs.flip(1)
        else:
            G = R @ R.T
            R = None  # gathered again after eigh: the block and eigh's workspace (2 G) never meet
            evals, U = torch.linalg.eigh(G)
            del G
            evals, U = evals.flip(0), U.flip(1)
            evecs = None
        total = evals.sum()
        top = evals[0].clamp(min=0)
        rank = int((evals > top * max(self.n_features_in_, len(evals)) * 2.3e-16).sum())
        if total <= 0 or rank == 0:
            return torch.zeros(0, self.n_features_in_, dtype=torch.float64, device=self._device), 0.0
        if self.threshold < 1:
            ratios = torch.cumsum(evals, 0) / total
            k = int((ratios <= self.threshold).sum()) + 1
        else:
            k = int(self.threshold)
        k = min(k, rank)
        if evecs is None:  # Gram route: right singular vectors of R from its left ones
            U = U[:, :k].contiguous()
            R = self._store.block(c, self._device)
            V = (R.T @ U).div_(evals[:k].sqrt())
            del R, U
        else:
            V = evecs[:, :k]
            del evecs
        V.div_(V.norm(dim=0, keepdim=True))  # in place: one D x k buffer, then its transpose
        return V.T.contiguous(), float(evals[:k].sum() / total)

    # ------------------------------------------------------------------ predicting
    def _energy(self, xb, W):
        """Squared projections of the rows xb on each class subspace (rows of W), (n, n_classes)."""
        proj = xb @ W.T
        energy = torch.zeros(len(xb), len(self.classes_), dtype=W.dtype, device=self._device)
        return energy.index_add_(1, self._owner, proj.square_())

    def _cos2_batch(self, xb):
        """cos^2 of rows xb (at most a batch) in ``self._dtype``: the reference computation."""
        xb = safe_rows(xb.to(self._dtype))
        norm = xb.square().sum(1, keepdim=True)
        return torch.where(norm > 0, self._energy(xb, self._W) / norm, 0.0).clamp(0, 1)

    def _cos2(self, X):
        """cos^2 of the angle between each row of X and each class subspace, (n, n_classes)."""
        self.solve()
        X = self._check_X(X)
        out = torch.empty(len(X), len(self.classes_), dtype=self._dtype, device=self._device)
        for rows, xb in self._batches(X):
            out[rows] = self._cos2_batch(xb)
        return out

    def _batches(self, X):
        """``(row slice, rows on the fitted device)`` over checked X, ``batch_size`` at a time."""
        for start in range(0, len(X), self.batch_size):
            xb = X[start:start + self.batch_size].to(self._device)
            yield slice(start, start + len(xb)), xb

    def _best(self, X):
        """Index of the class of smallest angle for each row of X (ties to the lowest), batch by
        batch: memory holds one batch's angles, not all of X's."""
        self.solve()
        X = self._check_X(X)
        checked = (_is_checked(self.predict_dtype) and self._dtype == torch.float64
                   and float32_matmul_is_ieee(self._device))  # (solved under another dtype)
        if checked and self._checked is None:
            self._checked = CheckedPredictor(self._W, self._owner, self.n_components_,
                                             len(self.classes_), self.n_features_in_,
                                             self._device)
        if checked:
            self._checked.rechecked = 0
        best = torch.empty(len(X), dtype=torch.long, device=self._device)
        for rows, xb in self._batches(X):
            best[rows] = (self._checked.best(xb, self._cos2_batch) if checked
                          else self._cos2_batch(xb).argmax(1))
        return best

    @staticmethod
    def _like(result, X):
        """A tensor for tensor (or RowFile) input, NumPy for anything else."""
        return result if _tensor_in(X) else result.cpu().numpy()

    def decision_function(self, X):
        """cos^2 of the angle between each row of X and each class subspace, (n, n_classes).

        With two classes, scikit-learn's shape (n,): cos^2 theta_1 - cos^2 theta_0, positive
        where ``classes_[1]`` is predicted."""
        cos2 = self._cos2(X)
        if cos2.shape[1] == 2:
            cos2 = cos2[:, 1] - cos2[:, 0]
        return self._like(cos2, X)

    def angles(self, X, degrees=True):
        """Angle between each row of X and each class subspace, (n, n_classes), in degrees by
        default."""
        theta = torch.arccos(self._cos2(X).sqrt())
        return self._like(torch.rad2deg(theta) if degrees else theta, X)

    def predict(self, X):
        """The class of smallest angle for each row of X (ties go to the lowest class)."""
        best = self._best(X)
        if _tensor_in(X) and self._classes_t is not None:
            return self._classes_t[best]
        return self.classes_[best.cpu().numpy()]

    def score(self, X, y):
        """Accuracy on (X, y), rounded to 4 decimals as the reference reports it. y is checked as
        scikit-learn's ``accuracy_score`` checks it: one label per row, of the fitted labels'
        type (strings against numbers is an error, not a score of 0)."""
        y = self._check_y(y, len(X))
        if (y.dtype.kind in "US") != (self.classes_.dtype.kind in "US"):
            raise MASCError(f"Mix of label input types (string and number): y holds "
                            f"{y.dtype.kind in 'US' and 'strings' or 'numbers'} but the classes "
                            f"{self.classes_.tolist()[:5]} are not")
        return accuracy(self.predict(X), y)


def _tensor_in(X):
    return torch.is_tensor(X) or isinstance(X, RowFile)


def _numpy(a):
    return a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)


def accuracy(pred, y):
    """Share of equal entries, rounded to 4 decimals (the reference's ``round(acc, 4)``)."""
    pred, y = _numpy(pred), _numpy(y)
    return round(float(np.mean(pred == y)), 4) if len(y) else math.nan


def iter_labellings(X, labellings, threshold=THRESHOLD, classes=None, device=None, **params):
    """:meth:`MinimumAngleSubspaceClassifier.iter_labellings` with the estimator's threshold and
    device."""
    return MinimumAngleSubspaceClassifier.iter_labellings(
        X, labellings, classes, threshold=threshold, device=device, **params)


def fit_labellings(X, labellings, threshold=THRESHOLD, classes=None, device=None, **params):
    """``{name: fitted MinimumAngleSubspaceClassifier}`` for each labelling of the same rows X,
    from one stored copy of X (:meth:`MinimumAngleSubspaceClassifier.iter_labellings`)."""
    return dict(iter_labellings(X, labellings, threshold, classes, device, **params))
