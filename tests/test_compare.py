"""Compare_experiments: the ResNet-18 path on generated CIFAR-10 files, probes and sensitivity scripts,
the plots and the summary table."""
import math

import pandas as pd
import pytest

from conftest import requires_mnist, script, write_cifar
from MASC import plots, training


@pytest.mark.slow
def test_resnet18_backbone_path(tmp_path, capsys):
    root, out = tmp_path / "data", tmp_path / "out"
    write_cifar(root, train_per_file=4, test_size=10)
    common = ["-corr", "0.0", "-run", "1", "--data", str(root), "--out", str(out), "--device", "cpu"]
    script("Compare_experiments/Modern_backbones/train_resnet18.py").main(common + ["--epochs", "1"])
    script("Compare_experiments/Modern_backbones/masc_resnet18.py").main(common + ["--batch", "10"])
    for exp, labels in ((1, "corrupted"), (2, "original")):
        table = pd.read_csv(out / "results/masc/CIFAR10_ResNet18/0.0" / f"Run_1_exp{exp}.csv")
        assert table.layer.tolist() == ["l0", "l0_1", "l0_2", "l0_3", "l1", "l2", "l3", "l4", "bf_last"]
        assert (table.subspaces_from == labels).all() and table.test_acc.between(0, 1).all()
        assert (table.fit_seconds > 0).all() and (table.predict_seconds > 0).all()
    assert "bf_last" in capsys.readouterr().out


