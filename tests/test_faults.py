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
def trained(tmp_path_factory, data_root):
    """CNNs trained 2 epochs on 300 MNIST images at p = 0.0 and 0.8, with MASC exp1 results."""
    import pytorch_MASC_all

    out = tmp_path_factory.mktemp("trained")
    train_tiny(out, data_root)
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
    csv = results.accuracy_csv(out, "MNIST", "CNN", 0.8, 1)
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
    labels = runs.run_labels(tmp_path, "MNIST", "CNN", 0.8, 1, true)
    assert len(labels.true) == 50 and labels.corrupt == 0.8
    RunLabels.of_run((true + 1) % 10, 0.8, 10, subset=50).save(folder / "labels.npz")
    with pytest.raises(MASCError, match="true labels are not this dataset's"):
        runs.run_labels(tmp_path, "MNIST", "CNN", 0.8, 1, true)
    tampered = RunLabels.of_run(true, 0.8, 10, subset=50)
    tampered.corrupted[3] = (tampered.corrupted[3] + 1) % 10
    tampered.save(folder / "labels.npz")
    with pytest.raises(MASCError, match="corrupted labels are not those of p=0.8"):
        runs.run_labels(tmp_path, "MNIST", "CNN", 0.8, 1, true)
    (folder / "labels.npz").unlink()
    with pytest.raises(MASCError, match="--reference-labels"):
        runs.run_labels(tmp_path, "MNIST", "CNN", 0.8, 1, true)
    reference = runs.run_labels(tmp_path, "MNIST", "CNN", 0.8, 1, true, reference=True)
    assert len(reference.true) == 100 and reference.label_seed == 42


def test_an_unwritable_results_folder_is_one_line(tmp_path, monkeypatch):
    """As root, chmod cannot make a folder read-only: the refusal is simulated at the open."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(results, "open", refuse, raising=False)
    with pytest.raises(MASCError, match="cannot write under .*Permission denied.*--out"):
        results.merge_csv(pd.DataFrame({"key": ["a"]}), tmp_path / "r.csv", ["key"])
