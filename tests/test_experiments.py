"""pytorch_MASC_all.py end to end on tiny trained models (real MNIST)."""
import pandas as pd
import pytest
import torch

import pytorch_MASC_all
from conftest import cut_test_set, requires_mnist
from MASC import results, runs
from MASC.errors import MASCError

pytestmark = [requires_mnist, pytest.mark.slow]  # trains models
COLUMNS = ["dataset", "model", "corrupt", "run", "exp", "subspaces_from", "layer", "dim", "k_min",
           "k_mean", "k_max", "train_acc_vs_corrupted", "train_acc_vs_true", "test_acc",
           "model_test_acc", "threshold", "n_train", "fit_seconds", "predict_seconds",
           "n_test", "per_sample_bn", "seed", "label_seed", "subset", "holdout", "checkpoint_epoch"]


@pytest.fixture
def trained(tmp_path, monkeypatch, tiny_runs):
    """CNNs trained for one epoch on 400 MNIST images at p = 0.0 and 0.8; a 300-image test set."""
    cut_test_set(monkeypatch, 300)
    return tiny_runs(tmp_path, (0.0, 0.8), subset=400, test_subset=300)


def masc_all(out, *flags):
    pytorch_MASC_all.main(["-corr", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run", "1",
                           "--out", str(out), "--device", "cpu", *flags])


def test_exp1_exp2_tidy_and_reference_files(trained, capsys):
    masc_all(trained, "-exp1", "True", "-exp2", "true")
    assert "model_test_acc" in capsys.readouterr().out
    exp1 = pd.read_csv(results.masc_csv(trained, "MNIST", "CNN", 0.8, 1, 1))
    exp2 = pd.read_csv(results.masc_csv(trained, "MNIST", "CNN", 0.8, 1, 2))
    assert list(exp1.columns) == COLUMNS and list(exp1.layer) == ["input", "flattern", "fc1", "fc2", "fc3"]
    assert set(exp1.subspaces_from) == {"corrupted"} and set(exp2.subspaces_from) == {"original"}
    assert exp1.n_train.eq(400).all() and exp1.dim.tolist() == [784, 576, 250, 250, 250]
    acc = ["train_acc_vs_corrupted", "train_acc_vs_true", "test_acc", "model_test_acc"]
    assert exp1[acc].stack().between(0, 1).all()
    # true-label subspaces fit the true labels better; at the input (40 images a class, 784-d)
    # each class's subspace holds its own training images, so MASC repeats the labels it was given
    assert (exp2.train_acc_vs_true.values > exp1.train_acc_vs_true.values).all()
    assert exp1.train_acc_vs_corrupted[0] > 0.95 and exp2.train_acc_vs_true[0] > 0.95
    files = results.RunKey(trained, "MNIST", "CNN", 0.8, 1).reference_masc_files(1, "fc1")
    one = lambda path: pd.read_csv(path, index_col=0).acc_overall[0]  # noqa: E731
    fc1, fc1_exp2 = exp1.set_index("layer").loc["fc1"], exp2.set_index("layer").loc["fc1"]
    assert one(files["test"]) == fc1.test_acc
    assert one(files["train_vs_corrupted"]) == fc1.train_acc_vs_corrupted  # angle_results/*_train
    assert one(files["train_vs_true"]) == fc1.train_acc_vs_true  # angle_results_exp2/*_train
    assert "angle_results_exp2" in files["train_vs_true"].parts
    exp2_files = results.RunKey(trained, "MNIST", "CNN", 0.8, 1).reference_masc_files(2, "fc1")
    assert one(exp2_files["train_vs_true"]) == fc1_exp2.train_acc_vs_true
    assert one(exp2_files["test"]) == fc1_exp2.test_acc
    assert fc1.train_acc_vs_corrupted != fc1.train_acc_vs_true  # the two files differ in content
    assert files["test"].parts[-5:-1] == ("results_0.8", "angle_results", "Run_1", "cor_label")
    pca = pd.read_csv(files["pca"], index_col=0)
    assert len(pca) == 10 and pca.number_pca_components_class.mean() == pytest.approx(exp1.k_mean[2])
    exp2_test = results.RunKey(trained, "MNIST", "CNN", 0.8, 1).reference_masc_files(2, "fc2")["test"]
    assert "angle_results_exp3" in exp2_test.parts  # the reference's name for y*-subspace results
    per_class = pd.read_csv(results.masc_csv(trained, "MNIST", "CNN", 0.8, 1, 1, per_class=True))
    assert len(per_class) == 5 * 10 and per_class.n_test.groupby(per_class.layer).sum().eq(300).all()


def test_exp3_reads_the_clean_model_and_layers_add_up(trained):
    masc_all(trained, "-exp3", "True", "--layers", "fc1")
    masc_all(trained, "-exp3", "True", "--layers", "fc3", "flattern")
    exp3 = pd.read_csv(results.masc_csv(trained, "MNIST", "CNN", 0.8, 1, 3))
    assert sorted(exp3.layer) == ["fc1", "fc3", "flattern"]  # earlier layers are kept
    clean = runs.load_network(trained, "MNIST", "CNN", 0.0, 1)
    memorised = runs.load_network(trained, "MNIST", "CNN", 0.8, 1)
    assert not torch.equal(clean.fc3.weight, memorised.fc3.weight)
    assert results.RunKey(trained, "MNIST", "CNN", 0.8, 1).reference_masc_files(3, "fc1")["test"].exists()
    assert "results_uncorrupted" in results.RunKey(trained, "MNIST", "CNN", 0.8, 1).reference_masc_files(3, "fc1")["test"].parts


def test_missing_and_corrupt_checkpoints_are_clear_errors(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        masc_all(tmp_path / "empty", "-exp1", "True")
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "train it first: python pytorch_training.py -corr 0.8" in error
    checkpoint = results.final_checkpoint(results.run_dir(trained, "MNIST", "CNN", 0.8, 1))
    checkpoint.write_bytes(b"garbage")
    with pytest.raises(MASCError, match="unreadable"):
        runs.load_network(trained, "MNIST", "CNN", 0.8, 1)
    torch.save({"conv1.weight": torch.zeros(1)}, checkpoint)
    with pytest.raises(MASCError, match="does not fit a CNN for MNIST"):
        runs.load_network(trained, "MNIST", "CNN", 0.8, 1)


def test_no_experiment_chosen_is_a_usage_error(trained):
    with pytest.raises(SystemExit) as stop:
        masc_all(trained)
    assert stop.value.code == 2
