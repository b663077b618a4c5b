"""The random-init control and the read-out by module names on the paper's pipeline; the new
columns of the MASC CSVs (network, changed_labels) keep older CSVs readable."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch

import pytorch_MASC_all
from conftest import requires_mnist
from MASC import data, experiments, plots, results, runs, training

SEED = 7  # runs train with seed SEED + run, so the run's seed is not its index


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """A CNN trained for one epoch on 200 MNIST images at p = 0.8 (seed 8), and the weights
    training started from, as the engine built them."""
    out = tmp_path_factory.mktemp("control")
    started, real_init = [], training.Trainer.__init__

    def init(self, runs_, nets, *args, **kwargs):
        started.extend(copy.deepcopy(net.state_dict()) for net in nets)
        real_init(self, runs_, nets, *args, **kwargs)

    training.Trainer.__init__ = init
    try:
        training.train([training.Run("MNIST", "CNN", 0.8, 1, seed=SEED + 1)], out=out,
                       root=data_root, device="cpu", epochs=1, subset=200, test_subset=100,
                       progress=False, log=lambda *_: None)
    finally:
        training.Trainer.__init__ = real_init
    return out, started[0]


def masc_all(out, data_root, *flags):
    pytorch_MASC_all.main(["-corr", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run", "1",
                           "--out", str(out), "--data", str(data_root), "--device", "cpu", *flags])


@requires_mnist
@pytest.mark.slow  # trains a model
def test_the_control_is_the_network_training_started_from(trained, data_root):
    """The run's initial weights are rebuilt exactly from its saved seed (break: seed the control
    with the run index, or build it before seeding)."""
    out, started = trained
    run = runs.load_run(out, "MNIST", "CNN", 0.8, 1, root=data_root)
    assert run.seed == SEED + 1
    initial = run.initial_network().state_dict()
    assert list(initial) == list(started)
    assert all(torch.equal(initial[k], started[k]) for k in started)
    assert not torch.equal(run.net.state_dict()["fc3.weight"], started["fc3.weight"])  # trained
    assert not torch.equal(run.initial_network(seed=0).state_dict()["fc3.weight"],
                           started["fc3.weight"])


@requires_mnist
@pytest.mark.slow  # reads a real CNN out five times over
def test_module_names_give_the_short_names_csv_and_the_control_adds_rows(trained, data_root,
                                                                         monkeypatch):
    """pytorch_MASC_all.py by module names writes exactly the rows its short names write (but the
    layer's name and the timings); --control random-init adds the untrained network's rows, the
    realised share of changed labels stands beside p, the environment in columns of its own."""
    out, _ = trained
    real = data.load
    monkeypatch.setattr(data, "load", lambda name, root=None, train=True:
                        real(name, root, train).first(None if train else 300))
    taps = {"input": "input", "flattern": "flatten", "fc1": "relu_fc1", "fc2": "relu_fc2",
            "fc3": "relu_fc3"}
    csvs = {exp: results.masc_csv(out, "MNIST", "CNN", 0.8, 1, exp) for exp in (1, 2)}
    masc_all(out, data_root, "-exp1", "True", "-exp2", "True")
    by_short = {exp: pd.read_csv(csv) for exp, csv in csvs.items()}
    masc_all(out, data_root, "-exp1", "True", "-exp2", "True", "--layers", *taps.values(),
             "--control", "random-init")
    timings = ["fit_seconds", "predict_seconds"]
    for exp, csv in csvs.items():
        table = pd.read_csv(csv)
        module = table[(table.network == "trained") & table.layer.isin(list(taps.values()))]
        module = module.assign(layer=module.layer.map({v: k for k, v in taps.items()}))
        pd.testing.assert_frame_equal(by_short[exp].drop(columns=timings),
                                      module.drop(columns=timings).reset_index(drop=True))
        control = table[table.network == "random-init"]
        assert list(control.layer) == list(taps.values())
        assert not np.allclose(control.test_acc.values, module.test_acc.values)
        labels = runs.load_run(out, "MNIST", "CNN", 0.8, 1, root=data_root).labels
        assert table.changed_labels.eq(np.mean(labels.corrupted != labels.true)).all()
        assert 0.6 < table.changed_labels.iloc[0] < 0.8  # about p x (1 - 1/10)
        assert table.torch.eq(torch.__version__).all() and table.commit.notna().all()
        assert control.init_seed.eq(SEED + 1).all() and table[table.network == "trained"] \
            .init_seed.isna().all()
        per_class = pd.read_csv(results.masc_csv(out, "MNIST", "CNN", 0.8, 1, exp, True))
        assert len(per_class) == 3 * 5 * 10 - 10  # (short, module, control) x layers x classes,
        # input is a short name and a module name: one row per class


def test_older_csvs_without_the_new_columns_merge_and_plot(tmp_path):
    """A MASC CSV written before the control (no network, no changed_labels) keeps its rows as the
    trained network's when new rows merge in, and the figure draws the control dashed, the
    network's own accuracy from the trained network only (break: merge on a key older files
    lack, or average the control's network accuracy in)."""
    csv = results.masc_csv(tmp_path, "MNIST", "CNN", 0.8, 1, 1)
    old = pd.DataFrame({"dataset": "MNIST", "model": "CNN", "corrupt": 0.8, "run": 1, "exp": 1,
                        "subspaces_from": "corrupted", "layer": ["fc1", "fc2"],
                        "test_acc": [0.5, 0.6], "model_test_acc": 0.3})
    results.write_csv(old, csv)
    new = old.assign(network="random-init", test_acc=[0.2, 0.25], model_test_acc=0.1,
                     changed_labels=0.72, threshold=0.99, n_train=200, n_test=100,
                     per_sample_bn=True)
    results.merge_csv(new, csv, experiments.MERGE_KEYS, fill=experiments.NETWORK)
    table = pd.read_csv(csv)
    assert list(table.network) == ["trained", "trained", "random-init", "random-init"]
    assert table.test_acc.tolist() == [0.5, 0.6, 0.2, 0.25]
    acc = plots.load_accuracy(tmp_path)
    assert set(acc.probe) == {"MASC", plots.CONTROL}
    fig = plots.accuracy_figure(acc.iloc[::-1], "MNIST", "CNN")  # the control's rows first
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert lines[plots.CONTROL].get_linestyle() == "--" and lines["MASC"].get_linestyle() == "-"
    assert list(lines[plots.CONTROL].get_ydata()) == [0.2, 0.25]
    assert lines["network (final)"].get_ydata()[0] == 0.3
    assert plots.summary_table(acc, tmp_path).masc_corrupted_best[0] == 0.6  # control not counted
