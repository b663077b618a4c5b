"""The paper's protocol is the default; each opt-in flag changes only what it names."""
import argparse
import importlib

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, requires_mnist
from MASC import data, models, results, training

SCRIPTS = {"training": "pytorch_training", "masc": "pytorch_MASC_all",
           "retrain": "pytorch_retrain_early"}
BASE = ["-corr", "0.8", "-model", "ResNet18", "-dataset", "CIFAR10", "-run", "1"]


def parse(script, extra=()):
    """The parsed flags of a script (its main's parser, stopped before any work)."""
    module = importlib.import_module(SCRIPTS[script])
    captured = {}

    class Parsed(Exception):
        pass

    real = module.cli.parser

    def spy(*args, **kwargs):
        parser = real(*args, **kwargs)
        parse_args = parser.parse_args

        def stop(argv=None):
            captured.update(vars(parse_args(argv)))
            raise Parsed

        parser.parse_args = stop
        return parser

    module.cli.parser = spy
    try:
        with pytest.raises(Parsed):
            module.main.__wrapped__([*BASE, *extra])
    finally:
        module.cli.parser = real
    return captured


def changed(script, flag):
    default, flagged = parse(script), parse(script, [flag])
    return {k for k in default if default[k] != flagged[k]}


def test_training_defaults_are_the_papers():
    args = parse("training")
    assert args["shuffle"] is False and args["tf32"] is False and args["bf16"] is False
    assert args["epochs"] == 500 and args["label_seed"] == 42
    assert training.Schedule().shuffle is False and training.Schedule().tf32 is False


@pytest.mark.parametrize("script, flag, dest", [
    ("training", "--shuffle", "shuffle"), ("training", "--tf32", "tf32"),
    ("retrain", "--shuffle", "shuffle"),
    ("masc", "--eval-bn", "per_sample_bn"), ("retrain", "--eval-bn", "per_sample_bn"),
    ("masc", "--rows-on-disk", "rows_on_disk"), ("retrain", "--rows-on-disk", "rows_on_disk")])
def test_each_opt_in_flag_changes_only_what_it_names(script, flag, dest):
    assert changed(script, flag) == {dest}


def test_rows_on_disk_reaches_the_reader():
    from MASC import cli
    assert cli.readout_settings(argparse.Namespace(**parse("masc"))).rows_on_disk is False
    flagged = cli.readout_settings(argparse.Namespace(**parse("retrain", ["--rows-on-disk"])))
    assert flagged.rows_on_disk is True and flagged.reader(models.build("MLP", "MNIST"),
                                                           "MNIST").rows_on_disk is True


def test_readouts_use_per_image_batchnorm_by_default():
    for script in ("masc", "retrain"):
        assert parse(script)["per_sample_bn"] is True
    for path in ["Compare_experiments/stronger_baselines/probe_layers.py",
                 "Compare_experiments/sensitivity_ablation_studies/sensitivity.py",
                 "Compare_experiments/Modern_backbones/masc_resnet18.py"]:
        assert "\nPER_SAMPLE_BN = True" in (ROOT / path).read_text(), path


def test_tf32_only_when_asked(backend_flags):
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = False
    training.set_precision(torch.device("cuda"), tf32=False)
    assert torch.backends.cuda.matmul.allow_tf32 is False  # PyTorch's default, the reference's
    assert torch.backends.cudnn.allow_tf32 is False  # convolutions left as they were
    training.set_precision(torch.device("cuda"), tf32=True)
    assert torch.backends.cuda.matmul.allow_tf32 is True and torch.backends.cudnn.allow_tf32 is True


def test_stop_rules():
    assert training.stop_rule("MLP", "MNIST") == ("post-epoch", 99.99)
    assert training.stop_rule("MLP", "CIFAR10") == ("post-epoch", 99.99)
    assert training.stop_rule("CNN", "MNIST") == ("running", 99.9)
    assert training.stop_rule("CNN", "FashionMNIST") == ("running", 99.1)
    assert training.stop_rule("AlexNet", "TinyImageNet") == ("running", 99.9)


