"""paper/compare.py: the right cells, the right arithmetic, missing cells reported, same bytes."""
import importlib.util

import pandas as pd
import pytest
import torch

from conftest import ROOT, requires_mnist

spec = importlib.util.spec_from_file_location("compare", ROOT / "paper" / "compare.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def write_training(out, dataset, model, p, run, tests, train_final, **settings):
    """A training CSV as training writes it, at the paper's settings unless ``settings``."""
    folder = out / "results" / "training" / f"{dataset}_{model}"
    folder.mkdir(parents=True, exist_ok=True)
    n = len(tests)
    pd.DataFrame({"dataset": dataset, "model": model, "corrupt": p, "run": run, "seed": run,
                  "epoch": range(1, n + 1), "train_acc_vs_corrupted": [0.5] * (n - 1) + [train_final],
                  "train_acc_vs_true": float("nan"), "test_acc": tests, "train_acc_rule": "running",
                  "finished": True, **compare.paper_settings(dataset, model), "epochs_trained": n,
                  **settings}
                 ).to_csv(folder / f"{p}_Run_{run}.csv", index=False)


def write_masc(out, dataset, model, p, run, exp, accs, **settings):
    folder = out / "results" / "masc" / f"{dataset}_{model}" / str(p)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"dataset": dataset, "model": model, "corrupt": p, "run": run, "exp": exp,
                  "subspaces_from": "corrupted" if exp != 2 else "original",
                  "layer": list(accs), "test_acc": list(accs.values()), "model_test_acc": 0.28,
                  **settings}
                 ).to_csv(folder / f"Run_{run}_exp{exp}.csv", index=False)


@pytest.fixture
def out(tmp_path):
    write_training(tmp_path, "MNIST", "CNN", 0.8, 1, [0.5, 0.9, 0.30], 0.95)
    write_training(tmp_path, "MNIST", "CNN", 0.8, 2, [0.5, 0.7, 0.26, 0.25], 0.97)
    # mean per layer: input 0.40, flattern 0.85, fc1 0.85 (tie: flattern comes first)
    write_masc(tmp_path, "MNIST", "CNN", 0.8, 1, 1, {"input": 0.4, "flattern": 0.8, "fc1": 0.9})
    write_masc(tmp_path, "MNIST", "CNN", 0.8, 2, 1, {"input": 0.4, "flattern": 0.9, "fc1": 0.8})
    write_masc(tmp_path, "MNIST", "CNN", 0.8, 1, 2, {"input": 0.9, "flattern": 0.95, "fc1": 0.9})
    return tmp_path


def table(out):
    summary = compare.summarise(compare.per_run(out)[0])
    return compare.comparison(summary, pd.read_csv(compare.PAPER)).set_index("quantity"), summary


def test_arithmetic_against_the_paper(out):
    t, _ = table(out)
    assert t.loc["test_acc_final", "ours"] == pytest.approx(27.5)  # (30 + 25) / 2
    assert (t.loc["test_acc_final", "ours_min"], t.loc["test_acc_final", "ours_max"]) == \
        pytest.approx((25.0, 30.0))
    assert t.loc["test_acc_final", "paper"] == 28.30
    assert t.loc["test_acc_final", "diff"] == pytest.approx(27.5 - 28.30)
    assert t.loc["test_acc_peak", "ours"] == pytest.approx(80.0) and t.loc["test_acc_peak", "paper"] == 96.2
    assert t.loc["epochs", "ours"] == pytest.approx(3.5) and t.loc["epochs", "paper"] == 500
    assert t.loc["train_acc_final", "ours"] == pytest.approx(96.0)
    assert t.loc["masc_best_exp1", "ours_layer"] == "flattern"
    assert t.loc["masc_best_exp1", "ours"] == pytest.approx(85.0)
    assert t.loc["masc_best_exp1", "paper"] == 83.9
    assert t.loc["masc_best_exp1", "n"] == 2
    assert t.loc["masc_best_exp2", "ours"] == pytest.approx(95.0)
    assert t.loc["masc_best_exp2", "n"] == 1
    assert pd.isna(t.loc["masc_best_exp2", "paper"])  # the paper gives it for ResNet only


