"""Where results live (the reference's layout: docs/protocol.md, 'Output file layout') and the
one CSV writer.

A run's identity is its :class:`RunKey` (dataset, model, corruption degree, run index, under a
results root): it owns every file name of the run and the id columns of its CSVs. Nothing else
spells a run's file names."""
import contextlib
import fcntl
import os
import platform
import re
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import MASCError


def p_str(p):
    """A corruption degree as the reference prints it in paths: 0.0, 0.2, ..."""
    return str(float(p))


def tag(dataset, model):
    return f"{dataset}_{model}"


SHORT = {"corrupted": "corr", "original": "org"}  # the reference's folder and column suffixes
RUN_COLUMNS = ["dataset", "model", "corrupt", "run"]  # a run's id columns in every tidy CSV
# What made a result, recorded in every row of a tidy CSV (older files lack some: not recorded).
# The weights a read-out read: the training seed, label seed, training images (hold-out included),
# hold-out share, and the epoch (1-based) of the checkpoint.
MODEL_COLUMNS = ["seed", "label_seed", "subset", "holdout", "checkpoint_epoch"]
# How a read-out read them: MASC's threshold, rows fitted, test images, per-image BatchNorm.
READOUT_COLUMNS = ["threshold", "n_train", "n_test", "per_sample_bn"]
# How a run was trained (its training CSVs): besides seed, label_seed, subset and holdout.
TRAINING_COLUMNS = ["n_test", "shuffle", "bf16", "tf32", "batch", "init", "scaling", "epoch_cap",
                    "epochs_trained"]
PROVENANCE = {*MODEL_COLUMNS, *READOUT_COLUMNS, *TRAINING_COLUMNS}
# What computed a read-out (:func:`environment`), recorded in every row of the MASC CSVs.
ENVIRONMENT_COLUMNS = ["torch", "cuda", "device", "commit"]


# The label-noise study's features -> its kind of tidy CSVs: the run's own network's (own), the
# p = 0.0 network's of the same run number (clean: label_noise.py --features clean), or a
# dataset's raw pixels, no network (pixels: fixed_features.py, model "pixels").
LABEL_NOISE = {"own": "label_noise", "clean": "label_noise_clean", "pixels": "label_noise_pixels"}


