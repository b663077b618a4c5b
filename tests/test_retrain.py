import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import train_test_split

import pytorch_retrain_early
from conftest import record_weights_each_epoch, requires_mnist
from MASC import data, models, results, retrain, runs, training
from MASC.corruption import RunLabels, holdout_rows
from MASC.errors import MASCError


def test_reference_split_of_the_test_set():
    test80, test20 = retrain.split_indices(10000, 0.2, 2345)
    assert (len(test80), len(test20)) == (8000, 2000)
    assert not set(test80) & set(test20) and len(set(test80) | set(test20)) == 10000
    expected = train_test_split(np.arange(10000), test_size=0.2, random_state=2345)
    assert np.array_equal(test80, expected[0]) and np.array_equal(test20, expected[1])
    again = retrain.split_indices(10000, 0.2, 2345)
    assert np.array_equal(test80, again[0]) and np.array_equal(test20, again[1])

    test = data.Split(torch.zeros(10000, 1, 2, 2, dtype=torch.uint8), torch.arange(10000))
    train = data.Split(torch.zeros(50, 1, 2, 2, dtype=torch.uint8), torch.zeros(50, dtype=torch.long))
    labels = RunLabels(np.zeros(50), np.zeros(50))
    splits = retrain.protocol_splits("reference", train, labels, test)
    assert np.array_equal(labels.train_rows, np.arange(50))
    assert np.array_equal(splits.val.labels, test20) and np.array_equal(splits.test.labels, test80)


def test_clean_split_validates_on_the_training_hold_out_with_its_corrupted_labels():
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)  # image i holds i
    train = data.Split(images, torch.zeros(100, dtype=torch.long))
    corrupted = np.arange(100) % 10
    labels = RunLabels(corrupted, np.zeros(100), holdout_rows(100, 0.1))
    test = data.Split(torch.zeros(20, 1, 1, 1, dtype=torch.uint8), torch.zeros(20, dtype=torch.long))
    splits = retrain.protocol_splits("clean", train, labels, test)
    held = splits.val.images.flatten().long().numpy()
    assert np.array_equal(held, labels.holdout) and len(labels.train_rows) == 90
    assert not set(held) & set(labels.train_rows)
    assert np.array_equal(splits.val.labels.numpy(), corrupted[held]) and splits.test is test
    with pytest.raises(MASCError, match="--holdout 0.1"):  # a model trained on every row
        retrain.protocol_splits("clean", train, RunLabels(corrupted, np.zeros(100)), test)
    with pytest.raises(MASCError, match="unknown protocol"):
        retrain.protocol_splits("oracle", train, labels, test)


def test_relabel_statistics_on_a_hand_made_example():
    true = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    given = [0, 1, 2, 3, 4, 5, 9, 9, 9, 9]      # samples 6, 7, 8 corrupted; 9 drawn but kept
    relabels = [0, 1, 2, 3, 4, 0, 6, 7, 1, 9]   # 5 spoiled; 6, 7 repaired; 8 changed, still wrong
    stats = retrain.relabel_stats(given, true, relabels)
    assert stats["n_corrupted"] == 3 and stats["n_relabelled"] == 4
    assert stats["wrong_relabelled_correctly"] == pytest.approx(2 / 3)
    assert stats["correct_relabelled_wrongly"] == pytest.approx(1 / 7)
    assert stats["net_change"] == pytest.approx(1 / 3)   # 3 wrong labels before, 2 after
    assert stats["relabel_acc_vs_true"] == pytest.approx(8 / 10)
    assert stats["detector_precision"] == pytest.approx(3 / 4)
    assert stats["detector_recall"] == pytest.approx(1.0)


def test_relabel_statistics_without_corrupted_labels_are_not_applicable():
    labels = np.arange(10) % 3
    stats = retrain.relabel_stats(labels, labels, [0] * 10)
    assert stats["n_corrupted"] == 0
    for name in ("wrong_relabelled_correctly", "net_change", "detector_precision", "detector_recall"):
        assert math.isnan(stats[name])
    assert stats["correct_relabelled_wrongly"] == pytest.approx(6 / 10)


def test_early_stopping_needs_a_strict_improvement():
    stopper = retrain.EarlyStopping(3)
    scores = [50, 60, 60, 55, 70, 70, 69, 70]  # a tie is no improvement
    stops = [stopper.step(epoch, s) for epoch, s in enumerate(scores, start=1)]
    assert stops == [False] * 7 + [True]
    assert (stopper.best_epoch, stopper.best) == (5, 70)


@pytest.mark.parametrize("restore_best", [True, False])
def test_fine_tune_stops_and_keeps_the_best_or_last_weights(monkeypatch, restore_best):
    val_scores = iter([10, 30, 20, 20, 20, 50])
    monkeypatch.setattr(training.Trainer, "evaluate",  # validation: 8 images, test: 4
                        lambda self, split: [next(val_scores)] if len(split) == 8 else [0.0])
    snapshots = record_weights_each_epoch(monkeypatch)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    train = data.Split(images, torch.arange(16) % 10)
    val, test = data.Split(images[:8], train.labels[:8]), data.Split(images[:4], train.labels[:4])
    history, stopper, weights = retrain.fine_tune(
        models.build("MLP", "MNIST"), train, val, test, training.Run("MNIST", "MLP", 0.8, 1, 1),
        device="cpu", max_epochs=30, patience=3, restore_best=restore_best, log=lambda _: None)
    assert [row[0] for row in history] == [1, 2, 3, 4, 5] and stopper.best_epoch == 2
    kept = snapshots[1] if restore_best else snapshots[4]
    assert all(torch.equal(weights[k], kept[k]) for k in kept)
    assert not torch.equal(snapshots[1]["fc3.weight"], snapshots[4]["fc3.weight"])