def test_each_experiment_gets_its_own_best_layer(tmp_path):
    """exp1, exp2 and exp3 peak at different layers; each row reports its own (means by hand)."""
    for p, run in ((0.8, 1), (0.8, 2), (0.0, 1)):  # the weights read, at the paper's settings
        write_training(tmp_path, "MNIST", "CNN", p, run, [0.5, 0.3], 0.95)
    write_masc(tmp_path, "MNIST", "CNN", 0.8, 1, 1, {"input": 0.40, "flattern": 0.70, "fc1": 0.90})
    write_masc(tmp_path, "MNIST", "CNN", 0.8, 2, 1, {"input": 0.50, "flattern": 0.80, "fc1": 0.84})
    write_masc(tmp_path, "MNIST", "CNN", 0.8, 1, 2, {"input": 0.90, "flattern": 0.96, "fc1": 0.92})
    write_masc(tmp_path, "MNIST", "CNN", 0.8, 2, 2, {"input": 0.88, "flattern": 0.94, "fc1": 0.95})
    write_masc(tmp_path, "MNIST", "CNN", 0.8, 1, 3, {"input": 0.99, "flattern": 0.50, "fc1": 0.60})
    t, _ = table(tmp_path)
    nan = float("nan")
    expected = pd.DataFrame(  # means: exp1 45 75 87, exp2 89 95 93.5, exp3 99 50 60
        [("masc_best_exp1", 87.0, 84.0, 90.0, 2, "fc1", 83.9, 87.0 - 83.9),
         ("masc_best_exp2", 95.0, 94.0, 96.0, 2, "flattern", nan, nan),
         ("masc_best_exp3", 99.0, 99.0, 99.0, 1, "input", nan, nan)],
        columns=["quantity", "ours", "ours_min", "ours_max", "n", "ours_layer", "paper", "diff"])
    best = t.reset_index().query("quantity.str.startswith('masc_best')", engine="python")
    pd.testing.assert_frame_equal(best[expected.columns].reset_index(drop=True), expected,
                                  check_dtype=False)


def test_runs_still_training_count_nowhere_but_their_own_list(out, tmp_path):
    write_training(out, "MNIST", "CNN", 0.8, 3, [0.9, 0.95], 0.5)
    tidy = out / "results" / "training" / "MNIST_CNN" / "0.8_Run_3.csv"
    pd.read_csv(tidy).drop(columns="finished").to_csv(tidy, index=False)  # an older CSV
    t, _ = table(out)
    assert t.loc["test_acc_final", "n"] == 2 and t.loc["test_acc_final", "ours"] == pytest.approx(27.5)
    report = tmp_path / "r.md"
    compare.main(["--out", str(out), "--report", str(report), "--figure", str(tmp_path / "f.png")])
    assert "- CNN / MNIST p = 0.8 run 3: 2 epochs so far, train accuracy 50.00%, test 95.0%" \
        in report.read_text()


def test_missing_cells_are_listed_not_invented(out):
    _, summary = table(out)
    missing = compare.not_run(pd.read_csv(compare.PAPER), summary)
    assert ("MNIST", "CNN", 0.8) not in [tuple(m) for m in missing]
    assert ("MNIST", "MLP", 0.8) in [tuple(m) for m in missing]
    assert ("CIFAR10", "ResNet18", 0.4) in [tuple(m) for m in missing]


def test_report_is_deterministic_and_says_what_is_missing(out, tmp_path):
    first, second = tmp_path / "a.md", tmp_path / "b.md"
    compare.main(["--out", str(out), "--report", str(first), "--figure", str(tmp_path / "f.png")])
    compare.main(["--out", str(out), "--report", str(second), "--figure", str(tmp_path / "g.png")])
    text = first.read_text()
    assert text == second.read_text()
    assert "| MNIST | CNN | 0.8 | network, final test accuracy | 28.3 | 27.5 [25.0-30.0] | 2 | -0.8 |" in text
    assert "| epochs trained | 500 | 3.5 [3-4] | 2 | -496.5 |" in text
    assert "83.9 | 85.0 [80.0-90.0] (flattern) | 2 | +1.1 |" in text
    assert "- MLP / MNIST: p = 0.0, 0.2, 0.4, 0.6, 0.8, 1.0" in text
    assert (tmp_path / "f.png").stat().st_size > 0