@dataclass(frozen=True)
class RunKey:
    """One run: a (dataset, model) trained at corruption degree ``corrupt`` as run ``run``, with
    its files under the results root ``out``. Every file name of the run comes from here."""

    out: Path
    dataset: str
    model: str
    corrupt: float
    run: int

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "corrupt", float(self.corrupt))
        object.__setattr__(self, "run", int(self.run))

    def at(self, corrupt):
        """The same run index trained at another corruption degree (exp3 reads p = 0.0's)."""
        return replace(self, corrupt=corrupt)

    def ids(self):
        """The columns that name this run in a tidy CSV."""
        return {"dataset": self.dataset, "model": self.model, "corrupt": self.corrupt,
                "run": self.run}

    def __str__(self):
        return f"{self.dataset} {self.model} p={self.corrupt} run {self.run}"

    @property
    def _p(self):
        return p_str(self.corrupt)

    def _tidy(self, kind):
        return tidy_dir(self.out, kind, self.dataset, self.model) / self._p

    # the trained network (the reference's layout)
    @property
    def folder(self):
        """Folder of the trained run: checkpoint, labels.npz and progress.pt."""
        return (self.out / "models" / tag(self.dataset, self.model) / "Network" / self._p
                / f"Run_{self.run}")

    @property
    def progress(self):
        """The run's saved progress (config, epoch, history, weights, optimiser)."""
        return self.folder / "progress.pt"

    @property
    def labels(self):
        """The run's labels (:class:`~MASC.corruption.RunLabels`) as saved at training time."""
        return self.folder / "labels.npz"

    def checkpoint(self, epochs):
        """Where the run's final weights after ``epochs`` epochs go."""
        return checkpoint_path(self.folder, epochs)

    def final_checkpoint(self):
        """The run's highest ``model_{e}.pth`` (what the reference loads), or None."""
        return final_checkpoint(self.folder)

    @property
    def accuracy_csv(self):
        """The reference's per-epoch training CSV (``,epoch,Train_accuracy,Test_accuracy``, %)."""
        return accuracy_dir(self.out, self.dataset, self.model) / self._p / f"Run_{self.run}.csv"

    # our tidy CSVs
    @property
    def training_csv(self):
        return (tidy_dir(self.out, "training", self.dataset, self.model)
                / f"{self._p}_Run_{self.run}.csv")

    def masc_csv(self, exp, per_class=False):
        part = "_per_class" if per_class else ""
        return self._tidy("masc") / f"Run_{self.run}_exp{exp}{part}.csv"

    @property
    def masc_figure(self):
        """Stem of a read-out's per-layer figure (.png and .pdf), beside its MASC CSVs."""
        return self._tidy("masc") / f"Run_{self.run}_layers"

    def retrain_csv(self, protocol, part):
        """Retraining's tidy CSVs: ``part`` is epochs, summary or layers."""
        return self._tidy("retrain") / f"Run_{self.run}_{protocol}_{part}.csv"

    @property
    def probes_csv(self):
        return self._tidy("probes") / f"Run_{self.run}.csv"

    @property
    def sensitivity_csv(self):
        return self._tidy("sensitivity") / f"Run_{self.run}.csv"

    def label_noise_csv(self, part, features="own"):
        """The label-noise study's CSVs: ``part`` is scores, layers, metrics or retrain;
        ``features``: whose features were scored (:data:`LABEL_NOISE`)."""
        return self._tidy(LABEL_NOISE[features]) / f"Run_{self.run}_{part}.csv"

    def label_noise_lock(self, features="own"):
        """What the label-noise study locks while it scores and retrains this run."""
        return self._tidy(LABEL_NOISE[features]) / f"Run_{self.run}"

    # retraining's models and the reference's files
    def retrain_dir(self, subspaces_from, protocol):
        """Where a retrained model goes: models/{ds}_{model}/Network/{p}/{corr|org}_subspace/Run_{r}
        (the clean protocol adds ``_clean`` to the subspace folder)."""
        folder = f"{SHORT[subspaces_from]}_subspace" + (
            "" if protocol == "reference" else f"_{protocol}")
        return self.folder.parent / folder / f"Run_{self.run}"

    def reference_masc_files(self, exp, layer):
        """The reference's single-value accuracy files of one experiment and layer
        (docs/protocol.md, 'Experiments exp1, exp2, exp3' and 'Output file layout').

        Returns ``{what: path}`` with what in train_vs_corrupted, train_vs_true, test, and the PCA
        bookkeeping file under ``pca``. (The reference's folder ``angle_results_exp3`` holds the
        true-label-subspace results, and exp3's go under ``results_uncorrupted``.)"""
        base = self.out / "angle_results" / tag(self.dataset, self.model)
        results_p = base / f"results_{self._p}"
        if exp == 3:
            results_p = base / "results_uncorrupted" / f"results_{self._p}"
        run_part = Path(f"Run_{self.run}") / "cor_label"
        name = f"layer_{layer}_acc_overall"
        if exp == 2:
            true_folder = results_p / "angle_results_exp3" / run_part
            return {"test": true_folder / f"{name}_test.csv",
                    "train_vs_true": true_folder / f"{name}_train.csv",
                    "pca": results_p / "pca_original" / f"Run_{self.run}" / "pca_com"
                    / f"pca_train_original_{layer}.csv"}
        pca = "PCA" if exp == 3 else "pca_corrupted"
        return {"train_vs_corrupted": results_p / "angle_results" / run_part / f"{name}_train.csv",
                "test": results_p / "angle_results" / run_part / f"{name}_test.csv",
                "train_vs_true": results_p / "angle_results_exp2" / run_part / f"{name}_train.csv",
                "pca": (results_p / pca / f"Run_{self.run}" / "pca_com"
                        / f"pca_train_corrupt_{layer}.csv")}

    def reference_retrain_files(self, subspaces_from, memorised_epoch=None, layer=None):
        """The reference protocol's retraining files (docs/protocol.md, 'Retraining with MASC
        relabels' and 'Output file layout') under angle_results_retrain_30/{ds}_{model}/results_{p}:
        ``history`` (per epoch), ``test80`` (the memorised model), ``change`` (relabelling
        percentages) and, given a ``layer``, its MASC accuracies ``layer_test80`` and
        ``layer_test20``."""
        base = (self.out / "angle_results_retrain_30" / tag(self.dataset, self.model)
                / f"results_{self._p}")
        run = f"Run_{self.run}"
        files = {"history": base / f"Retrain_Acc_{SHORT[subspaces_from]}" / f"{run}.csv",
                 "test80": base / "Retrain_Acc_org" / f"{run}_test80.csv",
                 "change": base / "percentages_data_change" / f"{run}_percent.csv"}
        if layer is not None:
            folder = (base / {"corrupted": "angle_results", "original": "angle_results_exp3"}[
                subspaces_from] / run / str(memorised_epoch))
            files.update(layer_test80=folder / f"layer_{layer}_acc_overall_test_80.csv",
                         layer_test20=folder / f"layer_{layer}_acc_overall_test.csv")
        return files

    def load_progress(self):
        """The run's saved progress, or None when it has none."""
        return load_progress(self.progress)

    def command(self, config=None):
        """The command that trains this run, with ``--out`` and the settings of its saved progress
        ``config`` where known (so that it resumes or completes that run, not another)."""
        flags = [f"--out {self.out}"] if str(self.out) != "." else []
        config = config or {}
        if config.get("seed") is not None and config["seed"] != self.run:
            flags.append(f"--seed {config['seed'] - self.run}")
        for key, flag in (("subset", "--subset"), ("test_subset", "--test-subset")):
            if config.get(key) is not None:
                flags.append(f"{flag} {config[key]}")
        if config.get("holdout"):
            flags.append(f"--holdout {config['holdout']}")
        if config.get("label_seed") not in (None, 42):
            flags.append(f"--label-seed {config['label_seed']}")
        flags += [f"--{key}" for key in ("shuffle", "bf16", "tf32") if config.get(key)]
        return " ".join([f"python pytorch_training.py -corr {self._p} -model {self.model} "
                         f"-dataset {self.dataset} -run {self.run}", *flags])

    def require_checkpoint(self, config=None):
        """The run's final checkpoint, or a clear error naming the command that makes it."""
        path = self.final_checkpoint()
        if path is None:
            raise MASCError(f"no trained model in {self.folder}; train it first: "
                            f"{self.command(config)}")
        return path


