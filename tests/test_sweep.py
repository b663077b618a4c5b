"""Sweeps through submitit: a real Slurm (.ci/slurm/start.sh), submitit's local processes, and
the command line's errors.

The Slurm tests skip with one line where no cluster answers; with MASC_REQUIRE_SLURM=1 (set by
.ci/run, which starts one) they fail instead."""
import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import submitit
import torch

from conftest import ROOT, requires_mnist
from MASC import results, sweep

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
TINY = ["-dataset", "MNIST", "-model", "CNN", "--device", "cpu", "--subset", "300",
        "--test-subset", "200", "--save-every", "1000"]
ON_SLURM = ["--cluster", "slurm", "--gpus-per-job", "0", "--cpus-per-job", "1", "--time", "10"]
MASC_COLUMNS = ["layer", "k_min", "k_max", "train_acc_vs_corrupted", "train_acc_vs_true",
                "test_acc", "model_test_acc"]


@functools.lru_cache(maxsize=None)
def slurm_answers():
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def slurm(tmp_path):
    """A Slurm cluster that answers, or a skip (a failure with MASC_REQUIRE_SLURM=1); the jobs
    of the sweeps under tmp_path are cancelled at the end (a failed test leaves none running)."""
    if not slurm_answers():
        reason = "no Slurm cluster answers (sinfo failed); start one with .ci/slurm/start.sh"
        if os.environ.get("MASC_REQUIRE_SLURM") == "1":
            pytest.fail(f"MASC_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    yield
    ids = {t["job_id"].split("_")[0] for p in tmp_path.glob("*/sweeps/*/sweep.json")
           for stage in json.loads(p.read_text())["stages"] for t in stage["tasks"]
           if "job_id" in t}
    if ids:
        subprocess.run(["scancel", *ids])


def run_sweep(*args, timeout=600):
    done = subprocess.run([sys.executable, "-m", "MASC.sweep", *map(str, args)], env=ENV,
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def tasks(out, name):
    record = json.loads((results.sweep_dir(out, name) / "sweep.json").read_text())
    return [task for stage in record["stages"] for task in stage["tasks"]]


def slurm_job(task):
    return submitit.SlurmJob(folder=task["folder"], job_id=task["job_id"])


def wait_for_lock(out, p, run, timeout=180):
    """The holder line of a run's lock once a trainer holds it."""
    folder = results.run_dir(out, "MNIST", "CNN", p, run)
    deadline = time.time() + timeout
    while time.time() < deadline:
        holder = results.lock_holder(folder)
        if holder:
            return holder
        time.sleep(0.2)
    raise AssertionError(f"nobody started training {folder} in {timeout} s")


def same_results(out, reference, runs, epochs):
    for p, run in runs:
        for path in (lambda *a: results.RunKey(*a).accuracy_csv, lambda *a: results.masc_csv(*a, exp=1)):
            pd.testing.assert_frame_equal(
                pd.read_csv(path(out, "MNIST", "CNN", p, run)).filter(MASC_COLUMNS + ["epoch"]),
                pd.read_csv(path(reference, "MNIST", "CNN", p, run)).filter(MASC_COLUMNS + ["epoch"]))
        name = f"model_{epochs - 1}.pth"
        a, b = (torch.load(results.run_dir(o, "MNIST", "CNN", p, run) / name, weights_only=True)
                for o in (out, reference))
        assert all(torch.equal(a[k], b[k]) for k in a)


@requires_mnist
@pytest.mark.slow
def test_a_slurm_sweep_requeued_mid_run_equals_the_sweep_run_here(slurm, tmp_path, data_root):
    """Two runs as a 2-task training array and a MASC array after it (afterok); task 0 is
    requeued while it trains (SIGTERM: it saves and exits, Slurm runs it again, it resumes)."""
    out, here = tmp_path / "slurm", tmp_path / "here"
    sweep_args = ["submit", *TINY, "-corr", "0.8", "-run", "1", "2", "--epochs", "16",
                  "--exps", "1", "--layers", "fc3", "--data", data_root]
    run_sweep(*sweep_args, "--out", out, "--name", "s", "--per-run", *ON_SLURM)
    train, masc = tasks(out, "s")[:2], tasks(out, "s")[2:]
    assert [t["job_id"] for t in train] == [f"{train[0]['job_id'][:-2]}_{i}" for i in (0, 1)]
    assert "Slurm job " + train[0]["job_id"] in wait_for_lock(out, 0.8, 1)
    time.sleep(3)  # a few epochs in
    subprocess.run(["scontrol", "requeue", train[0]["job_id"]], check=True)
    for task in train + masc:
        slurm_job(task).result()  # raises if a job failed
    log = open(train[0]["stdout"]).read()
    assert "SIGTERM: progress saved after" in log and log.count("Starting with") == 2, log
    table = run_sweep("status", "--out", out, "--name", "s")
    assert "4 finished" in table and "COMPLETED" in table, table

    run_sweep(*sweep_args, "--out", here)  # the same sweep in one process, uninterrupted
    same_results(out, here, [(0.8, 1), (0.8, 2)], 16)


@requires_mnist
@pytest.mark.slow
def test_a_second_slurm_job_training_the_same_run_is_refused(slurm, tmp_path, data_root):
    out = tmp_path / "out"
    # 2,000 images and no early stop within the test: the first job must still hold the run when
    # the second starts (with 300 images it could finish first, and the second then had no work)
    args = ["submit", *TINY, "--subset", "2000", "-corr", "0.8", "-run", "1", "--epochs", "1000",
            "--exps", "--out", out, "--data", data_root, *ON_SLURM]
    run_sweep(*args, "--name", "first")
    first = tasks(out, "first")[0]
    try:
        assert f"(Slurm job {first['job_id']})" in wait_for_lock(out, 0.8, 1)
        run_sweep(*args, "--name", "second")
        second = slurm_job(tasks(out, "second")[0])
        error = str(second.exception())
        assert "is being trained by pid" in error and f"(Slurm job {first['job_id']})" in error
        deadline = time.time() + 60  # sacct says FAILED once the job step has ended
        while second.get_info(mode="force").get("State") != "FAILED" and time.time() < deadline:
            time.sleep(1)
        assert second.get_info(mode="force").get("State") == "FAILED"
        table = run_sweep("status", "--out", out)
        assert "FAILED" in table and "running" in table, table
    finally:
        slurm_job(first).cancel()  # it would train on until its time limit


@requires_mnist
@pytest.mark.slow
def test_a_local_sweep_runs_as_processes_and_its_status_reads_the_files(tmp_path, data_root):
    out = tmp_path / "out"
    run_sweep("submit", *TINY, "-corr", "0.0", "-run", "1", "--epochs", "2", "--exps", "1",
              "--layers", "fc3", "--out", out, "--data", data_root, "--name", "l", "--cluster",
              "local", "--gpus-per-job", "0")
    assert [len(str(t["job_id"])) > 0 for t in tasks(out, "l")] == [True, True]
    assert results.masc_csv(out, "MNIST", "CNN", 0.0, 1, 1).exists()
    status = out / "status.csv"
    run_sweep("status", "--out", out, "--csv", status)
    table = pd.read_csv(status)
    assert table.state.tolist() == ["finished", "finished"]
    assert table.job_state.tolist() == ["COMPLETED", "COMPLETED"]
    assert all(os.path.exists(log) for log in table.log)


class RecordingExecutor:
    """Stands in for submitit.AutoExecutor on Slurm: runs nothing; records each submitted job with
    the parameters in force when it was submitted. Job ids are Slurm's: ARRAY_TASK, arrays 100,
    200, ..."""

    submitted = []  # (function, task kwargs, parameters), in order

    def __init__(self, folder, cluster, **kwargs):
        self.folder, self.parameters, self.arrays, self.tasks = folder, {}, 0, 0

    def update_parameters(self, **kwargs):
        self.parameters.update(kwargs)

    @contextlib.contextmanager
    def batch(self):
        self.arrays, self.tasks = self.arrays + 1, 0
        yield

    def submit(self, function, **task):
        RecordingExecutor.submitted.append((function, task, dict(self.parameters)))
        job_id, self.tasks = f"{100 * self.arrays}_{self.tasks}", self.tasks + 1
        folder = Path(str(self.folder).replace("%j", job_id))
        return SimpleNamespace(job_id=job_id, paths=SimpleNamespace(
            folder=folder, stdout=folder / "out", stderr=folder / "err"))


def test_masc_jobs_wait_for_every_training_job_to_succeed(tmp_path, monkeypatch, capsys):
    """On Slurm the MASC array is submitted with afterok on the training array (checked with a
    recording executor, no cluster); the training array waits for nothing."""
    monkeypatch.setattr(RecordingExecutor, "submitted", [])
    monkeypatch.setattr(sweep.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(submitit, "AutoExecutor", RecordingExecutor)
    sweep.main(["submit", "-dataset", "MNIST", "-model", "CNN", "-corr", "0.0", "0.8", "-run", "1",
                "--per-run", "--cluster", "slurm", "--out", str(tmp_path), "--name", "s"])
    train = [job for job in RecordingExecutor.submitted if isinstance(job[0], sweep.Train)]
    masc = [job for job in RecordingExecutor.submitted if isinstance(job[0], sweep.Masc)]
    assert len(train) == 2 and len(masc) == 2 and len(RecordingExecutor.submitted) == 4
    assert all("slurm_dependency" not in parameters for _, _, parameters in train)
    assert [parameters.get("slurm_dependency") for _, _, parameters in masc] == ["afterok:100"] * 2
    assert [task["run"]["corrupt"] for _, task, _ in masc] == [0.0, 0.8]
    recorded = [task["job_id"] for task in tasks(tmp_path, "s")]
    assert recorded == ["100_0", "100_1", "200_0", "200_1"]  # the ids the dependency names


def error_of(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        sweep.main(argv)
    return stop.value.code, capsys.readouterr().err.strip()


def test_bad_sweeps_are_one_line_errors(tmp_path, capsys, monkeypatch):
    base = ["submit", "-dataset", "MNIST", "-model", "CNN", "-run", "1", "--out", str(tmp_path)]
    code, err = error_of([*base, "-corr", "0.8", "--exps", "3"], capsys)
    assert code == 2 and "exp3 reads out the models trained at p = 0.0" in err
    monkeypatch.setattr(sweep.shutil, "which", lambda name: None)
    code, err = error_of([*base, "-corr", "0.8", "--cluster", "slurm"], capsys)
    assert code == 2 and "no Slurm here (sbatch not found)" in err
    code, err = error_of(["status", "--out", str(tmp_path)], capsys)
    assert code == 2 and "no sweep recorded" in err
    code, err = error_of([*base, "-corr", "0.8", "--slurm-option", "constraint"], capsys)
    assert code == 2 and "expected KEY=VALUE" in err
    assert not (tmp_path / "sweeps").exists()
