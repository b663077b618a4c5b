"""Tests that fail when a central behaviour is broken (each was checked against a deliberate break
in a scratch copy: see the docstrings). Real MNIST, tiny subsets, CPU."""
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import QUIET, record_weights_each_epoch, requires_mnist
from MASC import data, experiments, models, readout, results, retrain, runs, training
from MASC.corruption import RunLabels, corrupt_labels, holdout_rows
from MASC.masc import MinimumAngleSubspaceClassifier

pytestmark = [requires_mnist, pytest.mark.slow]  # trains models


def row_of_image(images):
    """image bytes -> row, for images that are all different."""
    rows = {bytes(image.numpy()): i for i, image in enumerate(images)}
    assert len(rows) == len(images)
    return rows


# 1. ---------------------------------------------------------------------------------------------

def test_training_steps_see_only_the_kept_rows_with_their_corrupted_labels(
        tmp_path, small_test_set, data_root, monkeypatch):
    """Every (image, label) pair the optimiser steps on, over one epoch, is a kept row with its
    corrupted label, each kept row exactly once, no held-out row ever (break: train on every row)."""
    seen_images, seen_labels, real_step = [], [], training.Trainer._step

    def spy(self, idx):
        seen_images.append(self.split.images[idx.reshape(-1)].cpu().clone())
        seen_labels.append(self.labels.gather(1, idx).reshape(-1).cpu().clone())
        return real_step(self, idx)

    monkeypatch.setattr(training.Trainer, "_step", spy)
    n, p = 300, 0.8
    training.train([training.Run("MNIST", "CNN", p, 1, seed=1)], out=tmp_path, epochs=1, subset=n,
                   holdout=0.2, **QUIET)
    full = data.load("MNIST", data_root, True)
    rows = row_of_image(full.images[:n])
    corrupted = corrupt_labels(full.labels.numpy(), p, 10)[:n]
    kept = np.setdiff1d(np.arange(n), holdout_rows(n, 0.2))
    trained = [rows[bytes(image.numpy())] for image in torch.cat(seen_images)]
    assert sorted(trained) == list(kept)  # each kept row once per epoch, no held-out row
    assert not set(trained) & set(holdout_rows(n, 0.2).tolist())
    assert torch.cat(seen_labels).tolist() == corrupted[trained].tolist()
    assert (corrupted[kept] != full.labels.numpy()[kept]).mean() > 0.5  # the labels are the noisy ones


# 2. ---------------------------------------------------------------------------------------------

def test_readout_in_batches_equals_one_batch(data_root):
    """The read-out (batches, masc_by_layer) in batches of 70 over 300 rows (4 full batches and a
    partial one) gives exactly the k and predictions of a single batch (break: the first batch's
    labels for every batch)."""
    train = data.load("MNIST", data_root, True).first(300)
    test = data.load("MNIST", data_root, False).first(150)
    torch.manual_seed(0)
    net = models.build("CNN", "MNIST")
    given = {"corrupted": corrupt_labels(train.labels.numpy(), 0.5, 10), "original": train.labels}
    fitted = {}
    for batch in (300, 70):
        reader = readout.Reader(net, "MNIST", batch_size=batch)
        rows = [r for r, _, _ in reader.batches(train.images)]
        assert [(r.start, r.stop) for r in rows] == [(s, min(s + batch, 300)) for s in range(0, 300, batch)]
        fitted[batch] = list(reader.masc_by_layer(train, given, [test.images], classes=range(10)))
    one, many = fitted[300], fitted[70]
    assert [f.layer for f in one] == [f.layer for f in many] and len(one) == 5
    for single, batched in zip(one, many):
        assert torch.equal(batched.network[0], single.network[0])
        for name in given:
            key = name, single.layer
            assert np.array_equal(single.n_components[name], batched.n_components[name]), key
            assert torch.equal(batched.fitted_rows[name], single.fitted_rows[name]), key
            assert torch.equal(batched.predictions[0][name], single.predictions[0][name]), key
    layer_table = {}
    splits = retrain.Splits(test.first(50), data.Split(test.images[50:], test.labels[50:]))
    for batch in (300, 70):
        layer_table[batch], _, accs = retrain.masc_layers(
            readout.Reader(net, "MNIST", batch_size=batch), train, given, splits)
    pd.testing.assert_frame_equal(layer_table[300], layer_table[70])


