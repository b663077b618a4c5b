import numpy as np
import pytest

from conftest import requires_fashion, requires_mnist
from MASC import data
from MASC.corruption import RunLabels, corrupt_labels, holdout_rows

# docs/protocol.md, 'Label corruption': (masked, unchanged MNIST, unchanged FashionMNIST) per p,
# N = 60,000
TABLE = {0.2: (11968, 49222, 49278), 0.4: (24011, 38464, 38280), 0.6: (35982, 27697, 27454),
         0.8: (48061, 16724, 16797), 1.0: (60000, 6011, 6041)}


def redrawn(n, p, num_classes=10, seed=42):
    """Which of n samples ``corrupt_labels`` redraws at p: those given a label outside the classes
    (-1) come back with a class only where they were redrawn, even when the new label equals the
    true one."""
    return corrupt_labels(np.full(n, -1), p, num_classes, seed) != -1


def masked(n, p, num_classes=10, seed=42):
    return int(redrawn(n, p, num_classes, seed).sum())


@pytest.mark.parametrize("p", sorted(TABLE))
def test_masked_counts_match_reference_for_any_labels(p):
    assert masked(60000, p) == TABLE[p][0]


@requires_mnist
@pytest.mark.parametrize("p", sorted(TABLE))
def test_mnist_unchanged_counts_match_reference(p, data_root):
    y = data.load("MNIST", data_root, train=True).labels.numpy()
    assert (corrupt_labels(y, p, 10) == y).sum() == TABLE[p][1]


@requires_fashion
@pytest.mark.parametrize("p", sorted(TABLE))
def test_fashion_unchanged_counts_match_reference(p, data_root):
    y = data.load("FashionMNIST", data_root, train=True).labels.numpy()
    assert (corrupt_labels(y, p, 10) == y).sum() == TABLE[p][2]


def test_cifar_sized_masks_match_reference():
    # CIFAR (N = 50,000) and TinyImageNet (N = 100,000) masked counts
    # (docs/protocol.md, 'Label corruption')
    for classes in (10, 100):
        assert [masked(50000, p, classes) for p in (0.2, 0.4, 0.6, 0.8)] == [10003, 20083, 30049, 40074]
    assert [masked(100000, p, 200) for p in (0.2, 0.4, 0.6, 0.8)] == [20014, 39985, 59995, 80095]


def test_masks_are_nested_and_edges():
    y = np.random.RandomState(1).randint(0, 10, 5000)
    changed_positions = []
    for p in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        mask = redrawn(len(y), p)
        changed_positions.append(mask)
        c = corrupt_labels(y, p, 10)
        assert np.array_equal(c[~mask], y[~mask])  # untouched outside the mask
        assert np.array_equal(c[mask], corrupt_labels(np.full(len(y), -1), p, 10)[mask])
        assert abs(mask.mean() - p) < 0.03  # a share p of the samples is redrawn
    for a, b in zip(changed_positions, changed_positions[1:]):
        assert not (a & ~b).any()  # nested
    assert np.array_equal(corrupt_labels(y, 0.0, 10), y)
    full = corrupt_labels(y, 1.0, 10)
    assert abs((full == y).mean() - 0.1) < 0.02  # uniform over all classes, including the true one
    assert set(np.unique(full)) == set(range(10))


def test_seed_argument_and_global_rng_untouched():
    y = np.zeros(1000, dtype=int)
    np.random.seed(7)
    before = np.random.rand()
    np.random.seed(7)
    corrupt_labels(y, 0.5, 10)
    assert np.random.rand() == before
    assert not np.array_equal(corrupt_labels(y, 0.5, 10, seed=1), corrupt_labels(y, 0.5, 10))
    with pytest.raises(ValueError):
        corrupt_labels(y, 1.5, 10)


def test_saved_labels_round_trip_and_hold_out(tmp_path):
    labels = RunLabels(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 4]), holdout_rows(4, 0.5))
    labels.save(tmp_path / "x" / "labels.npz")
    again = RunLabels.load(tmp_path / "x" / "labels.npz")
    assert all(np.array_equal(getattr(labels, f), getattr(again, f)) for f in ("corrupted", "true", "holdout"))
    assert len(again.holdout) == 2 and sorted([*again.holdout, *again.train_rows]) == [0, 1, 2, 3]
    assert np.array_equal(holdout_rows(1000, 0.1), holdout_rows(1000, 0.1))
    assert len(holdout_rows(1000, 0.0)) == 0
