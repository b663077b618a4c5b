"""MASC at scale: fit_labellings (rows stored once, bit-identical to fit), the float32-checked
prediction (identical to float64), and a scaled-down run of benchmarks/bench_memory.py."""
import importlib.util
import math

import numpy as np
import pytest
import torch

from MASC import MinimumAngleSubspaceClassifier as MASC
from MASC import checked, masc
from MASC.errors import MASCError
from conftest import DATA, ROOT, blobs, requires_mnist, uneven

CHECKED = masc.CHECKED


def test_fit_labellings_is_bit_identical_to_fit_on_both_routes():
    X, y = uneven()
    other = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    fitted = masc.fit_labellings(X, {"corrupted": other, "original": y}, threshold=0.99,
                                 classes=range(4))
    assert list(fitted) == ["corrupted", "original"]
    for name, labels in (("corrupted", other), ("original", y)):
        shared, plain = fitted[name], MASC(0.99).fit(X, labels, classes=range(4))
        counts = np.bincount(labels.numpy())
        assert (counts < 40).any() and (counts >= 40).any()  # both routes are exercised
        assert list(shared.n_components_) == list(plain.n_components_)
        for a, b in zip(shared.components_, plain.components_):
            assert torch.equal(a, b)
        assert torch.equal(shared.predict(X), plain.predict(X))
        assert np.array_equal(shared.explained_variance_ratio_, plain.explained_variance_ratio_)


def test_fit_labellings_keeps_no_rows_and_refuses_partial_fit():
    X, y = uneven()
    est = masc.fit_labellings(X, {"true": y})["true"]
    held = [v for v in vars(est).values() if torch.is_tensor(v) and v.shape[0] == len(X)]
    store = est._store
    assert not held and not store.rows and not store.gram and store.shared is None
    with pytest.raises(MASCError, match="partial_fit cannot extend it"):
        est.partial_fit(X, y)
    assert torch.equal(est.fit(X, y).predict(X), MASC().fit(X, y).predict(X))  # fit starts over


def test_fit_labellings_checks_its_input():
    X, y = uneven()
    with pytest.raises(MASCError, match="labellings must be a dict"):
        masc.fit_labellings(X, [y])
    with pytest.raises(MASCError, match="has 177 samples but y has 176 labels"):
        masc.fit_labellings(X, {"a": y[:-1]})
    with pytest.raises(MASCError, match="class 7 has no training samples"):
        masc.fit_labellings(X, {"a": y}, classes=[0, 1, 2, 3, 7])
    bad = X.clone()
    bad[3, 3] = float("nan")
    with pytest.raises(MASCError, match="NaN"):
        masc.fit_labellings(bad, {"a": y})


def test_iter_labellings_fits_one_labelling_per_step():
    X, y = uneven()
    steps = masc.iter_labellings(X, {"a": y, "b": y.flip(0)})
    name, est = next(steps)
    assert name == "a" and est.n_components_.sum() > 0
    assert [n for n, _ in steps] == ["b"]


@pytest.mark.parametrize("n_per_class,dim,threshold", [(200, 30, 0.99), (40, 120, 0.99),
                                                       (50, 50, 0.5), (3, 64, 2)])
def test_checked_prediction_equals_float64(n_per_class, dim, threshold):
    X, y = blobs(n_per_class, dim)
    T, _ = blobs(60, dim, seed=1)
    exact = MASC(threshold).fit(X, y)
    fast = MASC(threshold, predict_dtype=CHECKED).fit(X, y)
    for data in (X, T, T.double(), T.numpy()):
        assert np.array_equal(np.asarray(fast.predict(data)), np.asarray(exact.predict(data)))
    assert torch.equal(fast.decision_function(T), exact.decision_function(T))  # stays float64


def test_checked_prediction_re_checks_what_float32_cannot_decide():
    # class 0 spans e1, class 1 spans e2: the second row is 2^-40 closer to e2, which float32
    # cannot see (it rounds the row to (1, 1), a tie that would go to class 0)
    clf = MASC(1, predict_dtype=CHECKED).fit(torch.eye(2, dtype=torch.float64), [0, 1])
    rows = torch.tensor([[1.0, 1.0], [1.0, 1.0 + 2.0 ** -40], [3.0, 1.0], [0.0, 0.0],
                         [1e-30, 0.0], [0.0, 1e30]], dtype=torch.float64)
    assert clf.predict(rows).tolist() == [0, 1, 0, 0, 0, 1] == MASC(1).fit(
        torch.eye(2, dtype=torch.float64), [0, 1]).predict(rows).tolist()
    assert clf._checked.rechecked == 5  # only (3, 1) is decided in float32


def test_near_ties_that_float32_gets_wrong_are_re_checked():
    # class 0 spans e1, class 1 spans (1, 1, 1)/sqrt(3); rows within 1e-9 of the tie surface
    rng = np.random.RandomState(0)
    b, c, delta = rng.randn(3, 4000)
    s = b + c
    a = (2 * s + np.sqrt(4 * s ** 2 + 8 * (s ** 2 + 3e-9 * delta))) / 4  # a^2 - (a+s)^2/3 = 1e-9 delta
    rows = torch.as_tensor(np.c_[a, b, c])
    X, y = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64), [0, 1]
    exact = MASC(1).fit(X, y).predict(rows)
    plain32 = MASC(1, predict_dtype=torch.float32).fit(X, y).predict(rows)
    assert (plain32 != exact).sum() > 100  # float32 alone gets many of them wrong
    assert torch.equal(MASC(1, predict_dtype=CHECKED).fit(X, y).predict(rows), exact)


def test_ties_go_to_the_lowest_class_when_checked():
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    clf = MASC(1, predict_dtype=CHECKED).fit(torch.cat([X, X]), torch.tensor([0, 1, 2, 3]))
    assert clf.predict(torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])).tolist() == [0, 1, 0]


