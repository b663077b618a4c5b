import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import record_weights_each_epoch, requires_mnist
from MASC import data, models, results, training
from MASC.corruption import RunLabels
from MASC.errors import MASCError

pytestmark = [requires_mnist, pytest.mark.slow]  # every test here but one trains models
SUBSET = 300


def set_target(monkeypatch, accuracy):
    monkeypatch.setitem(data.DATASETS, "MNIST",
                        dataclasses.replace(data.DATASETS["MNIST"], stop_accuracy=accuracy))


def history(out, run):
    return pd.read_csv(run.key(out).accuracy_csv)


def weights(out, run):
    path = results.final_checkpoint(results.run_dir(out, run.dataset, run.model, run.corrupt, run.run))
    return torch.load(path, weights_only=True)


def train(runs, out, **kw):
    return training.train(runs, out=out, device="cpu", subset=SUBSET, progress=False,
                          log=lambda *_: None, **kw)


def test_single_run_writes_reference_files(tmp_path, small_test_set):
    run = training.Run("MNIST", "CNN", 0.8, 1, seed=1)
    done = train([run], tmp_path, epochs=2)
    folder = results.run_dir(tmp_path, "MNIST", "CNN", 0.8, 1)
    assert done[run] == folder / "model_1.pth" and done[run].exists()
    text = results.RunKey(tmp_path, "MNIST", "CNN", 0.8, 1).accuracy_csv.read_text().splitlines()
    assert text[0] == ",epoch,Train_accuracy,Test_accuracy" and text[1].startswith("0,1,")
    assert len(text) == 3
    corrupted, true = np.load(folder / "labels.npz")["corrupted"], np.load(folder / "labels.npz")["true"]
    assert len(corrupted) == SUBSET and (corrupted != true).mean() > 0.5
    net = models.build("CNN", "MNIST")
    net.load_state_dict(weights(tmp_path, run))  # loads as a plain model
    tidy = pd.read_csv(results.tidy_dir(tmp_path, "training", "MNIST", "CNN") / "0.8_Run_1.csv")
    assert list(tidy.columns[:5]) == ["dataset", "model", "corrupt", "run", "seed"]
    assert tidy.test_acc.between(0, 1).all()


def test_the_csvs_test_accuracy_is_the_final_checkpoints_on_the_test_images(tmp_path,
                                                                           small_test_set,
                                                                           monkeypatch):
    """The reference CSV's and the tidy CSV's last test accuracy is that of the final checkpoint,
    reloaded into a plain model, on the (500) test images; each earlier row is that of the
    weights after its own epoch."""
    snapshots = record_weights_each_epoch(monkeypatch)
    run = training.Run("MNIST", "CNN", 0.0, 1, seed=1)
    train([run], tmp_path, epochs=3)
    test, net = data.load("MNIST", train=False), models.build("CNN", "MNIST").eval()

    def accuracy(state):
        net.load_state_dict(state)
        with torch.no_grad():
            predicted = net(data.normalise(test.images, "MNIST")).argmax(1)
        return 100 * (predicted == test.labels).double().mean().item()

    rows = history(tmp_path, run).Test_accuracy
    final = accuracy(weights(tmp_path, run))
    assert rows.iloc[-1] == pytest.approx(final)
    tidy = pd.read_csv(results.tidy_dir(tmp_path, "training", "MNIST", "CNN") / "0.0_Run_1.csv")
    assert tidy.test_acc.iloc[-1] == pytest.approx(final / 100)
    assert rows.tolist() == pytest.approx([accuracy(state) for state in snapshots])
    assert rows.nunique() > 1  # a row measured with another epoch's weights would show


def test_hold_out_rows_are_never_trained_on(tmp_path, small_test_set):
    run = training.Run("MNIST", "CNN", 0.8, 1, seed=1)
    train([run], tmp_path, epochs=1, holdout=0.2)
    labels = RunLabels.load(results.run_dir(tmp_path, "MNIST", "CNN", 0.8, 1) / "labels.npz")
    assert len(labels.true) == SUBSET and len(labels.holdout) == SUBSET // 5
    assert len(labels.train_rows) == SUBSET - SUBSET // 5
    with pytest.raises(MASCError, match="holdout 0.2 .now 0.0."):
        train([run], tmp_path, epochs=2)


def test_resume_gives_the_same_rows_and_weights(tmp_path, small_test_set):
    run = training.Run("MNIST", "CNN", 0.4, 2, seed=5)
    train([run], tmp_path / "a", epochs=3)
    train([run], tmp_path / "b", epochs=1)  # "interrupted" after one epoch ...
    (results.run_dir(tmp_path / "b", "MNIST", "CNN", 0.4, 2) / "model_0.pth").unlink()
    train([run], tmp_path / "b", epochs=3)  # ... and resumed
    pd.testing.assert_frame_equal(history(tmp_path / "a", run), history(tmp_path / "b", run))
    a, b = weights(tmp_path / "a", run), weights(tmp_path / "b", run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in results.run_dir(tmp_path / "b", "MNIST", "CNN", 0.4, 2).glob("model_*")) \
        == ["model_2.pth"]


