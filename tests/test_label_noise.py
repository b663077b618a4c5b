"""The label-noise study: detector scores, their metrics on hand-computed cases, the retraining
variants' labels, the summary table and figure, and a tiny memorised run end to end."""
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import requires_mnist, script
from MASC import data, noise, plots, readout, results, runs
from MASC.errors import MASCError

label_noise = script("Compare_experiments/label_noise/label_noise.py")
make_plots = script("Compare_experiments/plotting/make_plots.py")


def test_detection_metrics_on_a_hand_made_case():
    given = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    true = np.array([0, 1, 2, 3, 0, 0, 0, 0])             # rows 4-7 are corrupted
    flags = np.array([1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)  # 2 of 3 flagged are corrupted
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.7, 0.6, 0.05])
    m = noise.detection_metrics(flags, scores, given, true)
    assert (m["n_corrupted"], m["n_flagged"], m["true_positives"]) == (4, 3, 2)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(4 / 7)
    # ranked: clean, c, c, c, clean, clean, clean, c -> precision at each corrupted row 1/2 2/3 3/4 4/8
    assert m["average_precision"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4 + 4 / 8) / 4)
    assert m["auroc"] == pytest.approx(9 / 16)  # 3 + 3 + 3 + 0 of the 16 (corrupted, clean) pairs


def test_detection_metrics_that_are_undefined_are_nan():
    clean = noise.detection_metrics([True, False], [0.5, 0.1], [1, 2], [1, 2])
    assert math.isnan(clean["recall"]) and math.isnan(clean["average_precision"])
    assert math.isnan(clean["auroc"]) and clean["precision"] == 0 and clean["f1"] == 0
    silent = noise.detection_metrics([False, False], [0.5, 0.1], [1, 2], [0, 2])
    assert math.isnan(silent["precision"]) and silent["recall"] == 0 and silent["f1"] == 0
    assert silent["average_precision"] == 1 and silent["auroc"] == 1
    with pytest.raises(MASCError, match="differ in length"):
        noise.detection_metrics([True], [0.5, 0.1], [1, 2], [0, 2])


def test_lift_counts_ties_at_the_cut_at_their_mean():
    corrupted = np.array([1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)  # base rate 1/4
    assert noise.lift_at(2, [9, 8, 7, 1, 1, 1, 1, 1], corrupted) == pytest.approx(0.5 / 0.25)
    # top 3: row 0 (corrupted), then 1 of the 4 tied rows 1-3, 7 (one of them corrupted)
    assert noise.lift_at(2, [9, 5, 5, 5, 0, 0, 0, 5], corrupted) == pytest.approx(
        (1 + 0.25) / 2 / 0.25)
    assert noise.lift_at(100, [3, 2, 1, 0, 0, 0, 0, 0], corrupted) == pytest.approx(1.0)
    assert math.isnan(noise.lift_at(2, [1, 2], [False, False]))


def test_knn_vote_follows_the_nearest_neighbours_labels():
    """Two tight clusters by direction (cosine: the scale does not matter); one row of cluster A
    labelled as B is outvoted, the rest keep their labels."""
    g = torch.Generator().manual_seed(0)
    A = torch.tensor([1.0, 0, 0]) + 0.01 * torch.randn(12, 3, generator=g)
    B = torch.tensor([0, 1.0, 0]) + 0.01 * torch.randn(12, 3, generator=g)
    X = torch.cat([A * torch.linspace(1, 50, 12)[:, None], B])
    given = np.r_[np.zeros(12, int), np.ones(12, int)]
    given[3] = 1
    flags, suggested, quality = noise.knn_vote(X, given, num_classes=3, k=5, batch=7)
    assert list(np.flatnonzero(flags)) == [3] and suggested[3] == 0 and quality[3] == 0
    assert (suggested[~flags] == given[~flags]).all() and quality[12:].min() == 1
    with pytest.raises(MASCError, match="0 < k < 24"):
        noise.knn_vote(X, given, 3, k=24)


def test_cleanlab_datalab_flags_a_label_its_neighbours_contradict():
    pytest.importorskip("cleanlab")
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.normal(c * 10, 1, size=(30, 4)) for c in range(3)])
    given = np.repeat(np.arange(3), 30)
    given[[5, 40]] = [2, 0]
    flags, suspicion = noise.datalab_issues(X, given)
    assert set(np.flatnonzero(flags)) == {5, 40}
    assert suspicion[[5, 40]].min() > np.delete(suspicion, [5, 40]).max()


