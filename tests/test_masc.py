"""MASC against a deliberately naive implementation of the reference steps (MASC/naive.py)."""
import numpy as np
import pytest
import torch

from MASC import MinimumAngleSubspaceClassifier as MASC
from MASC.errors import MASCError
from conftest import DATA, blobs
from MASC import models
from MASC.naive import naive_angles, naive_fit, naive_predict


@pytest.mark.parametrize("n_per_class,dim", [(200, 30), (40, 120), (50, 50), (3, 64)])
def test_same_k_and_predictions_as_naive(n_per_class, dim):
    X, y = blobs(n_per_class, dim)
    T, _ = blobs(60, dim, seed=1)
    subspaces = naive_fit(X, y, 4)
    ours = MASC(0.99).fit(X, y)
    assert list(ours.n_components_) == [len(V) for V in subspaces]
    assert torch.equal(ours.predict(T), naive_predict(subspaces, T))
    assert torch.allclose(ours.angles(T).T, naive_angles(subspaces, T), atol=1e-6)
    for V, ref in zip(ours.components_, subspaces):  # same subspaces: equal projectors
        assert torch.allclose(V.T @ V, ref.T @ ref, atol=1e-8)


@pytest.mark.parametrize("threshold", [0.25, 0.5, 0.75, 1, 1.0, 3])
def test_thresholds_and_whole_numbers_match_naive(threshold):
    X, y = blobs(30, 40)
    subspaces = naive_fit(X, y, 4, threshold)
    ours = MASC(threshold).fit(X, y)
    assert list(ours.n_components_) == [len(V) for V in subspaces]
    assert torch.equal(ours.predict(X), naive_predict(subspaces, X))


def test_gram_route_equals_covariance_route():
    X, y = blobs(90, 100, classes=3)  # fewer rows than dimensions: Gram route
    gram = MASC().fit(X, y)
    cov = MASC()
    cov._reset()
    cov.partial_fit(X, y)
    for c in range(3):  # force the D x D route for every class
        rows = torch.cat(cov._store.rows.pop(c)).double()
        cov._store.gram[c] = rows.T @ rows
    cov.solve()
    assert list(gram.n_components_) == list(cov.n_components_)
    for a, b in zip(gram.components_, cov.components_):
        assert torch.allclose(a.T @ a, b.T @ b, atol=1e-8)


def test_partial_fit_in_batches_equals_fit_and_switches_route():
    X, y = blobs(150, 60)
    whole = MASC().fit(X, y)
    parts = MASC()
    for start in range(0, len(X), 37):  # classes cross the rows -> X^T X switch mid-stream
        parts.partial_fit(X[start:start + 37], y[start:start + 37])
    assert list(whole.n_components_) == list(parts.n_components_)
    assert torch.equal(whole.predict(X), parts.predict(X))
    assert set(parts._store.gram) == {0, 1, 2, 3}


def test_zero_vector_is_90_degrees_to_every_class_and_goes_to_the_first():
    X, y = blobs(20, 10)
    clf = MASC().fit(X, y)
    Z = torch.zeros(2, 10)
    assert torch.allclose(clf.angles(Z), torch.full((2, 4), 90.0, dtype=torch.float64))
    assert clf.predict(Z).tolist() == [0, 0]
    assert not torch.isnan(clf.decision_function(torch.cat([Z, X]))).any()


def test_empty_class_raises_a_clear_error():
    X, y = blobs(10, 5, classes=3)
    with pytest.raises(MASCError, match="class 3 has no training samples"):
        MASC().fit(X, y, classes=range(4)).predict(X)


def test_rank_deficient_and_all_zero_classes():
    X, y = blobs(30, 20, rank=2)  # every class spans at most 3 dimensions (2 + its mean)
    clf = MASC(10).fit(X, y)  # asks for 10 components: capped at the rank
    assert (clf.n_components_ <= 3).all()
    X[y == 1] = 0  # a class of zero vectors has an empty subspace
    clf = MASC().fit(X, y)
    assert clf.n_components_[1] == 0
    assert (clf.predict(X[y != 1]) != 1).all()


def test_float32_numpy_and_score_rounding():
    X, y = blobs(25, 12)
    clf = MASC().fit(X.numpy(), y.numpy())
    pred = clf.predict(X.numpy())
    assert isinstance(pred, np.ndarray)
    acc = clf.score(X, y)
    assert acc == round(float((clf.predict(X) == y).double().mean()), 4)
    assert clf.components_[0].dtype == torch.float64


def test_bad_inputs():
    with pytest.raises(MASCError, match="threshold"):
        MASC(1.5).fit(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(MASCError, match="shape"):
        MASC().fit(torch.randn(4), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(MASCError, match="NaN"):
        MASC().fit(torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]))
    with pytest.raises(MASCError, match="not fitted"):
        MASC().predict(torch.randn(2, 2))
    clf = MASC().fit(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(MASCError, match="X has 5 features, but .* is expecting 3 features"):
        clf.predict(torch.randn(2, 5))


def test_ties_go_to_the_lowest_class():
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    clf = MASC(1).fit(torch.cat([X, X]), torch.tensor([0, 1, 2, 3]))
    # classes 0 and 2 share the subspace span{e1}; classes 1 and 3 span{e2}
    assert clf.predict(torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])).tolist() == [0, 1, 0]


@pytest.mark.skipif(not (DATA / "MNIST" / "raw" / "train-labels-idx1-ubyte").exists(),
                    reason="real MNIST absent: run `python -m MASC.data fetch MNIST`")
@pytest.mark.slow
def test_same_as_naive_on_real_activations_of_a_trained_cnn():
    from MASC import data, readout, training
    from MASC.corruption import corrupt_labels

    split = data.load("MNIST", DATA, True).first(1200)
    run = training.Run("MNIST", "CNN", 0.8, 1, seed=1)
    labels = torch.as_tensor(corrupt_labels(split.labels.numpy(), run.corrupt, 10,
                                            seed=run.label_seed))
    torch.manual_seed(run.seed)
    net = training.train_net(models.build("CNN", "MNIST"),
                             data.Split(split.images[:1000], labels[:1000]), run, 3, shuffle=True)
    acts, _ = readout.Reader(net, "MNIST").collect(split.images)
    for layer, A in acts.items():  # 100 vectors a class: D > N_c for input and flattern
        X, T, y = A[:1000], A[1000:], labels[:1000]
        subspaces = naive_fit(X, y, 10)
        ours = MASC().fit(X, y)
        assert list(ours.n_components_) == [len(V) for V in subspaces], layer
        assert torch.equal(ours.predict(T), naive_predict(subspaces, T)), layer
