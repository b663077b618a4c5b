"""The MLP protocol study's settings (paper/NOTES.md): --train-batch, --init glorot, --scaling unit,
--stop-on, the running accuracy logged next to the post-epoch one, and progress saved before these
settings existed resuming as before."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from MASC import data, models, readout, results, runs, training
from conftest import SMALL_TEST as TEST
from conftest import requires_mnist

N = 256


def train_tiny(out, run=1, **schedule):
    schedule = {"subset": N, "epochs": 2, **schedule}
    training.train([training.Run("MNIST", "MLP", 0.8, run, seed=run)], out=out, device="cpu",
                   progress=False, log=lambda *_: None, **schedule)
    return pd.read_csv(results.RunKey(out, "MNIST", "MLP", 0.8, run).training_csv)


def test_stop_on_overrides_the_rule_and_an_mlp_keeps_its_target():
    assert training.stop_rule("MLP", "MNIST", "running") == ("running", 99.99)
    assert training.stop_rule("CNN", "MNIST", "post-epoch") == ("post-epoch", 99.99)
    assert training.stop_rule("CNN", "MNIST", None) == ("running", 99.9)
    with pytest.raises(ValueError, match="unknown stop rule"):
        training.stop_rule("MLP", "MNIST", "whenever")


def test_glorot_init_is_keras_default_and_seeded():
    torch.manual_seed(3)
    net = training.glorot_init(models.build("MLP", "MNIST"))
    torch.manual_seed(3)
    again = training.glorot_init(models.build("MLP", "MNIST"))
    for name, layer in net.named_modules():
        if isinstance(layer, torch.nn.Linear):
            fan_out, fan_in = layer.weight.shape
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert layer.weight.abs().max() <= bound
            assert layer.weight.abs().max() > 0.9 * bound  # uniform over the whole range
            assert not layer.bias.any()
            assert torch.equal(layer.weight, dict(again.named_modules())[name].weight)


def test_unit_scaling_changes_the_inputs_only_when_asked():
    images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert data.normalise(images, "MNIST").flatten().tolist() == [-1.0, 1.0]
    assert data.normalise(images, "MNIST", "unit").flatten().tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="unknown input scaling"):
        data.normalise(images, "MNIST", "z")


@pytest.mark.slow
@requires_mnist
def test_unit_scaled_run_is_read_out_with_its_own_scaling(tmp_path, small_test_set):
    """A run trained on [0, 1] inputs is read out on [0, 1] inputs: the network's test accuracy
    through the read-out equals the training CSV's last one (with the reference scaling it would
    be another network's)."""
    tidy = train_tiny(tmp_path, scaling="unit", init="glorot", train_batch=64)
    trained = runs.load_run(tmp_path, "MNIST", "MLP", 0.8, 1, test_subset=TEST)
    assert trained.net.input_scaling == "unit"
    reader = readout.Settings(device="cpu").reader(trained.net, "MNIST")
    predicted = torch.cat([logits.argmax(1) for _, _, logits in reader.batches(trained.test.images)])
    assert (predicted == trained.test.labels).float().mean().item() == pytest.approx(
        tidy.test_acc.iloc[-1])
    config = results.RunKey(tmp_path, "MNIST", "MLP", 0.8, 1).load_progress()["config"]
    assert (config["batch"], config["init"], config["scaling"]) == (64, "glorot", "unit")


@pytest.mark.slow
@requires_mnist
def test_mlp_under_the_running_rule_keeps_its_post_epoch_scores(tmp_path, small_test_set):
    tidy = train_tiny(tmp_path, stop_on="running")
    assert (tidy.train_acc_rule == "running").all()
    assert tidy.train_acc_vs_corrupted.equals(tidy.train_acc_running)
    assert tidy.train_acc_post_epoch.notna().all() and tidy.train_acc_vs_true.notna().all()
    post = train_tiny(tmp_path, run=2)  # the reference's rule: post-epoch, running logged beside
    assert (post.train_acc_rule == "post-epoch").all()
    assert post.train_acc_vs_corrupted.equals(post.train_acc_post_epoch)
    assert post.train_acc_running.notna().all()


@pytest.mark.slow
@requires_mnist
def test_progress_saved_before_these_settings_resumes(tmp_path, small_test_set):
    """progress.pt written before batch/init/scaling were recorded (4-value history rows) resumes
    under the reference's settings, and its old rows get NaN running accuracies."""
    train_tiny(tmp_path, epochs=2, save_every=1, stop_on="running")
    key = results.RunKey(tmp_path, "MNIST", "MLP", 0.8, 1)
    state = key.load_progress()
    for setting in ("batch", "init", "scaling"):
        del state["config"][setting]
    state["history"] = [row[:4] for row in state["history"]]
    state["reached_target"] = False
    state["epoch"] = 2
    results.save_torch(state, key.progress)
    tidy = train_tiny(tmp_path, epochs=3, stop_on="running")
    assert list(tidy.epoch) == [1, 2, 3]
    assert np.isnan(tidy.train_acc_running.iloc[:2]).all() and tidy.train_acc_running.notna().iloc[2]
    with pytest.raises(ValueError, match="other settings: .*scaling 'reference' \\(now 'unit'\\)"):
        train_tiny(tmp_path, epochs=4, stop_on="running", scaling="unit")