def test_refuses_a_root_without_results(tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare.main(["--out", str(tmp_path), "--report", str(tmp_path / "r.md")])
    assert "error: no results/ folder" in capsys.readouterr().err


def training_csv(out, p=0.8, run=1):
    return out / "results" / "training" / "MNIST_CNN" / f"{p}_Run_{run}.csv"


def refused(out, tmp_path, capsys):
    """compare.main's one error line (the report is not written)."""
    with pytest.raises(SystemExit) as stop:
        compare.main(["--out", str(out), "--report", str(tmp_path / "r.md"), "--figure",
                      str(tmp_path / "f.png")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r.md").exists()
    return err


@pytest.mark.parametrize("damage, message", [
    (lambda t: t[:t.rindex("\n", 0, -1) + 1], "has 2 epochs but not epochs 1 to 3"),  # line end
    (lambda t: t[:-30], "has rows with missing values"),  # cut mid-row: a finished run looked unfinished
    (lambda t: t.replace("0.3,running", "nan,running"), "has rows with missing values"),  # NaN accuracy
    (lambda t: "", "is empty"),
    (lambda t: t.replace("test_acc", "tset_acc"), "lacks test_acc")])
def test_a_damaged_training_csv_is_refused(out, tmp_path, capsys, damage, message):
    """Case 7 and its tracebacks: a CSV cut at a line end reported fewer epochs as final, one cut
    mid-row made a finished run 'still training ... nan%', a NaN final accuracy was printed in
    the paper's column; an empty CSV or one without test_acc was a traceback."""
    path = training_csv(out)
    path.write_text(damage(path.read_text()))
    assert message in refused(out, tmp_path, capsys)


def test_a_copied_or_cut_masc_csv_is_refused(out, tmp_path, capsys):
    """Case 7: a MASC CSV copied to another run's name counted one run twice; one whose last
    row is cut was a traceback."""
    folder = out / "results" / "masc" / "MNIST_CNN" / "0.8"
    (folder / "Run_3_exp1.csv").write_bytes((folder / "Run_1_exp1.csv").read_bytes())
    assert "holds rows of another run (run ['1'], its name says 3)" in refused(out, tmp_path, capsys)
    (folder / "Run_3_exp1.csv").unlink()
    path = folder / "Run_2_exp1.csv"
    path.write_text(path.read_text()[:-12])
    assert "has rows with missing values" in refused(out, tmp_path, capsys)


def test_results_of_other_settings_are_never_set_beside_the_papers(out, tmp_path):
    """Case 3 and 7: a 300-image, 8-epoch run was set beside the paper's full-scale numbers, and
    the best layer was picked across rows of other thresholds; now they are summarised apart,
    saying how they differ."""
    write_training(out, "MNIST", "CNN", 0.4, 1, [0.5, 0.6], 0.9, subset=300, epoch_cap=8)
    write_masc(out, "MNIST", "CNN", 0.4, 1, 1, {"fc1": 0.9})
    masc = out / "results" / "masc" / "MNIST_CNN" / "0.8" / "Run_1_exp1.csv"
    frame = pd.read_csv(masc)
    pd.concat([frame.assign(threshold=0.99), frame.assign(threshold=0.5, test_acc=0.99)]).to_csv(
        masc, index=False)
    t, summary = table(out)
    assert t.loc["masc_best_exp1", "ours"] == pytest.approx(85.0)  # as before: 0.99 rows only
    assert ("MNIST", "CNN", 0.4) not in set(map(tuple, t.reset_index()[["dataset", "model",
                                                                        "corrupt"]].values))
    apart = compare.apart(summary)
    assert set(apart.differs) == {"subset 300, epoch_cap 8", "threshold 0.5"}
    report = tmp_path / "r.md"
    compare.main(["--out", str(out), "--report", str(report), "--figure", str(tmp_path / "f.png")])
    text = report.read_text()
    assert "## Not at the paper's settings (not compared)" in text
    assert "| MNIST | CNN | 0.4 | subset 300, epoch_cap 8 | network, final test accuracy | 60.0 | 1 |" in text
    assert "- CNN / MNIST: p = 0.0, 0.2, 0.4, 0.6, 1.0" in text  # 0.4 is not run at full scale


def test_old_result_csvs_without_settings_still_load(out, tmp_path):
    """CSVs written before the settings columns load: their settings come from the run's
    progress.pt, or OUT/provenance.csv's record of a full-scale run, else they are 'settings not
    recorded' and not compared."""
    from MASC import training

    path = training_csv(out)
    old = pd.read_csv(path).drop(columns=[*compare.TRAINED, "epochs_trained"])
    old.to_csv(path, index=False)
    t, summary = table(out)
    assert t.loc["test_acc_final", "n"] == 1  # run 1 stands apart
    assert set(compare.apart(summary).differs) == {"settings not recorded"}
    key = compare.results.RunKey(out, "MNIST", "CNN", 0.8, 1)
    key.folder.mkdir(parents=True)
    schedule = training.Schedule()
    torch.save({"config": schedule.config(schedule.run("MNIST", "CNN", 0.8, 1))}, key.progress)
    assert table(out)[0].loc["test_acc_final", "n"] == 2
    key.progress.unlink()
    (out / "provenance.csv").write_text("cell,stage\nCNN / MNIST p = 0.8 run 1,training\n")
    assert table(out)[0].loc["test_acc_final", "n"] == 2


def test_the_report_goes_into_a_new_folder(out, tmp_path):
    """Traceback: --report into a missing folder."""
    report = tmp_path / "new" / "folder" / "r.md"
    compare.main(["--out", str(out), "--report", str(report), "--figure",
                  str(tmp_path / "new" / "f.png")])
    assert report.exists()


def test_headline_table_is_well_formed():
    paper = pd.read_csv(compare.PAPER)
    assert list(paper.columns) == ["section", "dataset", "model", "corrupt", "quantity",
                                   "subspaces_from", "layer", "value", "min", "max", "note"]
    assert not paper.duplicated(["section", "dataset", "model", "corrupt", "quantity",
                                 "subspaces_from", "layer", "note"]).any()
    epochs = paper[paper.quantity == "epochs"]
    assert (epochs["min"] <= epochs.value).all() and (epochs.value <= epochs["max"]).all()
    assert len(paper[(paper.section == "12.1") & (paper.quantity == "test_acc_final")]) == 42


def test_committed_report_regenerates_byte_for_byte(tmp_path):
    if not (compare.OUT / "results").is_dir():
        pytest.skip("no committed full-scale results yet")
    report = tmp_path / "RESULTS.md"
    compare.main(["--report", str(report), "--figure", str(tmp_path / "f.png")])
    assert report.read_bytes() == compare.REPORT.read_bytes()


@requires_mnist
@pytest.mark.slow
def test_end_to_end_on_tiny_real_runs(tmp_path, data_root):
    """Train two tiny runs and read them out with the real scripts, then compare."""
    import pytorch_MASC_all
    import pytorch_training

    common = ["-model", "CNN", "-dataset", "MNIST", "--out", str(tmp_path), "--data",
              str(data_root), "--subset", "200", "--device", "cpu"]
    pytorch_training.main(["-corr", "0.8", "-run", "1", "2", "--epochs", "2",
                           "--test-subset", "300", *common])
    for run in ("1", "2"):
        pytorch_MASC_all.main(["-corr", "0.8", "-run", run, "-exp1", "True",
                               "--layers", "fc1", "fc2", *common])
    t, summary = table(tmp_path)
    assert t.empty  # 200 images, 2 epochs: never beside the paper's numbers
    apart = compare.apart(summary).set_index("quantity")
    assert set(apart.differs) == {"subset 200, n_test 300, epoch_cap 2"}
    assert apart.loc["epochs", "mean"] == 2 and apart.loc["masc_best_exp1", "n"] == 2
    assert apart.loc["masc_best_exp1", "layer"] in ("fc1", "fc2")
    assert "masc_best_exp2" not in apart.index  # not run: not reported