def test_missing_cifar_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        script("Compare_experiments/Modern_backbones/train_resnet18.py").main(
            ["-corr", "0.0", "-run", "1", "--data", str(tmp_path), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "python -m MASC.data fetch CIFAR10" in err


@requires_mnist
@pytest.mark.slow
def test_probe_and_sensitivity_scripts_on_a_small_cnn(tmp_path, data_root):
    runs = [training.Run("MNIST", "CNN", 0.8, r, seed=r) for r in (1, 2)]
    training.train(runs, out=tmp_path, root=data_root, device="cpu", epochs=1, subset=300,
                   test_subset=100, progress=False, log=lambda *_: None)
    common = ["-corr", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run", "1", "--out", str(tmp_path),
              "--data", str(data_root), "--device", "cpu", "--test-subset", "200", "--layers", "fc3"]
    probe_layers = script("Compare_experiments/stronger_baselines/probe_layers.py")
    probe_layers.main(common)
    path = tmp_path / "results/probes/MNIST_CNN/0.8/Run_1.csv"
    first = pd.read_csv(path)
    assert len(first) == 2 * 6 and set(first.probe) == {"MASC", "LogReg", "NCM", "kNN", "LDA", "QDA"}
    assert list(first.columns[:9]) == ["dataset", "model", "corrupt", "run", "seed", "probe",
                                       "labels_from", "layer", "dim"]
    assert (first.seed == 1).all() and first.test_acc.between(0, 1).all() and (first.n_test == 200).all()
    assert (first.fit_flops[first.probe != "kNN"] > 0).all() and (first.predict_flops > 0).all()
    probe_layers.main(common + ["--probes", "NCM", "--labels", "original"])  # reruns only those rows
    again = pd.read_csv(path)
    assert len(again) == len(first) and again.iloc[-1].probe == "NCM"

    sensitivity = script("Compare_experiments/sensitivity_ablation_studies/sensitivity.py")
    sensitivity.main(common + ["--thresholds", "0.5", "1"])
    summary = pd.read_csv(tmp_path / "results/sensitivity/MNIST_CNN/summary.csv")
    assert sorted(summary.threshold.unique()) == [0.5, 1.0] and (summary.n_runs == 1).all()
    assert summary.ci_low.isna().all()  # one seed: no interval
    sensitivity.main([*common[:7], "1", "2", *common[8:], "--thresholds", "0.5", "1"])  # two runs
    summary = pd.read_csv(tmp_path / "results/sensitivity/MNIST_CNN/summary.csv")
    assert (summary.n_runs == 2).all() and summary.ci_low.notna().all()


def test_t_interval_summary():
    frame = pd.DataFrame({"layer": ["a", "a", "b", "b", "b"], "test_acc": [0.5, 0.7, 0.2, 0.4, 0.6]})
    s = plots.t_summary(frame, ["layer"]).set_index("layer")
    assert s.loc["a", "mean"] == pytest.approx(0.6) and s.loc["a", "sd"] == pytest.approx(0.1 * math.sqrt(2))
    assert s.loc["a", "ci_high"] == pytest.approx(0.6 + 12.7062047 * 0.1)  # t(0.975, 1) * sd / sqrt(2)
    assert s.loc["b", "ci_low"] == pytest.approx(0.4 - 4.3026527 * 0.2 / math.sqrt(3))


def write_results(out):
    """Hand-made CSVs: probes for two runs at p = 0.8, MASC-script rows at p = 0.4, histories."""
    rows = []
    for run, shift in ((1, 0.0), (2, 0.1)):
        for layer, base in (("flattern", 0.5), ("fc1", 0.7), ("fc3", 0.3)):
            for probe, bonus in (("MASC", 0.0), ("NCM", 0.05)):
                for labels, extra in (("corrupted", 0.0), ("original", 0.2)):
                    rows.append({"dataset": "MNIST", "model": "CNN", "corrupt": 0.8, "run": run,
                                 "seed": run, "probe": probe, "labels_from": labels, "layer": layer,
                                 "dim": 250, "n_train": 100, "n_test": 50,
                                 "test_acc": base + shift + bonus + extra, "model_test_acc": 0.2 + shift,
                                 "fit_seconds": 0.1, "predict_seconds": 0.01, "fit_flops": 1e6,
                                 "predict_flops": 1e5, "notes": ""})
    probes_csv = out / "results/probes/MNIST_CNN/0.8"
    probes_csv.mkdir(parents=True)
    frame = pd.DataFrame(rows)
    for run in (1, 2):
        frame[frame.run == run].to_csv(probes_csv / f"Run_{run}.csv", index=False)
    masc = out / "results/masc/MNIST_CNN/0.4"
    masc.mkdir(parents=True)
    for exp, labels, acc in ((1, "corrupted", [0.6, 0.65]), (2, "original", [0.8, 0.75])):
        pd.DataFrame({"dataset": "MNIST", "model": "CNN", "corrupt": 0.4, "run": 1, "exp": exp,
                      "subspaces_from": labels, "layer": ["fc1", "fc2"], "test_acc": acc,
                      "model_test_acc": 0.45, "fit_seconds": 1.0, "predict_seconds": 0.5}) \
            .to_csv(masc / f"Run_1_exp{exp}.csv", index=False)
    history = out / "results/training/MNIST_CNN"
    history.mkdir(parents=True)
    for p, run, accs in ((0.8, 1, [0.3, 0.9, 0.2]), (0.8, 2, [0.5, 0.7, 0.3]), (0.4, 1, [0.6, 0.5])):
        pd.DataFrame({"dataset": "MNIST", "model": "CNN", "corrupt": p, "run": run, "seed": run,
                      "epoch": range(1, len(accs) + 1), "train_acc_vs_corrupted": 0.5, "test_acc": accs}) \
            .to_csv(history / f"{p}_Run_{run}.csv", index=False)
    sens = out / "results/sensitivity/MNIST_CNN"
    sens.mkdir(parents=True)
    pd.DataFrame({"dataset": "MNIST", "model": "CNN", "corrupt": 0.8, "labels_from": "corrupted",
                  "threshold": [0.25, 0.25, 1.0, 1.0], "layer": ["fc1", "fc3"] * 2, "n_runs": 2,
                  "mean": [0.5, 0.4, 0.6, 0.3], "sd": 0.05, "ci_low": [0.4, 0.3, 0.5, 0.2],
                  "ci_high": [0.6, 0.5, 0.7, 0.4], "model_test_acc": 0.25}) \
        .to_csv(sens / "summary.csv", index=False)


def test_summary_table_numbers(tmp_path):
    write_results(tmp_path)
    table = plots.summary_table(plots.load_accuracy(tmp_path), tmp_path).set_index("corrupt")
    high = table.loc[0.8]  # runs 1, 2: fc1 best, mean of (0.7, 0.8) corrupted and (0.9, 1.0) true
    assert high.n_runs == 2 and high.masc_corrupted_layer == "fc1" and high.masc_original_layer == "fc1"
    assert high.masc_corrupted_best == pytest.approx(0.75) and high.masc_original_best == pytest.approx(0.95)
    assert high.model_test_acc == pytest.approx(0.25)
    assert high.model_best_epoch_test_acc == pytest.approx((0.9 + 0.7) / 2)
    low = table.loc[0.4]  # from the MASC script's CSVs
    assert (low.masc_corrupted_best, low.masc_corrupted_layer) == (0.65, "fc2")
    assert (low.masc_original_best, low.masc_original_layer, low.model_best_epoch_test_acc) == (0.8, "fc1", 0.6)
    assert "| CNN | MNIST | 0.8 | 2 | 25.0 | 80.0 | 75.0 (fc1) | 95.0 (fc1) |" in plots.markdown(table.reset_index())


@pytest.mark.slow
def test_plotting_scripts_write_every_figure(tmp_path, capsys):
    write_results(tmp_path)
    folder = tmp_path / "plots"
    script("Compare_experiments/plotting/make_plots.py").main(["--out", str(tmp_path), "--plots", str(folder)])
    names = {p.name for p in folder.iterdir()}
    for kind in ("ACCURACY", "COST", "SENSITIVITY"):
        assert {f"{kind}_MNIST_CNN.png", f"{kind}_MNIST_CNN.pdf"} <= names
    assert {"table_values.csv", "table_values.md"} <= names
    assert "95.0 (fc1)" in capsys.readouterr().out


def test_plotting_without_results_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        script("Compare_experiments/plotting/make_plots.py").main(["--out", str(tmp_path)])
    assert "no result CSVs" in capsys.readouterr().err
