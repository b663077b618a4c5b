"""Where results live (the reference's layout: docs/protocol.md, 'Output file layout') and the
one CSV writer."""
import contextlib
import fcntl
import os
import re
import socket
import time
import uuid
from pathlib import Path

import pandas as pd
import torch

from .errors import MASCError


def p_str(p):
    """A corruption degree as the reference prints it in paths: 0.0, 0.2, ..."""
    return str(float(p))


def tag(dataset, model):
    return f"{dataset}_{model}"


def run_dir(out, dataset, model, p, run):
    """Folder of a trained run: checkpoint, labels.npz and progress.pt."""
    return Path(out) / "models" / tag(dataset, model) / "Network" / p_str(p) / f"Run_{run}"


def progress_path(folder):
    """A run folder's saved progress (config, epoch, history, weights, optimiser)."""
    return Path(folder) / "progress.pt"


def labels_path(folder):
    """A run folder's labels (:class:`~MASC.corruption.RunLabels`) as saved at training time."""
    return Path(folder) / "labels.npz"


def load_progress(folder):
    """A run folder's saved progress, or None when it has none."""
    path = progress_path(folder)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise MASCError(f"cannot read {path} ({type(e).__name__}); delete it to restart the "
                        f"run") from None


def accuracy_dir(out, dataset, model):
    """The reference's per-epoch training CSVs: {p}/Run_{r}.csv under it."""
    return Path(out) / "models" / tag(dataset, model) / "Accuracy_results"


def accuracy_csv(out, dataset, model, p, run):
    """The reference's per-epoch training CSV (``,epoch,Train_accuracy,Test_accuracy``, in %)."""
    return accuracy_dir(out, dataset, model) / p_str(p) / f"Run_{run}.csv"


def tidy_root(out):
    """Root of our tidy CSVs: {kind}/{ds}_{model}/... under it."""
    return Path(out) / "results"


def tidy_dir(out, kind, dataset, model):
    """Folder of our tidy CSVs of one kind (training, masc, retrain, ...)."""
    return tidy_root(out) / kind / tag(dataset, model)


SHORT = {"corrupted": "corr", "original": "org"}  # the reference's folder and column suffixes


def retrain_dir(out, dataset, model, p, run, subspaces_from, protocol):
    """Where a retrained model goes: models/{ds}_{model}/Network/{p}/{corr|org}_subspace/Run_{r}
    (the clean protocol adds ``_clean`` to the subspace folder)."""
    folder = f"{SHORT[subspaces_from]}_subspace" + ("" if protocol == "reference" else f"_{protocol}")
    return run_dir(out, dataset, model, p, run).parent / folder / f"Run_{run}"


def retrain_reference_dir(out, dataset, model, p):
    """The reference's retraining results: angle_results_retrain_30/{ds}_{model}/results_{p}
    (docs/protocol.md, 'Retraining with MASC relabels' and 'Output file layout')."""
    return Path(out) / "angle_results_retrain_30" / tag(dataset, model) / f"results_{p_str(p)}"


def sweep_dir(out, name=None):
    """Where ``python -m MASC.sweep`` records its sweeps (one folder per sweep name)."""
    folder = Path(out) / "sweeps"
    return folder / name if name else folder


def probes_csv(out, dataset, model, p, run):
    """The probes study's tidy CSV of one run."""
    return tidy_dir(out, "probes", dataset, model) / p_str(p) / f"Run_{run}.csv"


def checkpoint_epoch(path):
    match = re.fullmatch(r"model_(\d+)\.pth", Path(path).name)
    return int(match.group(1)) if match else None


def final_checkpoint(folder):
    """The highest ``model_{e}.pth`` in a folder (what the reference loads), or None."""
    found = [(checkpoint_epoch(f), f) for f in Path(folder).glob("model_*.pth")]
    found = [(e, f) for e, f in found if e is not None]
    return max(found)[1] if found else None


def training_command(out, dataset, model, p, run, config=None):
    """The command that trains a run, with ``--out`` and the settings of its saved progress
    ``config`` where known (so that it resumes or completes that run, not another)."""
    flags = [f"--out {out}"] if str(out) != "." else []
    config = config or {}
    if config.get("seed") is not None and config["seed"] != run:
        flags.append(f"--seed {config['seed'] - run}")
    for key, flag in (("subset", "--subset"), ("test_subset", "--test-subset")):
        if config.get(key) is not None:
            flags.append(f"{flag} {config[key]}")
    if config.get("holdout"):
        flags.append(f"--holdout {config['holdout']}")
    if config.get("label_seed") not in (None, 42):
        flags.append(f"--label-seed {config['label_seed']}")
    flags += [f"--{key}" for key in ("shuffle", "bf16", "tf32") if config.get(key)]
    return " ".join([f"python pytorch_training.py -corr {p_str(p)} -model {model} -dataset "
                     f"{dataset} -run {run}", *flags])