_KINDS = {  # CSV kind -> (glob in its {ds}_{model} folder, regex of the same names)
    "accuracy": ("*/Run_*.csv", r"(?P<p>[0-9.]+)/Run_(?P<run>\d+)\.csv"),
    "training": ("*_Run_*.csv", r"(?P<p>[0-9.]+)_Run_(?P<run>\d+)\.csv"),
    "masc": ("*/Run_*_exp*.csv", r"(?P<p>[0-9.]+)/Run_(?P<run>\d+)_exp(?P<exp>[123])\.csv"),
    "probes": ("*/Run_*.csv", r"(?P<p>[0-9.]+)/Run_(?P<run>\d+)\.csv"),
    "sensitivity": ("*/Run_*.csv", r"(?P<p>[0-9.]+)/Run_(?P<run>\d+)\.csv"),
    **{kind: ("*/Run_*_*.csv", r"(?P<p>[0-9.]+)/Run_(?P<run>\d+)_(?P<part>[a-z]+)\.csv")
       for kind in LABEL_NOISE.values()},
}


def find(out, kind, dataset=None, model=None, **fields):
    """``[(RunKey, {field: value}, path)]`` of every per-run CSV of one kind under ``out``: the
    reference's training CSVs ("accuracy") or our tidy ones (training, masc, probes, sensitivity,
    label_noise); only ``dataset``/``model`` if given, and only names whose fields, e.g.
    ``part="scores"``, match; sorted by path. The key comes from the file's name: a reader can
    check that the rows inside belong to it."""
    found = []
    for folder in sorted(kind_folders(out, kind)):
        ds, _, mdl = _tag_of(folder, kind).partition("_")
        if (not dataset or ds == dataset) and (not model or mdl == model):
            found += find_in(folder, kind, **fields)
    return found