def test_missing_memorised_model_names_the_training_command(tmp_path, capsys):
    with pytest.raises(MASCError, match=r"train it first: python pytorch_training.py -corr 0.8 "
                                        r"-model CNN -dataset MNIST -run 1 --out"):
        retrain.retrain(runs.load_run(tmp_path, "MNIST", "CNN", 0.8, 1))
    with pytest.raises(SystemExit) as stop:
        pytorch_retrain_early.main(["-corr", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run",
                                    "1", "--out", str(tmp_path)])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pytorch_training.py -corr 0.8" in error


def run_script(out, p, *flags):
    pytorch_retrain_early.main(["-corr", str(p), "-model", "CNN", "-dataset", "MNIST", "-run", "1",
                                "--out", str(out), "--device", "cpu", *flags])
    return results.tidy_dir(out, "retrain", "MNIST", "CNN") / str(p)


@requires_mnist
@pytest.mark.slow
def test_script_end_to_end_on_a_tiny_memorised_model(tmp_path, small_test_set, tiny_runs):
    tiny_runs(tmp_path)
    tidy = run_script(tmp_path, 0.8, "--max-epochs", "2")
    summary = pd.read_csv(tidy / "Run_1_reference_summary.csv")
    assert list(summary.subspaces_from) == ["corrupted", "original"]
    assert summary.n_train.eq(128).all() and summary.n_corrupted.gt(64).all()
    for column in ("model_test_acc", "test_acc_final", "test_acc_max", "wrong_relabelled_correctly",
                   "correct_relabelled_wrongly", "detector_precision", "detector_recall"):
        assert summary[column].between(0, 1).all(), column
    epochs = pd.read_csv(tidy / "Run_1_reference_epochs.csv")
    assert list(epochs.columns[:7]) == ["dataset", "model", "corrupt", "run", "protocol", "seed",
                                        "subspaces_from"]
    assert epochs[["train_acc_vs_relabels", "val_acc", "test_acc"]].stack().between(0, 1).all()
    layers = pd.read_csv(tidy / "Run_1_reference_layers.csv")
    for row in summary.itertuples():  # the chosen layer is the first best on test20
        mine = layers[layers.subspaces_from == row.subspaces_from]
        assert row.layer == mine.layer[mine.masc_val_acc.idxmax()] and mine.chosen.sum() == 1

    files = results.RunKey(tmp_path, "MNIST", "CNN", 0.8, 1).reference_retrain_files("corrupted")
    base = files["history"].parents[1]
    history = pd.read_csv(base / "Retrain_Acc_corr" / "Run_1.csv", index_col=0)
    assert list(history.columns) == ["epoch", "Train_accuracy", "Test_accuracy_80", "Test_accuracy_20"]
    assert history.Test_accuracy_80.iloc[-1] == pytest.approx(100 * summary.test_acc_final[0])
    assert (base / "Retrain_Acc_org" / "Run_1_test80.csv").exists()
    percent = pd.read_csv(base / "percentages_data_change" / "Run_1_percent.csv", index_col=0)
    assert percent.per_wlrc_org[0] == pytest.approx(100 * summary.wrong_relabelled_correctly[1])
    assert (base / "angle_results_exp3" / "Run_1" / "0" / "layer_fc1_acc_overall_test_80.csv").exists()
    folder = results.RunKey(tmp_path, "MNIST", "CNN", 0.8, 1).retrain_dir("corrupted", "reference")
    assert [f.name for f in folder.glob("model_*.pth")] == [f"model_{summary.kept_epoch[0] - 1}.pth"]

    with pytest.raises(SystemExit):  # this model saw every training row: no clean hold-out
        run_script(tmp_path, 0.8, "--protocol", "clean")
    tiny_runs(tmp_path / "held", holdout=0.1)
    tidy = run_script(tmp_path / "held", 0.8, "--protocol", "clean", "--subspaces", "corrupted",
                      "--max-epochs", "1")
    clean = pd.read_csv(tidy / "Run_1_clean_summary.csv")
    assert clean.n_train[0] == 115 and clean.kept_epoch[0] == clean.best_epoch[0]
    assert clean.test_acc_final[0] == clean.test_acc_best_epoch[0]
    folder = results.RunKey(tmp_path / "held", "MNIST", "CNN", 0.8, 1).retrain_dir("corrupted", "clean")
    assert folder.name == "Run_1" and folder.parent.name == "corr_subspace_clean"
    assert [f.name for f in folder.glob("model_*.pth")] == [f"model_{clean.best_epoch[0] - 1}.pth"]


@requires_mnist
@pytest.mark.slow
def test_no_corruption_gives_not_applicable_statistics(tmp_path, small_test_set, tiny_runs):
    tiny_runs(tmp_path, (0.0,))
    tidy = run_script(tmp_path, 0.0, "--subspaces", "original", "--max-epochs", "1")
    summary = pd.read_csv(tidy / "Run_1_reference_summary.csv")
    assert summary.n_corrupted[0] == 0
    assert summary[["net_change", "detector_precision", "detector_recall"]].isna().all(axis=None)
    base = results.RunKey(tmp_path, "MNIST", "CNN", 0.0, 1).reference_retrain_files("original")["history"].parents[1]
    assert (base / "Retrain_Acc_org" / "Run_1.csv").exists()
    assert not (base / "percentages_data_change").exists()  # the reference writes it only for p > 0