def require_checkpoint(out, dataset, model, p, run, config=None):
    """The final checkpoint of a run, or a clear error naming the command that makes it."""
    folder = run_dir(out, dataset, model, p, run)
    path = final_checkpoint(folder)
    if path is None:
        raise MASCError(f"no trained model in {folder}; train it first: "
                        f"{training_command(out, dataset, model, p, run, config)}")
    return path


def _writable_folder(folder):
    """Make ``folder`` (and its parents), or say in one line why it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise MASCError(f"cannot write under {folder}: a file of that name is in the way; "
                        f"choose another --out") from None
    except PermissionError:
        raise MASCError(f"cannot write under {folder}: permission denied; choose another "
                        f"--out") from None


@contextlib.contextmanager
def atomic(path, suffix=".tmp"):
    """A temporary path beside ``path`` to write to; once written in full it replaces ``path``
    (a reader never sees half a file, an interrupted write leaves the old one). The temporary
    name is unique to this write, so two processes never write to the same one; on any failure
    it is removed."""
    path = Path(path)
    _writable_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise MASCError(f"cannot write {path} ({e.strerror or e}); nothing was changed there; "
                        f"free space or choose another --out") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _lock_file(path):
    return path.with_name(f".{path.name}.lock")


def lock_holder(path):
    """Who holds :func:`lock` on ``path`` now (the holder's line), or None if nobody does."""
    try:
        fh = open(_lock_file(Path(path)))
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return fh.read().strip() or "another process"
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def lock(path, wait=True, what="written"):
    """Hold an exclusive lock on ``path``'s lock file (``.{name}.lock`` beside it) while the
    block runs. ``wait=False``: if another process holds it, fail at once, naming the holder.
    The operating system drops a lock whose process dies, so a lock is never stale."""
    path = Path(path)
    _writable_folder(path.parent)
    try:
        fh = open(_lock_file(path), "a+")
    except OSError as e:
        raise MASCError(f"cannot write under {path.parent} ({e.strerror or e}); choose another "
                        f"--out") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise MASCError(f"{path} is being {what} by {holder}; wait for it to finish (or stop "
                            f"it) and run again") from None
        fh.seek(0)
        fh.truncate()
        job = os.environ.get("SLURM_JOB_ID")
        if os.environ.get("SLURM_ARRAY_JOB_ID"):  # as squeue and sacct name an array's task
            job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}"
                 + (f" (Slurm job {job})" if job else "")
                 + f" since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_csv(path, columns=()):
    """A results CSV we wrote earlier, checked: unreadable or hand-edited files (missing
    ``columns``) are a one-line error that names the file, before anything is written."""
    try:
        frame = pd.read_csv(path)
    except Exception as e:  # pandas raises several types for garbage and truncation
        raise MASCError(f"{path} is unreadable ({type(e).__name__}); move it away or delete it "
                        f"and run again") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MASCError(f"{path} lacks the columns {', '.join(missing)} (edited by hand or "
                        f"from another tool?); move it away or delete it and run again")
    return frame


def write_csv(frame, path, index=False):
    """Write a DataFrame atomically; returns the path."""
    with atomic(path) as tmp:
        frame.to_csv(tmp, index=index)
    return Path(path)


def merge_csv(frame, path, keys, fill=None):
    """Write ``frame`` to ``path``, keeping the rows already there whose ``keys`` it does not
    recompute (so runs over different probes or layers add up in one file). The read and the
    write happen under the file's lock: two processes merging into one file lose no row.
    ``fill``: {key column: value} for rows of older files that lack that column."""
    path = Path(path)
    fill = fill or {}
    with lock(path):
        if path.exists():
            old = read_csv(path, [k for k in keys if k not in fill])
            old = old.assign(**{k: v for k, v in fill.items() if k not in old})
            fresh = pd.MultiIndex.from_frame(frame[keys].astype(str))
            kept = old[~pd.MultiIndex.from_frame(old[keys].astype(str)).isin(fresh)]
            frame = pd.concat([kept, frame], ignore_index=True)
        return write_csv(frame, path)