def test_finished_run_is_not_retrained_and_settings_are_checked(tmp_path, small_test_set):
    run = training.Run("MNIST", "CNN", 0.0, 1, seed=1)
    train([run], tmp_path, epochs=1)
    before = history(tmp_path, run)
    train([run], tmp_path, epochs=1)
    pd.testing.assert_frame_equal(before, history(tmp_path, run))
    with pytest.raises(MASCError, match="other settings: subset 300"):
        training.train([run], out=tmp_path, device="cpu", subset=200, epochs=2, progress=False)


def test_stacked_runs_equal_separate_runs_and_stop_on_their_own(tmp_path, small_test_set, monkeypatch):
    runs = [training.Run("MNIST", "CNN", p, r, seed=10 + r) for p, r in ((0.0, 1), (1.0, 1), (0.0, 2))]
    set_target(monkeypatch, 101.0)  # never reached: learn each run's accuracies
    train(runs[:2], tmp_path / "probe", epochs=3)
    clean, noisy = (history(tmp_path / "probe", r).Train_accuracy for r in runs[:2])
    target = (clean[1] + noisy.max()) / 2  # the p=0 run stops by epoch 2, the p=1 run never
    assert clean[1] > noisy.max()
    set_target(monkeypatch, target)
    train(runs, tmp_path / "stacked", epochs=4, stack=True)
    for run in runs:
        train([run], tmp_path / "alone", epochs=4)
        pd.testing.assert_frame_equal(history(tmp_path / "stacked", run), history(tmp_path / "alone", run))
        a, b = weights(tmp_path / "stacked", run), weights(tmp_path / "alone", run)
        # float32 rounding differs between a stack of 3 and of 1; Adam can turn it into a few
        # full steps of size lr on near-zero gradients (exactness: tests/test_stacking.py, float64)
        assert all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)
    assert len(history(tmp_path / "stacked", runs[0])) <= 2 and len(history(tmp_path / "stacked", runs[1])) == 4


def test_shuffled_runs_of_a_stack_each_follow_their_own_order(tmp_path, small_test_set):
    """With shuffle, each run of a stack trains as it does alone (its own seeded order), which
    is not the fixed order."""
    runs = [training.Run("MNIST", "CNN", p, r, seed=10 + r) for p, r in ((0.0, 1), (0.8, 1), (0.8, 2))]
    train(runs, tmp_path / "stacked", epochs=2, stack=True, shuffle=True)
    for run in runs:
        train([run], tmp_path / "alone", epochs=2, shuffle=True)
        pd.testing.assert_frame_equal(history(tmp_path / "stacked", run), history(tmp_path / "alone", run))
        a, b = weights(tmp_path / "stacked", run), weights(tmp_path / "alone", run)
        assert all(torch.allclose(a[k], b[k], atol=1e-3) for k in a), run  # as in the test above
    train(runs[1:2], tmp_path / "fixed", epochs=2)
    a, b = weights(tmp_path / "alone", runs[1]), weights(tmp_path / "fixed", runs[1])
    assert not all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)  # shuffling changed it


def test_epoch_order_is_seeded_and_device_independent():
    a, b = training.epoch_order(3, 7, 100), training.epoch_order(3, 7, 100)
    assert torch.equal(a, b) and not torch.equal(a, training.epoch_order(3, 8, 100))
    assert torch.equal(training.epoch_order(3, 7, 100, shuffle=False), torch.arange(100))
    assert sorted(a.tolist()) == list(range(100))


def test_sweep_form_of_the_script_writes_every_run(tmp_path, small_test_set, capsys):
    import pytorch_training

    pytorch_training.main(["-corr", "0.0", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run", "1",
                           "2", "--subset", "200", "--epochs", "1", "--device", "cpu", "--out",
                           str(tmp_path)])
    for p in (0.0, 0.8):
        for r in (1, 2):
            assert results.RunKey(tmp_path, "MNIST", "CNN", p, r).accuracy_csv.exists()
            assert (results.run_dir(tmp_path, "MNIST", "CNN", p, r) / "model_0.pth").exists()
    assert capsys.readouterr().out.count("model_0.pth") == 4
    from MASC import cli
    assert cli.expand(["all"], cli.CORRUPTIONS, cli.corruption) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    with pytest.raises(MASCError, match="bad value"):
        cli.expand(["0.5", "x"], cli.CORRUPTIONS, cli.corruption)