def kind_folders(out, kind):
    """The {ds}_{model} folders of one kind of CSV under ``out``."""
    if kind == "accuracy":
        return Path(out).glob("models/*_*/Accuracy_results")
    return tidy_root(out).joinpath(kind).glob("*_*")


def _tag_of(folder, kind):
    return folder.parent.name if kind == "accuracy" else folder.name


def find_in(folder, kind, **fields):
    """:func:`find` in one {ds}_{model} folder of a kind (e.g. a study's tidy_dir)."""
    folder = Path(folder)
    pattern, regex = _KINDS[kind]
    ds, _, mdl = _tag_of(folder, kind).partition("_")
    out = folder.parents[2]
    found = []
    for path in sorted(folder.glob(pattern)):
        match = re.fullmatch(regex, path.relative_to(folder).as_posix())
        if match is None:
            continue
        named = match.groupdict()
        key = RunKey(out, ds, mdl, float(named.pop("p")), int(named.pop("run")))
        named = {k: int(v) if k == "exp" else v for k, v in named.items()}
        if all(named.get(k) == v for k, v in fields.items()):
            found.append((key, named, path))
    return found


def run_dir(out, dataset, model, p, run):
    """Folder of a trained run (:attr:`RunKey.folder`)."""
    return RunKey(out, dataset, model, p, run).folder


def masc_csv(out, dataset, model, p, run, exp, per_class=False):
    """Our tidy MASC results of one (dataset, model, p, run, exp) (:meth:`RunKey.masc_csv`)."""
    return RunKey(out, dataset, model, p, run).masc_csv(exp, per_class)


def load_progress(path):
    """A saved progress file (:attr:`RunKey.progress`), or None when there is none."""
    path = Path(path)
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


def tidy_root(out):
    """Root of our tidy CSVs: {kind}/{ds}_{model}/... under it."""
    return Path(out) / "results"


def tidy_dir(out, kind, dataset, model):
    """Folder of our tidy CSVs of one kind (training, masc, retrain, ...) and of its studies'
    summaries."""
    return tidy_root(out) / kind / tag(dataset, model)


def sweep_dir(out, name=None):
    """Where ``python -m MASC.sweep`` records its sweeps (one folder per sweep name)."""
    folder = Path(out) / "sweeps"
    return folder / name if name else folder


def sweep_record(out, name):
    """A sweep's record of its jobs and logs."""
    return sweep_dir(out, name) / "sweep.json"


def checkpoint_epoch(path):
    """The number in a checkpoint's name ``model_{e}.pth``: the reference's 0-based epoch, so the
    weights after e + 1 epochs (None for other names)."""
    match = re.fullmatch(r"model_(\d+)\.pth", Path(path).name)
    return int(match.group(1)) if match else None


def final_checkpoint(folder):
    """The highest ``model_{e}.pth`` in a folder (what the reference loads), or None."""
    found = [(checkpoint_epoch(f), f) for f in Path(folder).glob("model_*.pth")]
    found = [(e, f) for e, f in found if e is not None]
    return max(found)[1] if found else None


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
    name is unique to this write (host, pid and a random part), so two processes never write to
    the same one; on any failure it is removed, and temporaries that killed writers on this host
    left beside ``path`` are removed first."""
    path = Path(path)
    _writable_folder(path.parent)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}-"
                         f"{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise MASCError(f"cannot write {path} ({e.strerror or e}); nothing was changed there; "
                        f"free space or choose another --out") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _remove_stale_temporaries(path):
    """Remove the temporaries of :func:`atomic` beside ``path`` whose writer, a process on this
    host, is gone (killed during a write)."""
    name = re.compile(rf"\.{re.escape(path.name)}\.(?P<host>.+)\.(?P<pid>\d+)-[0-9a-f]{{8}}\.tmp.*")
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.tmp*"):
        match = name.fullmatch(tmp.name)
        if match and match["host"] == socket.gethostname() and not _alive(int(match["pid"])):
            tmp.unlink(missing_ok=True)


def glob_escape(text):
    """``text`` with glob's special characters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
