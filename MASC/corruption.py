"""Label corruption exactly as the reference, and its saved form next to each run.

Rule (docs/protocol.md, 'Label corruption'): with a NumPy legacy RandomState seeded with 42,
draw one uniform number per
training sample; every sample with ``u <= p`` gets a label drawn uniformly from *all* classes (it
may keep its true label). Masks for increasing p are nested. Test labels are never corrupted.
A private RandomState gives the same draws as the reference's global ``np.random.seed(42)``
without touching NumPy's global state.
"""
from dataclasses import dataclass, field

import numpy as np

from .errors import MASCError
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
    the rows held out of training (a validation set), as sorted indices, and the corruption
    degree and seed that made them (None where unknown: files of older versions)."""

    corrupted: np.ndarray
    true: np.ndarray
    holdout: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    corrupt: float = None
    label_seed: int = None

    @classmethod
    def of_run(cls, true_labels, p, num_classes, label_seed=REFERENCE_SEED, subset=None,
               holdout=0.0):
        """The labels of a run trained at degree p on the first ``subset`` rows of a training
        set whose true labels are ``true_labels``, with a ``holdout`` share kept out."""
        true = np.asarray(true_labels)
        n = subset or len(true)
        return cls(corrupt_labels(true, p, num_classes, label_seed)[:n], true[:n],
                   holdout_rows(n, holdout), float(p), int(label_seed))

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
        known = {} if self.corrupt is None else {"corrupt": self.corrupt,
                                                  "label_seed": self.label_seed}
        with atomic(path, ".tmp.npz") as tmp:  # np.savez appends .npz to other names
            np.savez(tmp, corrupted=self.corrupted, true=self.true, holdout=self.holdout, **known)

    @classmethod
    def load(cls, path):
        """Read them back; an unreadable file is a one-line error naming it."""
        try:
            with np.load(path) as f:
                return cls(f["corrupted"], f["true"],
                           f["holdout"] if "holdout" in f else np.zeros(0, dtype=np.int64),
                           float(f["corrupt"]) if "corrupt" in f else None,
                           int(f["label_seed"]) if "label_seed" in f else None)
        except Exception as e:  # truncated zip, not an npz, missing arrays
            raise MASCError(f"{path} is unreadable ({type(e).__name__}); delete it and run "
                            f"pytorch_training.py again with the run's settings (it rewrites "
                            f"the labels without retraining a finished run)") from None


def holdout_rows(n, fraction, seed=REFERENCE_SEED):
    """Sorted indices of a seeded share ``fraction`` of range(n), to keep out of training."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the hold-out share must be in [0, 1), got {fraction}")
    return np.sort(np.random.RandomState(seed).permutation(n)[:round(fraction * n)])
