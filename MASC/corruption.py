"""Label corruption exactly as the reference, and its saved form next to each run.

Rule (spec section 2): with a NumPy legacy RandomState seeded with 42, draw one uniform number per
training sample; every sample with ``u <= p`` gets a label drawn uniformly from *all* classes (it
may keep its true label). Masks for increasing p are nested. Test labels are never corrupted.
A private RandomState gives the same draws as the reference's global ``np.random.seed(42)``
without touching NumPy's global state.
"""
from dataclasses import dataclass, field

import numpy as np

from .results import atomic

REFERENCE_SEED = 42
# The two labellings of a training set, as named in every result: the corrupted labels and the
# original (true) ones, as the reference calls them. Never "true": pandas reads a column of "true"
# back as booleans.
LABELLINGS = ("corrupted", "original")


def corrupt_labels(labels, p, num_classes, seed=REFERENCE_SEED):
    """Return a corrupted copy of ``labels`` (the reference rule; seed 42 reproduces it)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"corruption degree must be in [0, 1], got {p}")
    labels = np.array(labels, dtype=np.int64, copy=True)
    rng = np.random.RandomState(seed)
    mask = rng.rand(len(labels)) <= p
    labels[mask] = rng.choice(num_classes, int(mask.sum()))
    return labels


@dataclass
class RunLabels:
    """The labels of a run's training rows (the first n of the training set): corrupted and true,
    and the rows held out of training (a validation set), as sorted indices."""

    corrupted: np.ndarray
    true: np.ndarray
    holdout: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def train_rows(self):
        """The rows the model was trained on."""
        return np.setdiff1d(np.arange(len(self.true)), self.holdout)

    def training(self, split):
        """(images of the trained-on rows of ``split``, their corrupted labels, their true ones)."""
        rows = self.train_rows
        return split.take(rows), self.corrupted[rows], self.true[rows]

    def save(self, path):
        """Write them next to a checkpoint (npz, atomically)."""
        with atomic(path, ".tmp.npz") as tmp:  # np.savez appends .npz to other names
            np.savez(tmp, corrupted=self.corrupted, true=self.true, holdout=self.holdout)

    @classmethod
    def load(cls, path):
        with np.load(path) as f:
            return cls(f["corrupted"], f["true"], f["holdout"] if "holdout" in f else
                       np.zeros(0, dtype=np.int64))


def holdout_rows(n, fraction, seed=REFERENCE_SEED):
    """Sorted indices of a seeded share ``fraction`` of range(n), to keep out of training."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the hold-out share must be in [0, 1), got {fraction}")
    return np.sort(np.random.RandomState(seed).permutation(n)[:round(fraction * n)])