def test_cleanlab_flags_and_scores_follow_its_self_confidence():
    pytest.importorskip("cleanlab")
    rng = np.random.RandomState(0)
    given = np.repeat(np.arange(3), 20)
    probs = np.full((60, 3), 0.05)
    probs[np.arange(60), given] = 0.9
    wrong = [3, 25, 47]  # these labels look wrong: the probabilities point to another class
    for i in wrong:
        probs[i] = 0.05
        probs[i, (given[i] + 1) % 3] = 0.9
    probs += rng.uniform(0, 0.01, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    flags, scores = noise.confident_learning(given, probs)
    assert list(np.flatnonzero(flags)) == wrong
    assert scores == pytest.approx(1 - probs[np.arange(60), given])


@pytest.mark.parametrize("missing", ["cleanlab", "datasets"])  # datasets: for cleanlab's Datalab
def test_missing_cleanlab_is_one_clear_error(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(MASCError, match=r"pip install 'cleanlab\[datalab\]'"):
        noise.confident_learning([0, 1], np.eye(2))


def test_probe_probabilities_are_out_of_sample_and_need_enough_rows_per_class():
    g = torch.Generator().manual_seed(0)
    X = torch.cat([torch.randn(30, 5, generator=g) + 6 * torch.eye(5)[c] for c in range(3)])
    X = torch.cat([X, torch.zeros(90, 1)], 1)
    X[0, 5] = 1  # a feature of row 0 alone: a probe fitted on row 0 can memorise its label ...
    y = np.repeat(np.arange(3), 30)
    y[0] = 1  # ... a row of class 0 labelled 1
    in_sample = make_pipeline(StandardScaler(), LogisticRegression(max_iter=noise.PROBE_MAX_ITER))
    assert in_sample.fit(X.numpy(), y).predict(X[:1].numpy()).tolist() == [1]  # it does
    probs = noise.probe_probabilities(X, y, num_classes=3, folds=5)  # out of sample it cannot
    assert probs.shape == (90, 3) and np.allclose(probs.sum(1), 1)
    assert probs[0].argmax() == 0 and probs[0, 1] < 0.5
    assert (probs[1:].argmax(1) == y[1:]).mean() > 0.95
    with pytest.raises(MASCError, match="fewer than the 5 folds"):
        noise.probe_probabilities(X[:33], y[:33], num_classes=3, folds=5)


def scores_frame():
    return pd.DataFrame({"row": [0, 1, 2, 3], "given": [0, 1, 2, 3], "true": [0, 1, 0, 3],
                         "masc_pred": [0, 2, 0, 3], "probe_pred": [0, 1, 0, 1],
                         "probe_flag": [False, False, True, True]})


@pytest.mark.parametrize("variant, rows, labels", [
    ("masc_relabel", [0, 1, 2, 3], [0, 2, 0, 3]),
    ("cleanlab_prune", [0, 1], [0, 1]),
    ("cleanlab_relabel", [0, 1, 2, 3], [0, 1, 0, 1])])
def test_retraining_variants_clean_the_labels_as_described(variant, rows, labels):
    kept, new = noise.cleaned_labels(scores_frame(), variant)
    assert list(kept) == rows and list(new) == labels
    with pytest.raises(MASCError, match="unknown retraining variant"):
        noise.cleaned_labels(scores_frame(), "drop_everything")


def test_summary_table_over_runs(tmp_path):
    folder = tmp_path / "MNIST_CNN"
    for run, f1 in ((1, 0.5), (2, 0.7)):
        ids = {"dataset": "MNIST", "model": "CNN", "corrupt": 0.4, "run": run}
        metrics = pd.DataFrame([{**ids, "detector": d, **dict.fromkeys(noise.METRICS, f1)}
                                for d in noise.DETECTORS])
        results.write_csv(metrics, folder / "0.4" / f"Run_{run}_metrics.csv")
        results.write_csv(pd.DataFrame([{**ids, "variant": "masc_relabel", "test_acc_final": f1,
                                         "test_acc_max": f1 + 0.1, "model_test_acc": 0.3,
                                         "label_acc_vs_true": 0.9, "n_train": 100 * run}]),
                          folder / "0.4" / f"Run_{run}_retrain.csv")
    detectors, retrained = noise.study_summary(folder)
    f1 = detectors[(detectors.detector == "MASC") & (detectors.metric == "f1")].iloc[0]
    assert (f1.n_runs, f1["mean"], f1["min"], f1["max"]) == (2, pytest.approx(0.6), 0.5, 0.7)
    assert f1.ci_low < 0.5 and f1.ci_high > 0.7  # a t-interval over 2 runs is wide
    table = noise.markdown(detectors, retrained)
    assert "| CNN | MNIST | 0.4 | MASC | 2 | 0.600 (0.500-0.700) |" in table
    assert "| CNN | MNIST | 0.4 | masc_relabel | 2 | 150 | 90.0 (90.0-90.0) | 30.0 (30.0-30.0) | " \
           "60.0 (50.0-70.0) | 70.0 (60.0-80.0) |" in table
    assert (folder / "detectors_summary.csv").exists() and (folder / "retrain_summary.csv").exists()
    with pytest.raises(MASCError, match="no Run_\\*_metrics.csv"):
        noise.study_summary(tmp_path / "empty")


def test_precision_recall_figure():
    rng = np.random.RandomState(0)
    rows = []
    for corrupt in (0.2, 0.6):
        for run in (1, 2):
            true = rng.randint(0, 10, 200)
            given = np.where(rng.rand(200) < corrupt, rng.randint(0, 10, 200), true)
            frame = pd.DataFrame({"dataset": "MNIST", "model": "CNN", "corrupt": corrupt, "run": run,
                                  "given": given, "true": true})
            for flag, score in noise.DETECTORS.values():
                frame[score] = (given != true) + rng.rand(200)
                frame[flag] = frame[score] > 1
            rows.append(frame)
    fig = plots.label_noise_figure(pd.concat(rows), "MNIST", "CNN", noise.DETECTORS)
    curves_and_dots = 2 * len(noise.DETECTORS) * 2  # per run and detector
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == curves_and_dots + 1  # + the share
    plots.plt.close(fig)


def test_summary_figure_has_a_panel_per_metric_and_degree_and_a_marker_per_source():
    rows = [{"dataset": "MNIST", "model": "CNN", "corrupt": c, "detector": d, "metric": m,
             "n_runs": 3, "mean": 0.5, "min": 0.4, "max": 0.6}
            for c in (0.4, 0.8) for d in noise.DETECTORS for m in noise.METRICS]
    summary = pd.DataFrame(rows)
    fig = plots.label_noise_summary_figure({"own": summary, "clean": summary}, "MNIST", "CNN",
                                           reference=noise.PUBLISHED)
    assert len(fig.axes) == 4 and len(fig.axes[0].containers) == 2  # f1, auroc x p; 2 sources
    assert len(fig.axes[1].patches) == 1 and not fig.axes[0].patches  # CL's F1 band at p = 0.8
    plots.plt.close(fig)


@requires_mnist
@pytest.mark.slow
def test_detectors_on_a_tiny_memorised_run_use_no_test_label(tmp_path, monkeypatch, small_test_set,
                                                            tiny_runs):
    pytest.importorskip("cleanlab")
    tiny_runs(tmp_path, holdout=0.1)
    scores, table, seconds = noise.detect(runs.load_run(tmp_path, "MNIST", "CNN", 0.8, 1),
                                          folds=3, log=lambda *_: None)
    assert len(scores) == 115 and table.chosen.sum() == 1 and set(seconds) == set(noise.DETECTORS)
    holdout = np.load(results.run_dir(tmp_path, "MNIST", "CNN", 0.8, 1) / "labels.npz")["holdout"]
    assert list(scores.row) == list(np.setdiff1d(np.arange(128), holdout))
    for flag, score in noise.DETECTORS.values():
        assert scores[flag].dtype == bool and np.isfinite(scores[score]).all()
    assert (scores.masc_flag == (scores.masc_pred != scores.given)).all()
    assert (scores.masc_flag == (scores.masc_score > 0.5)).all()
    assert (scores.masc_in_flag == (scores.masc_in_score > 0.5)).all()
    layer = table[table.chosen].layer.iloc[0]  # the same finder as noise.label_report
    trained = runs.load_run(tmp_path, "MNIST", "CNN", 0.8, 1)
    reader, (split, given, _) = readout.Settings().reader(trained.net, "MNIST"), trained.training()
    acts = torch.cat([found[layer].float() for _, found, _ in reader.batches(split.images, [layer])])
    report = noise.label_report(acts, given, cv=3, classes=range(10))
    np.testing.assert_allclose(scores.masc_score, 1 - report.label_quality)
    assert scores.probe_pred.between(0, 9).all() and scores.softmax_score.between(0, 1).all()

    real = data.load  # the same run with scrambled test labels: not one score may change

    def scrambled(name, root=None, train=True):
        split = real(name, root, train)
        return split if train else data.Split(split.images, split.labels.roll(1))
    monkeypatch.setattr(data, "load", scrambled)
    again, _, _ = noise.detect(runs.load_run(tmp_path, "MNIST", "CNN", 0.8, 1), folds=3,
                               log=lambda *_: None)
    pd.testing.assert_frame_equal(scores, again)


@requires_mnist
@pytest.mark.slow
def test_study_script_end_to_end_and_resumes(tmp_path, small_test_set, capsys, tiny_runs):
    pytest.importorskip("cleanlab")
    tiny_runs(tmp_path, holdout=0.1)
    args = ["-corr", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run", "1", "--out", str(tmp_path),
            "--device", "cpu", "--folds", "3", "--max-epochs", "1"]
    label_noise.main(args + ["--variants", "cleanlab_prune"])
    folder = results.tidy_dir(tmp_path, "label_noise", "MNIST", "CNN") / "0.8"
    metrics = pd.read_csv(folder / "Run_1_metrics.csv")
    assert list(metrics.detector) == list(noise.DETECTORS)
    lift = f"lift_at_{noise.LIFT_AT}"  # at most 1 / the share corrupted
    share = (metrics.n_corrupted / metrics.n_rows).iloc[0]
    assert metrics[noise.METRICS].drop(columns=lift).stack().between(0, 1).all()
    assert metrics[lift].between(0, 1 / share + 1e-9).all() and (metrics.seconds > 0).all()
    retrained = pd.read_csv(folder / "Run_1_retrain.csv")
    flagged = pd.read_csv(folder / "Run_1_scores.csv").probe_flag.sum()
    assert list(retrained.variant) == ["cleanlab_prune"] and retrained.n_train[0] == 115 - flagged
    assert retrained.test_acc_final.between(0, 1).all() and retrained.epochs_run[0] == 1
    stamp = (folder / "Run_1_scores.csv").stat().st_mtime_ns
    label_noise.main(args + ["--variants", "cleanlab_prune", "masc_relabel"])  # resumes
    assert (folder / "Run_1_scores.csv").stat().st_mtime_ns == stamp
    assert sorted(pd.read_csv(folder / "Run_1_retrain.csv").variant) == ["cleanlab_prune", "masc_relabel"]
    table = (folder.parent / "table.md").read_text()
    assert "| CNN | MNIST | 0.8 | cleanlab_softmax | 1 |" in table and "masc_relabel" in table

    tiny_runs(tmp_path, corrs=(0.0,), holdout=0.1)  # the same rows, true labels: its features
    label_noise.main(args + ["--features", "clean", "--variants"])  # score p = 0.8's labels
    clean_folder = results.tidy_dir(tmp_path, "label_noise_clean", "MNIST", "CNN") / "0.8"
    clean = pd.read_csv(clean_folder / "Run_1_scores.csv")
    own = pd.read_csv(folder / "Run_1_scores.csv")
    assert list(clean.row) == list(own.row) and list(clean.given) == list(own.given)
    assert not np.allclose(clean.masc_score, own.masc_score)  # other features
    assert clean.features_checkpoint_epoch.notna().all()  # the p = 0.0 weights' provenance too
    with pytest.raises(SystemExit):
        label_noise.main(args + ["--features", "clean", "--variants", "cleanlab_prune"])
    make_plots.main(["--out", str(tmp_path), "--plots", str(tmp_path / "plots")])
    for figure in ("LABEL_NOISE", "LABEL_NOISE_SUMMARY"):
        assert (tmp_path / "plots" / f"{figure}_MNIST_CNN.png").exists()
    assert (tmp_path / "plots" / "label_noise_MNIST_CNN.md").read_text() == table
    assert "| CNN | MNIST | 0.8 | MASC | 1 |" in (
        tmp_path / "plots" / "label_noise_MNIST_CNN_clean_features.md").read_text()
    # other settings (case 4 of the fault matrix: the earlier settings' scores and retrainings
    # were reported as the new ones): scored and retrained again, and recorded
    label_noise.main(args + ["--variants", "cleanlab_prune", "--threshold", "0.5", "--folds", "4"])
    rescored = pd.read_csv(folder / "Run_1_scores.csv")
    assert rescored.threshold.eq(0.5).all() and rescored.folds.eq(4).all()
    again = pd.read_csv(folder / "Run_1_retrain.csv")
    assert list(again.variant) == ["cleanlab_prune"] and again.threshold.eq(0.5).all()
    label_noise.main(args + ["--variants", "cleanlab_prune", "--threshold", "0.5", "--folds", "4",
                             "--max-epochs", "2"])  # retrained again, not scored again
    assert pd.read_csv(folder / "Run_1_scores.csv").equals(rescored)
    assert pd.read_csv(folder / "Run_1_retrain.csv").max_epochs.tolist() == [2]
    # scores of an older version, without a detector's column: scored again, not an error
    rescored.drop(columns="knn_pred").to_csv(folder / "Run_1_scores.csv", index=False)
    label_noise.main(args + ["--variants", "--threshold", "0.5", "--folds", "4"])
    assert "knn_pred" in pd.read_csv(folder / "Run_1_scores.csv")


fixed_features = script("Compare_experiments/label_noise/fixed_features.py")


@requires_mnist
@pytest.mark.slow
def test_fixed_features_scores_every_features_only_detector_on_real_pixels(tmp_path, capsys):
    """fixed_features.py on 200 real MNIST images at p = 0.4: each features-only detector gets a
    metrics row (no softmax: no network), the corrupted count is the run's own draw, MASC and the
    k-NN vote rank the wrong labels well above chance on raw pixels (measured: AUROC 0.94-0.95 on
    300 images), and a rerun scores nothing again unless its settings differ (break: score_labels's MASC in-sample, cv=None,
    and its AUROC falls to 0.52)."""
    pytest.importorskip("cleanlab")
    args = ["-corr", "0.4", "-run", "1", "-dataset", "MNIST", "-model", "pixels", "--subset", "200",
            "--folds", "3", "--out", str(tmp_path)]
    fixed_features.main(args)
    folder = results.tidy_dir(tmp_path, "label_noise_pixels", "MNIST", "pixels")
    metrics = pd.read_csv(folder / "0.4" / "Run_1_metrics.csv")
    assert list(metrics.detector) == [d for d in noise.DETECTORS if d != "cleanlab_softmax"]
    assert (metrics.n_rows == 200).all() and metrics.n_corrupted.between(60, 100).all()
    auroc = metrics.set_index("detector").auroc
    assert auroc["MASC"] > 0.8 and auroc["knn_vote"] > 0.8 and (metrics.seconds > 0).all()
    assert "| pixels | MNIST | 0.4 | MASC | 1 |" in (folder / "table.md").read_text()
    stamp = (folder / "0.4" / "Run_1_metrics.csv").stat().st_mtime_ns
    capsys.readouterr()
    fixed_features.main(args)
    assert (folder / "0.4" / "Run_1_metrics.csv").stat().st_mtime_ns == stamp
    assert "labels wrong" not in capsys.readouterr().out
    fixed_features.main(args + ["--threshold", "0.5"])  # other settings: scored again, recorded
    assert pd.read_csv(folder / "0.4" / "Run_1_metrics.csv").threshold.eq(0.5).all()
    make_plots.main(["--out", str(tmp_path), "--plots", str(tmp_path / "plots")])
    assert (tmp_path / "plots" / "LABEL_NOISE_SUMMARY_MNIST_pixels.png").exists()
    assert "| pixels | MNIST | 0.4 | knn_vote | 1 |" in (
        tmp_path / "plots" / "label_noise_MNIST_pixels.md").read_text()