# 3. ---------------------------------------------------------------------------------------------

def captured_fine_tuning(monkeypatch):
    """Replace retrain.fine_tune by a recorder of what it is given (one epoch, weights unchanged)."""
    calls = []

    def fake(net, train, val, test, run, device, *args, **kwargs):
        calls.append((train.images.clone(), train.labels.clone()))
        stopper = retrain.EarlyStopping(3)
        stopper.step(1, 0.0)
        return [(1, 0.0, 0.0, 0.0)], stopper, {k: v.clone() for k, v in net.state_dict().items()}

    monkeypatch.setattr(retrain, "fine_tune", fake)
    return calls


def test_fine_tuning_gets_masc_relabels_of_the_chosen_layer(tmp_path, small_test_set, data_root,
                                                            monkeypatch, tiny_runs):
    """The labels handed to fine-tuning are the chosen layer's MASC predictions on the trained-on
    rows, the same in read-out batches of 50 (break: fine-tune on the old corrupted labels)."""
    tiny_runs(tmp_path, holdout=0.1)
    calls = captured_fine_tuning(monkeypatch)
    trained = runs.load_run(tmp_path, "MNIST", "CNN", 0.8, 1)
    summary = retrain.retrain(trained, readout=readout.Settings(device="cpu"), log=lambda *_: None)
    assert list(summary.subspaces_from) == ["corrupted", "original"] and len(calls) == 2
    batched = captured_fine_tuning(monkeypatch)  # 115 rows in read-out batches of 50, 50, 15
    again = retrain.retrain(runs.load_run(tmp_path, "MNIST", "CNN", 0.8, 1),
                            readout=readout.Settings(device="cpu", batch_size=50), log=lambda *_: None)
    assert list(again.layer) == list(summary.layer) and len(batched) == 2
    for (_, one), (_, many) in zip(calls, batched):
        assert torch.equal(one, many)

    net = runs.load_network(tmp_path, "MNIST", "CNN", 0.8, 1)
    labels = RunLabels.load(results.run_dir(tmp_path, "MNIST", "CNN", 0.8, 1) / "labels.npz")
    rows = labels.train_rows
    images = data.load("MNIST", data_root, True).images[rows]
    given = {"corrupted": labels.corrupted[rows], "original": labels.true[rows]}
    for (images_given, labels_given), row in zip(calls, summary.itertuples()):
        assert torch.equal(images_given, images)
        acts = readout.Reader(net, "MNIST", layers=[row.layer]).collect(images)[0][row.layer]
        masc = MinimumAngleSubspaceClassifier(0.99).fit(acts, torch.as_tensor(given[row.subspaces_from]),
                                                        classes=range(10))
        assert torch.equal(labels_given, masc.predict(acts)), row.subspaces_from
    org = calls[1][1].numpy()  # the true-label subspaces
    assert (org != given["corrupted"]).mean() > 0.3  # relabels, not the given corrupted labels
    assert summary.n_relabelled[1] == (org != given["corrupted"]).sum()