def provenance_path(csv):
    """The environment file written beside a results CSV: ``{stem}_provenance.json``."""
    csv = Path(csv)
    return csv.with_name(f"{csv.stem}_provenance.json")


def write_provenance(csv, device):
    """Write, beside the results CSV ``csv``, the environment that computed it: torch,
    torchvision, CUDA and cuDNN versions, the device, the host, the command and the code's git
    commit (``dirty``: with uncommitted changes). Returns the path."""
    import json
    import platform
    import subprocess
    import sys

    import torchvision

    def git(*args):
        try:
            done = subprocess.run(["git", "-C", str(Path(__file__).parent), *args], timeout=20,
                                  capture_output=True, text=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                     if line.startswith("model name")), platform.processor() or platform.machine())
    status = git("status", "--porcelain", "--untracked-files=no")
    record = {"written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "device": str(device), "device_name": name, "cpus": os.cpu_count(),
              "host": socket.gethostname(), "platform": platform.platform(),
              "python": platform.python_version(), "torch": torch.__version__,
              "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
              "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
              else None, "commit": git("rev-parse", "HEAD"),
              "dirty": None if status is None else bool(status)}
    path = provenance_path(csv)
    with atomic(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return path


def _read_lines(path):
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def save_torch(obj, path):
    """``torch.save`` atomically (a checkpoint is never half written); returns the path."""
    import torch

    with atomic(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def checkpoint_path(folder, epochs):
    """Where a model's final weights after ``epochs`` epochs go: ``model_{epochs - 1}.pth`` (the
    reference's 0-based name)."""
    return Path(folder) / f"model_{epochs - 1}.pth"


def save_checkpoint(weights, folder, epochs):
    """A model's final weights at :func:`checkpoint_path`; any other ``model_*.pth`` in the
    folder goes. Returns the path."""
    path = save_torch(weights, checkpoint_path(folder, epochs))
    for old in Path(folder).glob("model_*.pth"):
        if old != path and checkpoint_epoch(old) is not None:
            old.unlink()
    return path


def write_single_value(value, path, column="acc_overall"):
    """The reference's one-row CSV (``,acc_overall`` with a pandas index)."""
    return write_csv(pd.DataFrame({column: [value]}), path, index=True)


def masc_csv(out, dataset, model, p, run, exp, per_class=False):
    """Our tidy MASC results of one (dataset, model, p, run, exp)."""
    suffix = "_per_class" if per_class else ""
    return tidy_dir(out, "masc", dataset, model) / p_str(p) / f"Run_{run}_exp{exp}{suffix}.csv"


def reference_masc_files(out, dataset, model, p, run, exp, layer):
    """The reference's single-value accuracy files of one experiment and layer (docs/protocol.md,
    'Experiments exp1, exp2, exp3' and 'Output file layout').

    Returns ``{what: path}`` with what in train_vs_corrupted, train_vs_true, test, and the PCA
    bookkeeping file under ``pca``. (The reference's folder ``angle_results_exp3`` holds the
    true-label-subspace results, and exp3's go under ``results_uncorrupted``.)"""
    base = Path(out) / "angle_results" / tag(dataset, model)
    results_p = base / f"results_{p_str(p)}"
    if exp == 3:
        results_p = base / "results_uncorrupted" / f"results_{p_str(p)}"
    run_part = Path(f"Run_{run}") / "cor_label"
    name = f"layer_{layer}_acc_overall"
    if exp == 2:
        return {"test": results_p / "angle_results_exp3" / run_part / f"{name}_test.csv",
                "train_vs_true": results_p / "angle_results_exp3" / run_part / f"{name}_train.csv",
                "pca": results_p / "pca_original" / f"Run_{run}" / "pca_com"
                / f"pca_train_original_{layer}.csv"}
    pca = "PCA" if exp == 3 else "pca_corrupted"
    return {"train_vs_corrupted": results_p / "angle_results" / run_part / f"{name}_train.csv",
            "test": results_p / "angle_results" / run_part / f"{name}_test.csv",
            "train_vs_true": results_p / "angle_results_exp2" / run_part / f"{name}_train.csv",
            "pca": results_p / pca / f"Run_{run}" / "pca_com" / f"pca_train_corrupt_{layer}.csv"}
