"""The fault matrix: bad input and damaged files, thrown at the real scripts as subprocesses.

Every case must end with exit status 2, one ``error:`` line on stderr that names the problem, no
traceback, and every file that existed under the results root before is byte-identical after.
The in-process tests below cover the silent failures that used to give wrong results or lose
rows (each failed before its fix).
"""
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import DATA, ROOT, requires_mnist
from MASC import results, runs
from MASC.corruption import RunLabels
from MASC.errors import MASCError

pytestmark = requires_mnist
RUN = ["-model", "CNN", "-dataset", "MNIST", "-run", "1", "--device", "cpu"]


def train_tiny(out, data_root, corrs=("0.0", "0.8"), *extra):
    import pytorch_training

    pytorch_training.main(["-corr", *corrs, *RUN, "--out", str(out), "--data", str(data_root),
                           "--subset", "300", "--test-subset", "200", "--epochs", "2", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root, tiny_runs):
    """CNNs trained 2 epochs on 300 MNIST images at p = 0.0 and 0.8 (as train_tiny trains them),
    with MASC exp1 results."""
    import pytorch_MASC_all

    out = tiny_runs(tmp_path_factory.mktemp("trained"), (0.0, 0.8), subset=300, epochs=2)
    pytorch_MASC_all.main(["-corr", "0.8", *RUN, "--out", str(out), "--data", str(data_root),
                           "-exp1", "True", "--layers", "fc2", "fc3"])
    return out


def snapshot(folder):
    return {p: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def run_script(script, args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def p08(out):
    return results.run_dir(out, "MNIST", "CNN", 0.8, 1)


def damage(path, how):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if how == "truncate" else b"garbage,\n\x00\x01")


def setup_labels_elsewhere(out):
    shutil.copy(results.run_dir(out, "MNIST", "CNN", 0.0, 1) / "labels.npz", p08(out) / "labels.npz")


def setup_no_labels(out):
    (p08(out) / "labels.npz").unlink()
    (p08(out) / "progress.pt").unlink()


def setup_short_labels(out):
    saved = RunLabels.load(p08(out) / "labels.npz")
    RunLabels(saved.corrupted[:200], saved.true[:200], saved.holdout[:0], saved.corrupt,
              saved.label_seed).save(p08(out) / "labels.npz")


def setup_bad_mnist(out):
    """A data folder whose MNIST train labels are cut short (the image files are links)."""
    raw = out / "baddata" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (DATA / "MNIST" / "raw").iterdir():
        if f.name.endswith("ubyte"):
            (raw / f.name).symlink_to(f.resolve())
    labels = raw / "train-labels-idx1-ubyte"
    data = labels.read_bytes()
    labels.unlink()
    labels.write_bytes(data[:1000])


MASC_ARGS = ["pytorch_MASC_all.py", "-corr", "0.8", *RUN, "-exp1", "True", "--layers", "fc2"]
TRAIN_ARGS = ["pytorch_training.py", "-corr", "0.8", *RUN, "--subset", "300", "--test-subset",
              "200", "--epochs", "2"]
RETRAIN_ARGS = ["pytorch_retrain_early.py", "-corr", "0.8", *RUN, "--max-epochs", "1"]

# (case, argv (script first), setup of a copy of the trained results, what the line must say)
CASES = [
    ("labels of another p", MASC_ARGS, setup_labels_elsewhere, "corrupted at p=0.0, not p=0.8"),
    ("no labels.npz, no progress.pt", MASC_ARGS, setup_no_labels, "no labels.npz or progress.pt"),
    ("labels of another size", MASC_ARGS, setup_short_labels, "has 200 rows but the model was trained on 300"),
    ("truncated labels.npz", MASC_ARGS, lambda o: damage(p08(o) / "labels.npz", "truncate"), "labels.npz is unreadable"),
    ("garbage results CSV", MASC_ARGS,
     lambda o: damage(results.masc_csv(o, "MNIST", "CNN", 0.8, 1, 1), "garbage"), "Run_1_exp1.csv"),
    ("results CSV without its columns", MASC_ARGS,
     lambda o: pd.DataFrame({"a": [1]}).to_csv(results.masc_csv(o, "MNIST", "CNN", 0.8, 1, 1)),
     "lacks the columns subspaces_from, layer"),
    ("corrupt checkpoint", MASC_ARGS, lambda o: damage(p08(o) / "model_1.pth", "truncate"), "model_1.pth is unreadable"),
    ("missing checkpoint", MASC_ARGS, lambda o: (p08(o) / "model_1.pth").unlink(),
     "train it first: python pytorch_training.py -corr 0.8 -model CNN -dataset MNIST -run 1 "
     "--subset 300 --test-subset 200"),
    ("unknown layer", [*MASC_ARGS, "fc9"], None, "no layer 'fc9'"),
    ("no experiment", MASC_ARGS[:-4] + ["--layers", "fc2"], None, "choose at least one experiment"),
    ("negative subset", [*MASC_ARGS, "--subset", "-5"], None, "--subset"),
    ("zero batch", [*MASC_ARGS, "--batch", "0"], None, "--batch"),
    ("unknown device", [*MASC_ARGS, "--device", "nonsense"], None, "--device"),
    ("retrain without checkpoint", RETRAIN_ARGS, lambda o: (p08(o) / "model_1.pth").unlink(), "train it first"),
    ("other settings on resume", [*TRAIN_ARGS[:-2], "--epochs", "3", "--shuffle"], None, "shuffle False (now True)"),
    ("zero epochs", [*TRAIN_ARGS, "--epochs", "0"], None, "--epochs"),
    ("zero save-every", [*TRAIN_ARGS, "--save-every", "0"], None, "--save-every"),
    ("run 0", [a if a != "1" else "0" for a in TRAIN_ARGS], None, "-run"),
    ("hold-out leaving nothing", [*TRAIN_ARGS, "--holdout", "0.999"], None, "leaves none to train on"),
    ("corrupt progress", [*TRAIN_ARGS[:-2], "--epochs", "3"], lambda o: damage(p08(o) / "progress.pt", "truncate"), "progress.pt"),
    ("out is a file", [*TRAIN_ARGS, "--out", "afile"], lambda o: (o / "afile").write_text("x"), "a file of that name is in the way"),
    ("truncated MNIST file", [*TRAIN_ARGS, "--data", "baddata"], setup_bad_mnist, "train-labels-idx1-ubyte is corrupt"),
    ("garbage CSV for the plots", ["Compare_experiments/plotting/make_plots.py", "--plots", "plots"],
     lambda o: damage(results.masc_csv(o, "MNIST", "CNN", 0.8, 1, 1), "garbage"), "Run_1_exp1.csv"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case, argv, setup, message", CASES, ids=[c[0] for c in CASES])
def test_fault_gives_one_line_and_changes_nothing(case, argv, setup, message, trained, tmp_path,
                                                  data_root):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    if setup:
        setup(out)
    before = snapshot(out)
    args = list(argv[1:])
    if "--out" not in args:
        args += ["--out", "."]
    if "--data" not in args and argv[0].startswith("pytorch_"):
        args += ["--data", str(data_root)]
    done = run_script(argv[0], args, cwd=out)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], done.stderr
    after = snapshot(out)
    assert {p: after.get(p) for p in before} == before  # nothing that was there changed


@pytest.mark.slow
def test_a_second_trainer_of_the_same_run_is_refused(trained, tmp_path, data_root):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    with results.lock(p08(out), what="trained"):
        done = run_script(TRAIN_ARGS[0], [*TRAIN_ARGS[1:-2], "--epochs", "3", "--out", out,
                                          "--data", data_root], cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"is being trained by pid {os.getpid()}" in done.stderr


@pytest.mark.slow
def test_missing_labels_are_rebuilt_from_the_saved_progress(trained, tmp_path, data_root):
    """Without labels.npz, MASC fits on the rows and labels the run trained on, as before."""
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    kept = pd.read_csv(results.masc_csv(out, "MNIST", "CNN", 0.8, 1, 1))
    (p08(out) / "labels.npz").unlink()
    import pytorch_MASC_all

    pytorch_MASC_all.main(["-corr", "0.8", *RUN, "--out", str(out), "--data", str(data_root),
                           "-exp1", "True", "--layers", "fc2", "fc3"])
    again = pd.read_csv(results.masc_csv(out, "MNIST", "CNN", 0.8, 1, 1))
    assert again.n_train.eq(300).all()
    cols = ["layer", "k_min", "k_max", "train_acc_vs_corrupted", "train_acc_vs_true", "test_acc"]
    pd.testing.assert_frame_equal(again[cols], kept[cols])


@pytest.mark.slow
def test_killed_after_the_last_save_is_completed_by_a_rerun(trained, tmp_path, data_root):
    """A process killed after its final progress save left short CSVs and a damaged
    checkpoint: the rerun writes them again from the saved progress and trains nothing."""
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    csv = results.RunKey(out, "MNIST", "CNN", 0.8, 1).accuracy_csv
    tidy = results.tidy_dir(out, "training", "MNIST", "CNN") / "0.8_Run_1.csv"
    full_csv, full_tidy = csv.read_bytes(), tidy.read_bytes()
    weights = (p08(out) / "model_1.pth").read_bytes()
    csv.write_text(csv.read_text().splitlines()[0] + "\n")
    tidy.unlink()
    damage(p08(out) / "model_1.pth", "truncate")
    progress = (p08(out) / "progress.pt").stat().st_mtime_ns
    train_tiny(out, data_root, ("0.8",))
    assert csv.read_bytes() == full_csv and tidy.read_bytes() == full_tidy
    restored = torch.load(p08(out) / "model_1.pth", weights_only=True)
    original = torch.load(__import__("io").BytesIO(weights), weights_only=True)
    assert all(torch.equal(restored[k], original[k]) for k in original)
    assert (p08(out) / "progress.pt").stat().st_mtime_ns == progress  # nothing trained again


@pytest.mark.slow
def test_merging_processes_lose_no_row(tmp_path):
    """Two processes merge different keys into one CSV many times: every row survives."""
    path = tmp_path / "merged.csv"
    worker = textwrap.dedent(f"""
        import sys
        import pandas as pd
        sys.path.insert(0, {str(ROOT)!r})
        from MASC import results
        who = sys.argv[1]
        for i in range(30):
            results.merge_csv(pd.DataFrame({{"key": [f"{{who}}{{i}}"], "value": [i]}}),
                              __import__("pathlib").Path({str(path)!r}), ["key"])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", worker, who]) for who in "ab"]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert sorted(pd.read_csv(path).key) == sorted(f"{w}{i}" for w in "ab" for i in range(30))
    assert [p.name for p in tmp_path.iterdir() if p.name != "merged.csv"] == [".merged.csv.lock"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("old\n")
    with pytest.raises(MASCError, match="cannot write .*r.csv .*No space left"):
        with results.atomic(path) as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]
    names = set()
    for _ in range(2):
        with results.atomic(path) as tmp:
            names.add(tmp.name)
            tmp.write_text("new\n")
    assert len(names) == 2 and path.read_text() == "new\n"  # a fresh temporary name per write


def test_labels_are_checked_against_the_dataset_and_the_run(tmp_path):
    true = np.arange(100) % 10
    folder = results.run_dir(tmp_path, "MNIST", "CNN", 0.8, 1)
    folder.mkdir(parents=True)
    RunLabels.of_run(true, 0.8, 10, subset=50).save(folder / "labels.npz")
    labels = runs.run_labels(results.RunKey(tmp_path, "MNIST", "CNN", 0.8, 1), true)
    assert len(labels.true) == 50 and labels.corrupt == 0.8
    RunLabels.of_run((true + 1) % 10, 0.8, 10, subset=50).save(folder / "labels.npz")
    with pytest.raises(MASCError, match="true labels are not this dataset's"):
        runs.run_labels(results.RunKey(tmp_path, "MNIST", "CNN", 0.8, 1), true)
    tampered = RunLabels.of_run(true, 0.8, 10, subset=50)
    tampered.corrupted[3] = (tampered.corrupted[3] + 1) % 10
    tampered.save(folder / "labels.npz")
    with pytest.raises(MASCError, match="corrupted labels are not those of p=0.8"):
        runs.run_labels(results.RunKey(tmp_path, "MNIST", "CNN", 0.8, 1), true)
    (folder / "labels.npz").unlink()
    with pytest.raises(MASCError, match="--reference-labels"):
        runs.run_labels(results.RunKey(tmp_path, "MNIST", "CNN", 0.8, 1), true)
    reference = runs.run_labels(results.RunKey(tmp_path, "MNIST", "CNN", 0.8, 1), true, reference=True)
    assert len(reference.true) == 100 and reference.label_seed == 42


def test_an_unwritable_results_folder_is_one_line(tmp_path, monkeypatch):
    """As root, chmod cannot make a folder read-only: the refusal is simulated at the open."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(results, "open", refuse, raising=False)
    with pytest.raises(MASCError, match="cannot write under .*Permission denied.*--out"):
        results.merge_csv(pd.DataFrame({"key": ["a"]}), tmp_path / "r.csv", ["key"])


# ---- Every result says what made it (issue 24): each test failed before its fix --------------


def fake_run(out, p=0.8, subset=50, holdout=0.0, label_seed=42, epochs=1, labels_seed=None,
             labels_holdout=None):
    """A run's files as training leaves them (settings in progress.pt, labels.npz, a fresh CNN's
    checkpoint), made without training; ``labels_*``: labels.npz of other settings. Returns
    (key, the true labels used: a cycle of 0-9)."""
    from MASC import models, training

    key = results.RunKey(out, "MNIST", "CNN", p, 1)
    true = np.arange(subset) % 10
    schedule = training.Schedule(subset=subset, holdout=holdout, label_seed=label_seed)
    key.folder.mkdir(parents=True)
    torch.save({"config": schedule.config(schedule.run("MNIST", "CNN", p, 1))}, key.progress)
    RunLabels.of_run(true, p, 10, label_seed if labels_seed is None else labels_seed, subset,
                     holdout if labels_holdout is None else labels_holdout).save(key.labels)
    torch.save(models.build("CNN", "MNIST").state_dict(), key.checkpoint(epochs))
    return key, true


@pytest.mark.parametrize("other, message", [
    ({"labels_seed": 7}, "label seed 7 but the model was trained with label seed 42"),
    ({"labels_holdout": 0.0}, "holds out 0 rows but the model was trained with a hold-out of 0.2")])
def test_labels_of_another_label_seed_or_hold_out_are_refused(tmp_path, other, message):
    """Case 1: a labels.npz of another --label-seed, or without the run's hold-out, was used
    (fitting other labels, or rows the model never saw)."""
    key, true = fake_run(tmp_path, holdout=0.2, **other)
    config = results.load_progress(key.progress)["config"]
    with pytest.raises(MASCError, match=message):
        runs.run_labels(key, true, config=config)


def test_a_run_being_trained_is_not_read(tmp_path, capsys):
    """Case 2: MASC and retraining read a run while it was trained (an older checkpoint)."""
    import pytorch_MASC_all
    import pytorch_retrain_early

    key, _ = fake_run(tmp_path)
    with results.lock(key.folder, what="trained"):
        with pytest.raises(MASCError, match=f"being trained by pid {os.getpid()}"):
            runs.load_network(key)
        for script in (pytorch_MASC_all, pytorch_retrain_early):
            with pytest.raises(SystemExit):
                script.main(["-corr", "0.8", *RUN, "--out", str(tmp_path), "-exp1", "True"]
                            [:-2 if script is pytorch_retrain_early else None])
            assert f"is being trained by pid {os.getpid()}" in capsys.readouterr().err
    with results.lock(key.folder, what="read", shared=True):  # and a read-out blocks a trainer
        with pytest.raises(MASCError, match="is being read by another process"):
            with results.lock(key.folder, wait=False, what="trained"):
                pass


@pytest.mark.slow
def test_read_outs_record_the_checkpoint_and_settings_and_keep_other_settings_apart(
        trained, tmp_path, data_root):
    """Cases 2 and 3: every read-out row records the checkpoint epoch and the settings that made
    it; a MASC CSV keeps rows of another threshold apart (and replaces only its own)."""
    import pytorch_MASC_all

    out = tmp_path / "out"
    shutil.copytree(trained, out)
    path = results.masc_csv(out, "MNIST", "CNN", 0.8, 1, 1)
    first = pd.read_csv(path)
    assert first.checkpoint_epoch.eq(2).all() and first.threshold.eq(0.99).all()
    assert (first[["subset", "n_train", "n_test", "label_seed", "seed"]] == [300, 300, 10000, 42,
                                                                           1]).all(axis=None)
    again = ["-corr", "0.8", *RUN, "--out", str(out), "--data", str(data_root), "-exp1", "True",
             "--layers", "fc3"]
    pytorch_MASC_all.main([*again, "--threshold", "0.5"])
    both = pd.read_csv(path)
    assert len(both) == 3 and sorted(both.threshold) == [0.5, 0.99, 0.99]
    pd.testing.assert_frame_equal(both[both.threshold == 0.99].drop(columns=["fit_seconds",
                                  "predict_seconds"]).reset_index(drop=True),
                                  first.drop(columns=["fit_seconds", "predict_seconds"]))
    pytorch_MASC_all.main(again)  # its own rows are replaced, not added
    assert len(pd.read_csv(path)) == 3
    training = pd.read_csv(results.RunKey(out, "MNIST", "CNN", 0.8, 1).training_csv)
    assert (training[["subset", "n_test", "holdout", "epoch_cap", "epochs_trained"]]
            == [300, 200, 0.0, 2, 2]).all(axis=None)


def test_an_existing_sweep_name_is_refused_and_kept(tmp_path, capsys):
    """Case 5: submit with an existing --name overwrote sweep.json (the first sweep's job ids
    and logs were lost)."""
    from MASC import sweep

    path = results.sweep_dir(tmp_path, "s") / "sweep.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"name": "s", "stages": []}')
    with pytest.raises(SystemExit):
        sweep.main(["submit", "-dataset", "MNIST", "-model", "CNN", "-corr", "0.8", "-run", "1",
                    "--out", str(tmp_path), "--name", "s", "--exps"])
    assert "a sweep named s is recorded" in capsys.readouterr().err
    assert path.read_text() == '{"name": "s", "stages": []}'


def test_a_masc_job_is_finished_only_when_this_sweeps_job_is(tmp_path):
    """Case 6: status called a MASC job finished while it ran, because an earlier sweep's CSV
    was there."""
    from MASC import sweep

    csv = results.masc_csv(tmp_path, "MNIST", "CNN", 0.8, 1, 1)
    csv.parent.mkdir(parents=True)
    csv.write_text("an earlier sweep's results\n")
    task = {"run": {"dataset": "MNIST", "model": "CNN", "corrupt": 0.8, "run": 1}, "exps": [1]}
    record = {"name": "s", "cluster": "local", "out": str(tmp_path), "submitted": "now",
              "settings": {"schedule": {"epochs": 1}},
              "stages": [{"stage": "masc", "tasks": [{**task, "job_id": str(os.getpid()),
                                                      "folder": str(tmp_path / "logs")}]}]}
    assert sweep.status(record).state.tolist() == ["running"]  # its job (this process) runs
    record.update(cluster="here", stages=[{"stage": "masc", "tasks": [task]}])
    assert sweep.status(record).state.tolist() == ["pending"]  # submitted here, never returned
    record["stages"][0]["tasks"][0]["done"] = True
    assert sweep.status(record).state.tolist() == ["finished"]


def test_a_sweep_record_of_another_shape_is_one_line(tmp_path, capsys):
    """Traceback: sweep.json valid JSON of the wrong shape."""
    from MASC import sweep

    for text in ('[1, 2]', '{"name": "s", "cluster": "here", "out": ".", "stages": [{"x": 1}]}'):
        path = results.sweep_dir(tmp_path, "s") / "sweep.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        with pytest.raises(SystemExit):
            sweep.main(["status", "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert "is not a sweep record of this tool" in err and "Traceback" not in err


def test_a_full_disk_during_a_progress_save_is_one_line_and_keeps_the_old(tmp_path, monkeypatch):
    """Traceback: torch.save raises RuntimeError (not OSError) when the disk fills."""
    path = tmp_path / "progress.pt"
    results.save_torch({"epoch": 1}, path)

    def full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(MASCError, match="cannot write .*progress.pt .*file write failed"):
        results.save_torch({"epoch": 2}, path)
    assert torch.load(path)["epoch"] == 1 and [p.name for p in tmp_path.iterdir()] == ["progress.pt"]


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    """Every kill during a write left a hidden .tmp file that nothing removed."""
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".r.csv.{host}.{dead.pid}-0123abcd.tmp"
    alive = tmp_path / f".r.csv.{host}.{os.getpid()}-0123abcd.tmp"  # a write in progress
    elsewhere = tmp_path / f".r.csv.otherhost.{dead.pid}-0123abcd.tmp"  # another host's
    for p in (stale, alive, elsewhere):
        p.write_text("half")
    results.write_csv(pd.DataFrame({"a": [1]}), tmp_path / "r.csv")
    assert not stale.exists() and alive.exists() and elsewhere.exists()


def test_an_unwritable_tmpdir_is_refused_not_replaced(tmp_path, monkeypatch):
    """Traceback/silent: an unwritable TMPDIR was silently replaced by the system's temp folder;
    a missing RowFile folder was a traceback."""
    import tempfile

    from MASC.rowfile import RowFile

    with pytest.raises(MASCError, match="cannot make a temporary file in .*missing"):
        RowFile(4, 2, folder=tmp_path / "missing")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(MASCError, match="TMPDIR=.*missing is not a writable folder"):
        RowFile(4, 2)


def test_row_file_rows_never_written_or_beyond_float32_are_refused():
    """Case 9: rows never written read as zeros and were fitted (only the highest row written
    was checked); float64 values beyond float32's range were stored as inf."""
    from MASC import MinimumAngleSubspaceClassifier
    from MASC.rowfile import RowFile

    with RowFile(10, 3) as rows:
        rows[0:5] = torch.ones(5, 3)
        rows[8:10] = torch.ones(2, 3)  # rows 5-7 never written
        with pytest.raises(MASCError, match="3 of the RowFile's 10 rows were never written"):
            MinimumAngleSubspaceClassifier().fit(rows, np.arange(10) % 2)
        with pytest.raises(MASCError, match="beyond float32's range"):
            rows[5:8] = torch.full((3, 3), 1e300, dtype=torch.float64)


def test_rows_whose_squares_overflow_are_scaled_in_predict_and_refused_in_fit():
    """Case 8: rows with norms beyond about 1e154 or below 1e-160 gave class 0 for every row
    (k = 0 for every class); a fit on them was a traceback or that silent result."""
    from MASC import MinimumAngleSubspaceClassifier

    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 5), np.repeat([0, 1, 2], 20)
    X[y == 1] += 3
    X[y == 2] -= 3
    clf = MinimumAngleSubspaceClassifier(threshold=2).fit(X, y)
    for scale in (2.0 ** 600, 2.0 ** -600):
        assert np.array_equal(clf.predict(X * scale), clf.predict(X))
        with pytest.raises(MASCError, match="Gram matrix over- or underflows float64; rescale X"):
            MinimumAngleSubspaceClassifier().fit(X * scale, y)
    checked = MinimumAngleSubspaceClassifier(threshold=2, predict_dtype="float32-checked")
    assert np.array_equal(checked.fit(X, y).predict(X * 2.0 ** 600), clf.predict(X))


def test_score_checks_its_labels_as_scikit_learn_does():
    """Case 8: score took one label for many rows, or strings against int classes, and
    returned 0.33 or 0.0."""
    from MASC import MinimumAngleSubspaceClassifier

    X, y = np.random.RandomState(0).randn(30, 4), np.arange(30) % 3
    clf = MinimumAngleSubspaceClassifier().fit(X, y)
    with pytest.raises(MASCError, match="X has 30 samples but y has 1 labels"):
        clf.score(X, [1])
    with pytest.raises(MASCError, match="Mix of label input types"):
        clf.score(X, np.array(["a", "b", "c"] * 10))
