"""The paper's protocol is the default; each opt-in flag changes only what it names."""
import argparse
import importlib

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import requires_mnist
from conftest import script as load_script
from MASC import data, experiments, models, noise, readout, results, retrain, runs, sweep, training
from MASC.corruption import RunLabels

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
    from MASC import cli, readout

    assert cli.READOUT["PER_SAMPLE_BN"] is True and readout.Settings().per_sample_bn is True
    for path in ["Compare_experiments/stronger_baselines/probe_layers.py",
                 "Compare_experiments/sensitivity_ablation_studies/sensitivity.py",
                 "Compare_experiments/Modern_backbones/masc_resnet18.py"]:  # none overrides it
        assert cli.constants(vars(load_script(path))).get("PER_SAMPLE_BN", True) is True, path


class ReaderBuilt(Exception):
    """Raised by the spy Reader once built: the read-out's settings are known, the work skipped."""


def per_image_readers(monkeypatch):
    """Make every Reader record whether its network normalises ResNet BatchNorm per image, then
    stop the work that built it; returns the list of records."""
    seen = []

    class Spy(readout.Reader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(any(isinstance(m, readout.PerSampleBatchNorm) for m in self.net.modules()))
            raise ReaderBuilt

    monkeypatch.setattr(readout, "Reader", Spy)
    return seen


def untrained_resnet_run(out):
    """A TrainedRun of an untrained ResNet-18 on 20 random CIFAR-10 images (4 held out), with a
    checkpoint file in its folder (retrain reads the final epoch from its name)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=g)
    true = torch.arange(20) % 10
    labels = RunLabels(true.roll(1).numpy(), true.numpy(), np.arange(4), 0.8, 42)
    key = results.RunKey(out, "CIFAR10", "ResNet18", 0.8, 1)
    key.folder.mkdir(parents=True)
    (key.folder / "model_3.pth").touch()
    provenance = {"seed": 1, "label_seed": 42, "subset": None, "holdout": 4, "checkpoint_epoch": 3}
    return runs.TrainedRun(key, models.build("ResNet18", "CIFAR10"), labels,
                           data.Split(images, true), data.Split(images, true), provenance)


def test_every_readout_reads_resnet_batchnorm_per_image_unless_told_otherwise(tmp_path,
                                                                              monkeypatch):
    """Settings(), Reader, the sweep's MASC job, experiments, retrain and noise.detect build
    their Reader with per-image BatchNorm by default; eval-mode BatchNorm only when asked."""
    trained = untrained_resnet_run(tmp_path)
    seen = per_image_readers(monkeypatch)
    monkeypatch.setattr(runs, "load_run", lambda *args, **kwargs: trained)  # the sweep's job
    monkeypatch.setattr(noise, "_cleanlab", lambda: None)  # an optional dependency, not used here
    quiet = dict(log=lambda *_: None)
    defaults = {
        "Settings()": lambda: readout.Settings().reader(trained.net, "CIFAR10"),
        "Reader": lambda: readout.Reader(trained.net, "CIFAR10"),
        "sweep.Masc": lambda: sweep.Masc()(dict(out=str(tmp_path), dataset="CIFAR10",
                                                model="ResNet18", corrupt=0.8, run=1), [1, 2],
                                           None, {"device": "cpu"}, 0.99),
        "experiments": lambda: experiments.masc_experiments(trained, [1, 2], **quiet),
        "retrain": lambda: retrain.retrain(trained, **quiet),
        "noise.detect": lambda: noise.detect(trained, **quiet)}
    eval_bn = readout.Settings(per_sample_bn=False)
    asked = {
        "Settings": lambda: eval_bn.reader(trained.net, "CIFAR10"),
        "Reader": lambda: readout.Reader(trained.net, "CIFAR10", per_sample_bn=False),
        "experiments": lambda: experiments.masc_experiments(trained, [1], readout=eval_bn, **quiet)}
    wrong = []
    for cases, per_image in ((defaults, True), (asked, False)):
        for name, read_out in cases.items():
            with pytest.raises(ReaderBuilt):
                read_out()
            if seen.pop() != per_image:
                wrong.append(f"{name} ({'by default' if per_image else 'told otherwise'})")
    assert not wrong, f"read out with the other BatchNorm: {', '.join(wrong)}"


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
@pytest.mark.slow  # trains an MLP on real MNIST
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
    reference = pd.read_csv(results.RunKey(tmp_path, "MNIST", "MLP", 0.6, 1).accuracy_csv)
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
    monkeypatch.setattr(training, "stop_rule", lambda model, dataset, stop_on=None: ("post-epoch", 50.0))
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