def lock(path, wait=True, what="written", shared=False):
    """Hold a lock on ``path``'s lock file (``.{name}.lock`` beside it) while the block runs:
    exclusive (its holder's line is written in the file), or ``shared`` (many readers at once, no
    writer; where the lock file cannot be made, e.g. in a read-only folder that no one can
    write to either, nothing is locked). ``wait=False``: if a conflicting holder has it, fail at
    once, naming the holder. The operating system drops a lock whose process dies, so a lock is
    never stale."""
    path = Path(path)
    if shared:
        try:
            fh = open(_lock_file(path), "a+")
        except OSError:
            try:
                fh = open(_lock_file(path))
            except OSError:
                yield
                return
    else:
        _writable_folder(path.parent)
        try:
            fh = open(_lock_file(path), "a+")
        except OSError as e:
            raise MASCError(f"cannot write under {path.parent} ({e.strerror or e}); choose "
                            f"another --out") from None
    with fh:
        try:
            fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                        | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            doing = f"{what} by {holder}" if holder else "read by another process"
            raise MASCError(f"{path} is being {doing}; wait for it to finish (or stop it) and "
                            f"run again") from None
        if shared:
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
            return
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


def merge_csv(frame, path, keys, model=(), fill=None):
    """Write ``frame`` to ``path``, keeping the rows already there that it does not recompute:
    rows of other ``keys`` (layers, probes, and read-out settings such as the threshold, kept
    apart) add up in one file. Rows of another model, whose ``model`` columns (the weights read:
    checkpoint and training settings) differ from ``frame``'s or are not recorded, are dropped:
    they describe weights that are gone. Key and model columns that an older file lacks read as
    not recorded, or as ``fill``'s value ({column: value}, e.g. the MASC CSVs' network "trained"
    for files from before the random-init control). The read and the write happen under the
    file's lock: two processes merging into one file lose no row."""
    path, fill = Path(path), fill or {}
    with lock(path):
        if path.exists():
            old = read_csv(path, [k for k in keys if k not in PROVENANCE and k not in fill])
            old = old.assign(**{k: v for k, v in fill.items() if k not in old})
            view = old.reindex(columns=list(dict.fromkeys([*keys, *model])))
            keep = ~pd.MultiIndex.from_frame(_canonical(view[keys])).isin(
                pd.MultiIndex.from_frame(_canonical(frame[keys])))
            if model:
                mine = _canonical(frame[list(model)].iloc[:1]).iloc[0]
                keep &= _canonical(view[list(model)]).eq(mine).all(axis=1).to_numpy()
            if keep.any():
                frame = pd.concat([old[keep], frame], ignore_index=True)
        return write_csv(frame, path)


def environment(device):
    """What computed a result, for the :data:`ENVIRONMENT_COLUMNS` of its rows: the torch and
    CUDA versions, the device (a GPU's or CPU's name too) and the code's git commit
    (``+dirty``: with uncommitted changes; empty outside a git checkout)."""
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
    commit, status = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    return {"torch": torch.__version__, "cuda": torch.version.cuda or "",
            "device": f"{device} ({name})",
            "commit": (commit or "") + ("+dirty" if commit and status else "")}


def _read_lines(path):
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def same_settings(frame, settings, rows=False):
    """Whether ``frame``'s rows were written with ``settings`` (column -> value; a column the
    frame lacks counts as other settings): for every row (``rows``: a mask, row by row)."""
    view = frame.reindex(columns=list(settings))
    same = _canonical(view).eq(_canonical(pd.DataFrame([settings])).iloc[0]).all(axis=1)
    return same.to_numpy() if rows else bool(len(frame)) and bool(same.all())


def _canonical(frame):
    """Cells as comparable text: numbers by value (1, 1.0 and "1" alike), NaN as "nan"."""
    def text(v):
        if isinstance(v, (bool, np.bool_)) or v is None:
            return str(v)
        try:
            return repr(float(v))
        except (TypeError, ValueError):
            return str(v)
    return frame.astype(object).apply(lambda column: column.map(text)).reset_index(drop=True)


def save_torch(obj, path):
    """``torch.save`` atomically (a checkpoint is never half written); returns the path. A
    failed write (a full disk: torch raises RuntimeError) is one line; the old file stays."""
    with atomic(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:
            raise OSError(str(e).strip().splitlines()[0]) from None
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
