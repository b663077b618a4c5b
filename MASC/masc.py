"""MASC: the Minimum Angle Subspace Classifier, as a scikit-learn style estimator on torch tensors.

For each class c, MASC takes the *uncentred* principal subspace of that class's training vectors
(the reference's "+x and -x" augmentation makes ``np.cov`` uncentred: its eigenvectors are those of
X_c^T X_c), keeps the first k_c eigenvectors, and labels a vector x by the class whose subspace
makes the smallest angle with it: cos^2 theta_c(x) = ||V_c x||^2 / ||x||^2.

Exact semantics (spec section 6.1):

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

Fitting streams: :meth:`partial_fit` keeps, per class, either its rows (while it has fewer rows
than dimensions; the subspace then comes from the N_c x N_c Gram matrix) or the D x D matrix
X_c^T X_c in float64. Both routes give the same subspace and the same k.
"""
import math

import numpy as np
import torch

from .errors import MASCError


def _as_tensor(x, device, dtype=None):
    t = torch.as_tensor(x)
    return t.to(device=device, dtype=dtype or t.dtype)


class MinimumAngleSubspaceClassifier:
    """Minimum-angle subspace classifier (fit / partial_fit / predict / score).

    Parameters
    ----------
    threshold : float in (0, 1) for the share of energy to keep, or an integer >= 1 for a fixed
        number of components per class (default 0.99, the paper's).
    device : torch device for the fitted state; default: the device of the first input.
    predict_dtype : dtype of the projections in predict (default float64, as the reference).
    batch_size : rows projected at once in predict.

    Fitted attributes: ``classes_``, ``n_features_in_``, ``n_samples_per_class_``,
    ``components_`` (list of k_c x D float64 tensors, orthonormal rows), ``n_components_``,
    ``explained_variance_ratio_`` (share of the class's energy in its subspace).
    """

    def __init__(self, threshold=0.99, device=None, predict_dtype=torch.float64, batch_size=4096):
        self.threshold = threshold
        self.device = device
        self.predict_dtype = predict_dtype
        self.batch_size = batch_size

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, classes=None):
        """Fit the per-class subspaces on (X, y); returns self."""
        self._reset()
        return self.partial_fit(X, y, classes=classes).solve()

    def partial_fit(self, X, y, classes=None):
        """Add a batch of training vectors; ``classes`` (on any call) lists every class expected.

        The fitted attributes appear on :meth:`solve` (or the first predict)."""
        if not hasattr(self, "_rows"):
            self._reset()
        self._check_threshold()
        X, y = self._validate(X, y)
        if classes is not None:
            self._expected = sorted(int(c) for c in np.asarray(classes).ravel())
        for c in torch.unique(y).tolist():
            self._accumulate(c, X[y == c])
        self._solved = False
        return self

    def _reset(self):
        self._rows, self._gram, self._count = {}, {}, {}
        self._expected = None
        self._solved = False
        self.n_features_in_ = None

    def _check_threshold(self):
        n = self.threshold
        if not (0 < n < 1 or (n >= 1 and float(n).is_integer())):
            raise MASCError(f"threshold must be a share in (0, 1) or a whole number of components "
                            f">= 1, got {n}")

    def _validate(self, X, y):
        device = self.device if self.device is not None else getattr(X, "device", "cpu")
        if self.n_features_in_ is not None:
            device = self._device
        X = _as_tensor(X, device)
        if not X.is_floating_point():
            X = X.double()
        y = _as_tensor(y, device, torch.long)
        if X.dim() != 2 or y.dim() != 1 or len(X) != len(y):
            raise MASCError(f"MASC needs X of shape (n_samples, n_features) and y of shape "
                            f"(n_samples,), got {tuple(X.shape)} and {tuple(y.shape)}")
        if not torch.isfinite(X).all():
            raise MASCError("MASC input contains NaN or infinite values")
        if self.n_features_in_ is None:
            self.n_features_in_, self._device = X.shape[1], X.device
        elif X.shape[1] != self.n_features_in_:
            raise MASCError(f"MASC was fitted on {self.n_features_in_} features, got {X.shape[1]}")
        return X, y

    def _accumulate(self, c, Xc):
        """Keep rows while a class has fewer rows than dimensions, else accumulate X^T X (float64)."""
        D = self.n_features_in_
        self._count[c] = self._count.get(c, 0) + len(Xc)
        if c not in self._gram and self._count[c] < D:
            self._rows.setdefault(c, []).append(Xc)
            return
        if c not in self._gram:
            self._gram[c] = torch.zeros(D, D, dtype=torch.float64, device=self._device)
            for rows in self._rows.pop(c, []):
                self._gram[c] += rows.double().T @ rows.double()
        Xc = Xc.double()
        self._gram[c] += Xc.T @ Xc

    # ------------------------------------------------------------------ solving
    def solve(self):
        """Compute the subspaces now (predict does it on demand); returns self."""
        if getattr(self, "_solved", False):
            return self
        if not getattr(self, "_count", None):
            raise MASCError("MASC is not fitted yet: call fit or partial_fit first")
        classes = self._expected or sorted(self._count)
        empty = [c for c in classes if self._count.get(c, 0) == 0]
        if empty:
            raise MASCError(f"class {empty[0]} has no training samples; MASC needs at least one "
                            f"vector per class (drop the class from `classes` or add samples)")
        extra = sorted(set(self._count) - set(classes))
        if extra:
            raise MASCError(f"label {extra[0]} is not among the declared classes {classes}")
        fitted = {"classes_": torch.tensor(classes, device=self._device),
                  "n_samples_per_class_": np.array([self._count[c] for c in classes]),
                  "components_": [], "explained_variance_ratio_": []}
        for c in classes:
            V, ratio = self._subspace(c)
            fitted["components_"].append(V)
            fitted["explained_variance_ratio_"].append(ratio)
        fitted["n_components_"] = np.array([len(V) for V in fitted["components_"]])
        fitted["explained_variance_ratio_"] = np.array(fitted["explained_variance_ratio_"])
        self._fitted = fitted
        self._W = torch.cat(fitted["components_"]).to(self.predict_dtype)
        self._owner = torch.repeat_interleave(
            torch.arange(len(classes), device=self._device),
            torch.as_tensor(fitted["n_components_"], device=self._device))
        self._solved = True
        return self

    def _subspace(self, c):
        """(k x D orthonormal rows, captured energy share) of class c."""
        if c in self._gram:
            evals, evecs = torch.linalg.eigh(self._gram[c])
            evals, evecs = evals.flip(0), evecs.flip(1)
        else:
            R = torch.cat(self._rows[c]).double()
            evals, U = torch.linalg.eigh(R @ R.T)
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
            V = (R.T @ U[:, :k]) / evals[:k].sqrt()
        else:
            V = evecs[:, :k]
        V = V.T / V.norm(dim=0, keepdim=True).T
        return V.contiguous(), float(evals[:k].sum() / total)

    # fitted attributes, solved on first access after new data
    classes_ = property(lambda self: self.solve()._fitted["classes_"])
    components_ = property(lambda self: self.solve()._fitted["components_"])
    n_components_ = property(lambda self: self.solve()._fitted["n_components_"])
    n_samples_per_class_ = property(lambda self: self.solve()._fitted["n_samples_per_class_"])
    explained_variance_ratio_ = property(
        lambda self: self.solve()._fitted["explained_variance_ratio_"])

    # ------------------------------------------------------------------ predicting
    def decision_function(self, X):
        """cos^2 of the angle between each row of X and each class subspace, (n, n_classes)."""
        self.solve()
        X = self._input(X)
        out = torch.empty(len(X), len(self.classes_), dtype=self.predict_dtype, device=self._device)
        for start in range(0, len(X), self.batch_size):
            xb = X[start:start + self.batch_size].to(self.predict_dtype)
            energy = torch.zeros(len(xb), len(self.classes_), dtype=self.predict_dtype,
                                 device=self._device)
            energy.index_add_(1, self._owner, (xb @ self._W.T).square())
            norm = xb.square().sum(1, keepdim=True)
            out[start:start + len(xb)] = torch.where(norm > 0, energy / norm, 0.0).clamp(0, 1)
        return out

    def angles(self, X, degrees=True):
        """Angle between each row of X and each class subspace (degrees by default)."""
        theta = torch.arccos(self.decision_function(X).sqrt())
        return torch.rad2deg(theta) if degrees else theta

    def predict(self, X):
        """The class of smallest angle for each row of X (ties go to the lowest class)."""
        best = self.decision_function(X).argmax(1)
        pred = self.classes_[best]
        return pred.cpu().numpy() if isinstance(X, np.ndarray) else pred

    def score(self, X, y):
        """Accuracy on (X, y), rounded to 4 decimals as the reference reports it."""
        return accuracy(self.predict(X), y)

    def _input(self, X):
        X = _as_tensor(X, self._device)
        if X.dim() != 2 or X.shape[1] != self.n_features_in_:
            raise MASCError(f"MASC expects inputs of shape (n, {self.n_features_in_}), got "
                            f"{tuple(X.shape)}")
        return X

    def __repr__(self):
        return f"MinimumAngleSubspaceClassifier(threshold={self.threshold})"


def accuracy(pred, y):
    """Share of equal entries, rounded to 4 decimals (the reference's ``round(acc, 4)``)."""
    pred, y = torch.as_tensor(pred).cpu(), torch.as_tensor(y).cpu()
    return round(float((pred == y).double().mean()), 4) if len(y) else math.nan
