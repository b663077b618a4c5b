"""The probes: one interface, sensible accuracy on easy data, QDA on singular classes, FLOP formulas."""
import numpy as np
import pytest
import torch

from MASC import MinimumAngleSubspaceClassifier, probes
from MASC.errors import MASCError


def blobs(n, dim=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(classes, dim, generator=torch.Generator().manual_seed(99))
    X = torch.cat([c + torch.randn(n, dim, generator=g) for c in centres])
    return X, np.repeat(np.arange(classes), n)


@pytest.mark.parametrize("name", list(probes.PROBES))
def test_every_probe_fits_predicts_and_scores(name):
    X, y = blobs(400)  # enough rows for logistic regression's 20 epochs of batches of 128
    T, t = blobs(15, seed=1)
    probe = probes.make(name)
    assert probe.fit(X, y) is probe
    pred = probe.predict(T)
    assert isinstance(pred, np.ndarray) and pred.shape == (len(T),)
    assert probe.score(T, t) == round(float((pred == t).mean()), 4) >= 0.9
    assert probe.fit_flops_ >= 0 and probe.predict_flops(len(T)) > 0
    assert probe.predict_flops(2 * len(T)) > probe.predict_flops(len(T))


def test_masc_probe_is_masc():
    X, y = blobs(30)
    ours = probes.make("MASC", threshold=0.75).fit(X, y)
    plain = MinimumAngleSubspaceClassifier(0.75).fit(X, y)
    assert np.array_equal(ours.predict(X), plain.predict(X).numpy())
    assert ours.notes_ == f"k_mean={plain.n_components_.mean():.2f}"


def test_qda_regularises_a_rank_deficient_class_minimally():
    X, y = blobs(60)
    X[y == 1, 4:] = 0  # class 1 lives in 4 of 12 dimensions: singular covariance
    qda = probes.QDAProbe().fit(X, y)
    assert qda.notes_.startswith("shrinkage=")
    shrinkage = float(qda.notes_.split("=")[1])
    smaller = [s for s in probes.QDAProbe.SHRINKAGES if s < shrinkage]
    assert qda._attempts == [None] + smaller + [shrinkage]  # every smaller one was refused
    assert qda.score(X, y) >= 0.9
    full = probes.QDAProbe().fit(*blobs(60))  # well-posed: scikit-learn's defaults, no shrinkage
    assert full.notes_ == "" and full._attempts == [None]
    with pytest.raises(MASCError, match="two training rows"):
        probes.QDAProbe().fit(X[:61], y[:61])


def test_logistic_regression_is_seeded_and_keeps_label_values():
    X, y = blobs(20)
    y = y * 3 + 1  # labels 1, 4, 7
    a = probes.make("LogReg").fit(X, y)
    b = probes.make("LogReg").fit(X, y)
    assert torch.equal(a.linear.weight, b.linear.weight)
    assert set(a.predict(X)) <= {1, 4, 7}


def test_flop_formulas_on_a_tiny_case():
    X = torch.tensor([[1.0, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [0, 2, 1]])
    y = np.array([0, 0, 1, 1, 1, 1])
    masc = probes.make("MASC").fit(X, y)
    assert list(masc.n_components_) == [1, 2]
    # class 0: Gram route (2 rows < 3 dims) 2*2^2*3 + 9*2^3 + 2*2*3*1 = 108; class 1: 2*4*9 + 9*27 = 315
    assert masc.fit_flops_ == 108 + 315
    assert masc.predict_flops(5) == 5 * (2 * 3 * 3 + 2 * 3 + 2 * 3 + 2)
    ncm = probes.make("NCM").fit(X, y)
    assert ncm.fit_flops_ == 6 * 3 + 4 * 2 * 3
    assert ncm.predict_flops(5) == 5 * (2 * 3 * 2 + 3 * 3 + 2)
    logreg = probes.make("LogReg").fit(X, y)  # 20 epochs of one step
    assert logreg.fit_flops_ == 20 * (6 * (4 * 3 * 2 + 8 * 2) + 1 * 10 * 4 * 2)
    assert logreg.predict_flops(5) == 5 * (2 * 3 * 2 + 2)
    knn = probes.make("kNN").fit(X, y)
    assert knn.fit_flops_ == 0 and knn.predict_flops(5) == 2 * 5 * 6 * 3 + 3 * 11 * 3 + 5 * 6
    assert probes.svd_flops(6, 3) == probes.svd_flops(3, 6) == 4 * 6 * 9 + 8 * 27
    assert probes.eigh_flops(3) == 243
    lda = probes.make("LDA").fit(X, y)  # r = min(6, 3) = 3 and q = 1 direction for 2 classes
    assert lda.estimator.scalings_.shape[1] == 1
    assert lda.fit_flops_ == 7 * 6 * 3 + 432 + 2 * 2 * 3 * 3 + (4 * 3 * 4 + 8 * 8) + 2 * 3 * 3 + 4 * 2 * 3
    assert lda.predict_flops(5) == 5 * (2 * 3 * 1 + 1)  # two classes: one row of coef_


def test_qda_flop_formula_without_and_with_shrinkage():
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(4, 2), rng.randn(4, 2) + 3]
    y = np.repeat([0, 1], 4)
    qda = probes.make("QDA").fit(X, y)  # well conditioned: scikit-learn's defaults, one attempt
    assert qda.notes_ == "" or "shrinkage" not in qda.notes_
    assert qda.fit_flops_ == 2 * (2 * 4 * 2 + (4 * 4 * 4 + 8 * 8))
    assert qda.predict_flops(3) == 3 * 2 * (2 + 2 * 2 * 2 + 3 * 2) + 3 * 2
    X3 = np.c_[X, np.zeros(8)]  # a dead unit: singular covariances, shrinkage attempts follow
    shrunk = probes.make("QDA").fit(X3, y)
    attempts = probes.QDAProbe.SHRINKAGES.index(float(shrunk.notes_.split("=")[1])) + 1
    default = 2 * (2 * 4 * 3 + (4 * 4 * 9 + 8 * 27))
    per_attempt = 2 * (4 * 3 + 2 * 4 * 9 + 2 * 9 + 9 * 27)
    assert shrunk.fit_flops_ == default + attempts * per_attempt


def test_unknown_probe_is_a_clear_error():
    with pytest.raises(MASCError, match="unknown probe 'SVM'"):
        probes.make("SVM")


def test_evaluate_gives_tidy_rows_and_records_a_probe_that_cannot_be_fitted():
    X, y = blobs(30)
    T, t = blobs(10, seed=1)
    acts = probes.Activations({"fc1": X}, {"fc1": T}, corrupted=y, true=y, test_labels=t,
                              model_test_acc=0.5)
    ids = {"dataset": "D", "model": "M", "corrupt": 0.2, "run": 1, "seed": 1}
    table = probes.evaluate(acts, {"NCM": probes.NearestClassMean, "QDA": probes.QDAProbe}, ids,
                            log=lambda *_: None)
    assert list(table.columns[:12]) == ["dataset", "model", "corrupt", "run", "seed", "probe",
                                        "labels_from", "layer", "dim", "n_train", "n_test", "test_acc"]
    assert len(table) == 4 and table.test_acc.between(0.9, 1).all() and (table.model_test_acc == 0.5).all()
    acts.true = np.r_[y[:-1], 7]  # one row of class 7: QDA cannot be fitted, the row says why
    failed = probes.evaluate(acts, {"QDA": probes.QDAProbe}, ids, labellings=["original"], log=lambda *_: None)
    assert np.isnan(failed.test_acc[0]) and failed.notes[0].startswith("failed: QDA needs at least two")