@pytest.mark.parametrize("protocol", ["clean", "reference"])
def test_retrain_keeps_the_best_epoch_under_clean_and_the_last_under_reference(
        tmp_path, small_test_set, monkeypatch, protocol, tiny_runs):
    """Scripted validation accuracies 10, 30, 20, 20, 20: patience 3 stops after epoch 5, the best
    is epoch 2. The clean protocol saves epoch 2's weights, the reference the last epoch's
    (break: no best-epoch restore under --protocol clean)."""
    tiny_runs(tmp_path, holdout=0.1)
    val_size = len(holdout_rows(128, 0.1)) if protocol == "clean" else 40  # test20 of 200
    scores = iter([10.0, 30.0, 20.0, 20.0, 20.0])
    monkeypatch.setattr(training.Trainer, "evaluate", lambda self, split, labels=None:
                        [next(scores)] if len(split) == val_size else [0.0])
    snapshots = record_weights_each_epoch(monkeypatch)
    summary = retrain.retrain(runs.load_run(tmp_path, "MNIST", "CNN", 0.8, 1), protocol=protocol,
                              subspaces=("corrupted",), readout=readout.Settings(device="cpu"),
                              max_epochs=30, patience=3, log=lambda *_: None)
    assert len(snapshots) == 5 and summary.epochs_run[0] == 5 and summary.best_epoch[0] == 2
    kept = 2 if protocol == "clean" else 5
    assert summary.kept_epoch[0] == kept
    folder = results.RunKey(tmp_path, "MNIST", "CNN", 0.8, 1).retrain_dir("corrupted", protocol)
    saved = torch.load(folder / f"model_{kept - 1}.pth", weights_only=True)
    assert all(torch.equal(saved[k], snapshots[kept - 1][k]) for k in snapshots[0])
    other = snapshots[4] if protocol == "clean" else snapshots[1]
    assert not all(torch.equal(saved[k], other[k]) for k in snapshots[0])


# 4. ---------------------------------------------------------------------------------------------

def network_accuracy(net, split):
    net.eval()
    with torch.no_grad():
        predicted = net(data.normalise(split.images, "MNIST")).argmax(1)
    return round(float((predicted == split.labels).float().mean()), 4)


def test_exp3_reads_the_model_trained_without_corruption(tmp_path, monkeypatch, data_root):
    """exp3's model_test_acc is the p = 0.0 model's test accuracy, not the p = 1.0 model's (break:
    exp3 loads the model trained at p)."""
    real = data.load
    monkeypatch.setattr(data, "load", lambda name, root=None, train=True:
                        real(name, data_root, train).first(None if train else 300))
    trained_runs = [training.Run("MNIST", "CNN", p, 1, seed=1) for p in (0.0, 1.0)]
    training.train(trained_runs, out=tmp_path, epochs=3, subset=400, **QUIET)
    test = data.load("MNIST", data_root, False)
    clean, noisy = (network_accuracy(runs.load_network(tmp_path, "MNIST", "CNN", p, 1), test)
                    for p in (0.0, 1.0))
    assert clean != noisy  # the fixture's two models tell apart
    fitted, real_fit = [], readout.Reader.masc_by_layer

    def spy(self, split, labellings, *args, **kwargs):
        fitted.append((self.net.state_dict(), {k: np.asarray(v) for k, v in labellings.items()}))
        return real_fit(self, split, labellings, *args, **kwargs)

    monkeypatch.setattr(readout.Reader, "masc_by_layer", spy)
    frame = experiments.masc_experiments(runs.load_run(tmp_path, "MNIST", "CNN", 1.0, 1), [1, 3],
                                         readout=readout.Settings(device="cpu", layers=["fc3"]),
                                         log=lambda *_: None)
    by_exp = frame.set_index("exp")
    assert by_exp.model_test_acc[3] == clean and by_exp.model_test_acc[1] == noisy
    exp3 = pd.read_csv(results.masc_csv(tmp_path, "MNIST", "CNN", 1.0, 1, 3))
    assert exp3.model_test_acc[0] == clean and exp3.corrupt[0] == 1.0
    # barely trained, the two models may each predict a single class: also check the read-out
    # itself ran on the p = 0.0 model's weights, with the labels corrupted at p
    (memorised, exp1_labels), (read, exp3_labels) = fitted
    for p, state in ((1.0, memorised), (0.0, read)):
        expected = runs.load_network(tmp_path, "MNIST", "CNN", p, 1).state_dict()
        assert all(torch.equal(state[k], expected[k]) for k in expected), p
    at_p = corrupt_labels(data.load("MNIST", data_root, True).labels.numpy(), 1.0, 10)[:400]
    assert list(exp3_labels) == ["corrupted"] and np.array_equal(exp3_labels["corrupted"], at_p)
    assert np.array_equal(exp1_labels["corrupted"], at_p)