@requires_mnist
def test_mlp_train_accuracy_is_a_post_epoch_evaluation(tmp_path, data_root, monkeypatch):
    """The MLP's recorded train accuracies are those of its final weights on the whole training
    set, against the corrupted and the true labels; a CNN's tidy CSV says 'running'."""
    real = data.load
    monkeypatch.setattr(data, "load", lambda name, root=None, train=True:
                        real(name, data_root, train).first(None if train else 200))
    run = training.Run("MNIST", "MLP", 0.6, 1, seed=1)
    training.train([run], out=tmp_path, device="cpu", subset=256, epochs=3, progress=False,
                   log=lambda *_: None)
    folder = results.run_dir(tmp_path, "MNIST", "MLP", 0.6, 1)
    net = models.build("MLP", "MNIST")
    net.load_state_dict(torch.load(folder / "model_2.pth", weights_only=True))
    labels = np.load(folder / "labels.npz")
    images = real("MNIST", data_root, True).images[:256]
    with torch.no_grad():
        predicted = net.eval()(data.normalise(images, "MNIST")).argmax(1).numpy()
    reference = pd.read_csv(results.accuracy_csv(tmp_path, "MNIST", "MLP", 0.6, 1))
    assert list(reference.columns) == ["Unnamed: 0", "epoch", "Train_accuracy", "Test_accuracy",
                                       "Train_accuracy_original"]
    last = reference.iloc[-1]
    assert last.Train_accuracy == pytest.approx(100 * (predicted == labels["corrupted"]).mean())
    assert last.Train_accuracy_original == pytest.approx(100 * (predicted == labels["true"]).mean())
    tidy = pd.read_csv(results.tidy_dir(tmp_path, "training", "MNIST", "MLP") / "0.6_Run_1.csv")
    assert (tidy.train_acc_rule == "post-epoch").all()
    assert tidy.train_acc_vs_true.iloc[-1] == pytest.approx(last.Train_accuracy_original / 100)


def test_post_epoch_rule_stops_at_the_first_epoch_at_target(monkeypatch):
    """A run under the post-epoch rule stops at the first epoch whose evaluated accuracy is at
    the target, though its running accuracy is below it; one prediction pass per epoch serves
    both labellings."""
    monkeypatch.setattr(training, "stop_rule", lambda model, dataset: ("post-epoch", 50.0))
    correct = iter([1, 2, 4])  # of 4 training rows: 25%, 50% (the target), 100%
    passes = []

    class FakeGroup:
        runs = [training.Run("MNIST", "MLP", 0.0, 1, seed=1)]
        labels = torch.zeros(1, 4, dtype=torch.long)

        def __init__(self, *args, **kwargs):
            pass

        def train_epoch(self, epoch, shuffle):
            return [0.0]  # running accuracy: never at the target

        def predict(self, split):
            passes.append(len(split))
            right = next(correct)
            return torch.tensor([[0] * right + [1] * (4 - right)])

        def evaluate(self, split):
            return [0.0]

    saved = {}

    class FakeSession:
        schedule = training.Schedule(epochs=10)
        train_split = data.Split(torch.zeros(4, 1, 28, 28, dtype=torch.uint8),
                                 torch.zeros(4, dtype=torch.long))
        test_split = data.Split(torch.zeros(2, 1, 28, 28, dtype=torch.uint8),
                                torch.zeros(2, dtype=torch.long))
        graphs, progress = False, False
        log = staticmethod(lambda *_: None)

        def save(self, group, k, epoch, history, final, reached):
            saved.update(epoch=epoch, final=final, reached=reached, history=list(history))

    monkeypatch.setattr(training, "Trainer", FakeGroup)
    member = (FakeGroup.runs[0], None, torch.zeros(4, dtype=torch.long))
    training._train_group([member], 0, FakeSession())
    assert saved["epoch"] == 2 and saved["final"] and saved["reached"] and passes == [4, 4]
    assert [row[1] for row in saved["history"]] == [25.0, 50.0]
    assert [row[3] for row in saved["history"]] == [25.0, 50.0]  # true labels: zeros as well
