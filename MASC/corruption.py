"""Label corruption exactly as the reference, and its saved form next to each run.

Rule (spec section 2): with a NumPy legacy RandomState seeded with 42, draw one uniform number per
training sample; every sample with ``u <= p`` gets a label drawn uniformly from *all* classes (it
may keep its true label). Masks for increasing p are nested. Test labels are never corrupted.
A private RandomState gives the same draws as the reference's global ``np.random.seed(42)``
without touching NumPy's global state.
"""
import os
from pathlib import Path

import numpy as np

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


def save_labels(path, corrupted, true):
    """Write a run's corrupted and true training labels (npz, atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, corrupted=np.asarray(corrupted), true=np.asarray(true))
    os.replace(tmp, path)


def load_labels(path):
    """(corrupted, true) training labels saved by :func:`save_labels`."""
    with np.load(path) as f:
        return f["corrupted"], f["true"]
