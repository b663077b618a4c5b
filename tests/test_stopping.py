"""Stop signals save training's progress; a dead trainer's lock is taken over (real processes)."""
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from conftest import ROOT, requires_mnist
from MASC import results, stopping
from MASC.errors import MASCError

TRAIN = ["-corr", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run", "1", "--device", "cpu",
         "--subset", "300", "--test-subset", "200", "--save-every", "1000"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def folder(out):
    return results.run_dir(out, "MNIST", "CNN", 0.8, 1)


def start_training(out, data_root, epochs, sigint=signal.SIG_DFL):
    """The training script in a process that starts with ``sigint`` as its SIGINT disposition
    (SIG_DFL: as from a terminal; SIG_IGN: as a background job of a non-interactive shell)."""
    return subprocess.Popen([sys.executable, str(ROOT / "pytorch_training.py"), *TRAIN, "--epochs",
                             str(epochs), "--out", str(out), "--data", str(data_root)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))


def signal_while_training(out, data_root, signum, epochs=12, sigint=signal.SIG_DFL):
    """Start training, send ``signum`` once it holds its lock and had time for an epoch or two."""
    proc = start_training(out, data_root, epochs, sigint)
    deadline = time.time() + 120
    while results.lock_holder(folder(out)) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=120)
    return proc.returncode, output


@requires_mnist
@pytest.mark.slow
def test_sigterm_saves_progress_and_the_rerun_equals_an_uninterrupted_run(tmp_path, data_root):
    code, output = signal_while_training(tmp_path / "cut", data_root, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, output
    saved = results.load_progress(folder(tmp_path / "cut") / "progress.pt")
    assert saved is not None and 0 < saved["epoch"] < 12, output  # no periodic save before 1000
    assert f"SIGTERM: progress saved after {saved['epoch']} epochs" in output
    for out in (tmp_path / "cut", tmp_path / "whole"):  # the rerun resumes; the other runs through
        done = start_training(out, data_root, 12)
        output, _ = done.communicate(timeout=300)
        assert done.returncode == 0, output
    csvs = [pd.read_csv(results.RunKey(out, "MNIST", "CNN", 0.8, 1).accuracy_csv)
            for out in (tmp_path / "cut", tmp_path / "whole")]
    pd.testing.assert_frame_equal(*csvs)
    assert len(csvs[0]) == 12
    weights = [torch.load(folder(out) / "model_11.pth", weights_only=True)
               for out in (tmp_path / "cut", tmp_path / "whole")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@requires_mnist
@pytest.mark.slow
@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["terminal", "ignored"])
def test_ctrl_c_saves_progress_too(tmp_path, data_root, sigint):
    code, output = signal_while_training(tmp_path, data_root, signal.SIGINT, sigint=sigint)
    assert code == 130, output
    assert "saved progress is kept" in output and "Traceback" not in output
    assert 0 < results.load_progress(folder(tmp_path) / "progress.pt")["epoch"] < 12


def test_a_signal_is_deferred_then_handed_to_the_handler_it_replaced():
    """submitit's USR2 handler requeues and exits: it must still run, after the save."""
    seen = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        with stopping.deferred():
            os.kill(os.getpid(), signal.SIGUSR2)
            assert stopping.requested() == "SIGUSR2" and seen == []
            with pytest.raises(stopping.Stopped) as stopped:
                stopping.stop()
        assert seen == [signal.SIGUSR2] and stopped.value.code == 128 + signal.SIGUSR2
        assert stopping.requested() is None
    finally:
        signal.signal(signal.SIGUSR2, before)


HOLD = """
import sys, time
from MASC import results
with results.lock(sys.argv[1], wait=False, what="trained"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow  # two processes
def test_the_lock_names_its_live_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    run = tmp_path / "Run_1"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert results.lock_holder(run).startswith(f"pid {holder.pid} on ")
        with pytest.raises(MASCError, match=f"is being trained by pid {holder.pid} on "):
            with results.lock(run, wait=False, what="trained"):
                pass
    finally:
        holder.kill()  # SIGKILL: the holder cannot clean up; its line stays in the lock file
        holder.wait()
    assert f"pid {holder.pid}" in (tmp_path / ".Run_1.lock").read_text()
    assert results.lock_holder(run) is None
    with results.lock(run, wait=False, what="trained"):
        assert f"pid {os.getpid()} on " in (tmp_path / ".Run_1.lock").read_text()