def test_the_margin_bounds_the_float32_error():
    g = torch.Generator().manual_seed(3)
    X = torch.relu(torch.randn(600, 1500, generator=g) + 0.5)
    y = torch.arange(3).repeat_interleave(200)
    clf = MASC(predict_dtype=CHECKED).fit(X, y)
    clf.predict(X[:1])
    energy = (X @ clf._checked.W32.T).square_() @ clf._checked.member32
    cos2_32 = energy.double() / torch.linalg.vector_norm(X, dim=1).double().square()[:, None]
    error = (cos2_32 - clf.decision_function(X)).abs()
    assert (error <= clf._checked.margin / checked.SAFETY).all()
    assert (error > 0).any() and clf._checked.margin.max() < 0.1  # a real error, a usable margin


def proven_bound(k, D):
    """The bound on |float32 cos^2 - exact| + |float64 cos^2 - exact| for a class of k components
    in D dimensions, written out from MASC/checked.py's margins docstring (Higham's gamma_n):
    e = (2 eps sqrt(k) + k eps^2)(1 + gamma_(k+1)) + gamma_(k+1) + 2 gamma_(D+4) per precision,
    eps = gamma_D + 3u in float32 (inputs rounded) and gamma_D in float64."""
    total = 0.0
    for u, rounded_inputs in ((2.0 ** -24, True), (2.0 ** -53, False)):
        gamma = [n * u / (1 - n * u) for n in (D, k + 1, D + 4)]
        eps = gamma[0] + (3 * u if rounded_inputs else 0)
        total += (2 * eps * math.sqrt(k) + k * eps * eps) * (1 + gamma[1]) + gamma[1] + 2 * gamma[2]
    return total


@pytest.mark.parametrize("D", [2, 1500, 16384])
def test_the_margin_covers_the_proven_bound(D):
    ks = [1, 2, 40, 500]
    margin = checked.margins(ks, D, torch.device("cpu"))
    bound = torch.tensor([proven_bound(k, D) for k in ks], dtype=torch.float64)
    assert (margin >= bound).all()  # what the proof needs
    assert torch.allclose(margin, checked.SAFETY * bound, rtol=1e-12, atol=0)  # every term in it


def test_near_ties_inside_the_margin_are_re_checked_and_those_outside_are_not():
    """Class 0 spans e1, class 1 spans e2 (k = 1) in D = 1000; rows (1, b) whose exact cos^2 gap
    between the classes is a chosen share of the band 2 x bound (or 2 x SAFETY x bound) in which
    float32 cannot be trusted. The bound (2.4e-4) dwarfs these rows' actual float32 error."""
    D = 1000
    X = torch.zeros(2, D, dtype=torch.float64)
    X[0, 0] = X[1, 1] = 1
    fast = MASC(1, predict_dtype=CHECKED).fit(X, [0, 1])
    exact = MASC(1).fit(X, [0, 1])
    band = 2 * proven_bound(1, D)  # the bounds of both classes

    def near_ties(gap):
        """Rows (1, b, w, w, w, 0, ...) with w = 0 or 0.25 (weight off both subspaces): cos^2
        gap (1 - b^2) / (1 + b^2 + 3 w^2); then the same with the classes swapped."""
        rows = torch.zeros(4, D, dtype=torch.float64)
        for i, w in enumerate((0.0, 0.25)):
            rows[i, :5] = torch.tensor([1, math.sqrt((1 - gap * (1 + 3 * w * w)) / (1 + gap)),
                                        w, w, w])
        rows[2:] = rows[:2, [1, 0, *range(2, D)]]
        return rows

    for share, re_checked in ((0.95, True), (0.95 * checked.SAFETY, True),
                              (1.05 * checked.SAFETY, False)):
        rows = near_ties(share * band)
        assert torch.equal(fast.predict(rows), exact.predict(rows))
        assert torch.equal(exact.predict(rows), torch.tensor([0, 0, 1, 1]))
        assert fast._checked.rechecked == (4 if re_checked else 0), (share, fast._checked.rechecked)


def test_tf32_or_reduced_precision_falls_back_to_float64(monkeypatch):
    X, y = blobs(30, 20)
    clf = MASC(predict_dtype=CHECKED).fit(X, y)
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert torch.equal(clf.predict(X), MASC().fit(X, y).predict(X))
    assert clf._checked is None  # the float32 route was not taken


@requires_mnist
def test_checked_prediction_equals_float64_on_real_mnist_pixels():
    from MASC import data

    train, test = data.load("MNIST", DATA, True).first(3000), data.load("MNIST", DATA, False)
    X, T = train.images.flatten(1).float() / 255, test.images[:3000].flatten(1).float() / 255
    for threshold in (0.99, 0.5):
        exact = MASC(threshold).fit(X, train.labels)
        fast = MASC(threshold, predict_dtype=CHECKED).fit(X, train.labels)
        assert torch.equal(fast.predict(T), exact.predict(T))
        assert torch.equal(fast.predict(X), exact.predict(X))


@pytest.mark.slow  # two subprocesses, about 30 s
def test_bench_memory_small_is_exact_and_reports_its_peak(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "benchmarks" / "bench_memory.py")
    bench_memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_memory)

    rows = bench_memory.main(["--layers", "l3", "bf_last", "--rows", "1000", "--scale", "0.125",
                              "--check", "--csv", str(tmp_path / "memory.csv")])
    assert [r["layer"] for r in rows] == ["l3", "bf_last"]
    assert all(r["same_as_fit"] and r["peak_rss_mib"] > 0 for r in rows)
    import pandas as pd
    assert list(pd.read_csv(tmp_path / "memory.csv").layer) == ["l3", "bf_last"]
