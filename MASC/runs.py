"""One place to load a trained run: its network, the rows and labels it was trained on, and the
data splits, each checked against the run's saved files (clear errors when they do not fit)."""
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import data, models, results
from .corruption import REFERENCE_SEED, RunLabels, corrupt_labels
from .errors import MASCError


@dataclass
class TrainedRun:
    """A trained run at corruption degree ``p`` under ``out``: its network (final checkpoint, CPU), its
    :class:`RunLabels`, the training split's rows it knows (trained on or held out) and the
    test split."""

    out: object  # the results root it lives under
    dataset: str
    model: str
    p: float
    run: int
    net: nn.Module
    labels: RunLabels
    train: data.Split
    test: data.Split
    seed: float  # the training seed (NaN for a checkpoint trained elsewhere)
    spec: data.DatasetInfo = None  # the data's shape, classes and normalisation (None: dataset's)

    def __post_init__(self):
        self.spec = self.spec or data.info(self.dataset)

    def initial_network(self, seed=None):
        """The network as its training started: the same architecture with the initial weights
        of the run's seed (or of ``seed``), untrained."""
        seed = self.seed if seed is None else seed
        if seed != seed:
            raise MASCError(f"the training seed of {self.dataset} {self.model} p={self.p} run "
                            f"{self.run} is unknown (a checkpoint trained elsewhere), so are its "
                            f"initial weights; give the seed with --init-seed")
        return models.build(self.model, self.dataset, seed=int(seed))

    def training(self):
        """``(split, corrupted, true)`` of the rows the network was trained on."""
        return self.labels.training(self.train)

    def ids(self):
        """The columns that name this run in a tidy CSV."""
        return {"dataset": self.dataset, "model": self.model, "corrupt": self.p, "run": self.run,
                "seed": self.seed}


def load_run(out, dataset, model, p, run, *, root=None, subset=None, test_subset=None,
             reference_labels=False):
    """The :class:`TrainedRun` of a run under ``out`` (its first ``subset`` training rows, the
    first ``test_subset`` test images). ``reference_labels``: for a checkpoint trained elsewhere
    on the whole training set with the reference's labels (no labels.npz or progress.pt)."""
    config = _config(out, dataset, model, p, run)
    net = load_network(out, dataset, model, p, run, config)
    train, test = data.load(dataset, root, True), data.load(dataset, root, False)
    labels = run_labels(out, dataset, model, p, run, train.labels.numpy(), subset=subset,
                        reference=reference_labels, config=config)
    return TrainedRun(out, dataset, model, p, run, net, labels, train.first(len(labels.true)),
                      test.first(test_subset), (config or {}).get("seed", float("nan")))


def _config(out, dataset, model, p, run):
    return (results.load_progress(results.run_dir(out, dataset, model, p, run)) or {}).get("config")


def load_network(out, dataset, model, p, run, config=None):
    """The final checkpoint of a run, loaded into a fresh model (clear errors if missing or bad).
    ``config``: the run's saved settings, when the caller has read them already."""
    config = config or _config(out, dataset, model, p, run)
    path = results.require_checkpoint(out, dataset, model, p, run, config)
    net = models.build(model, dataset)
    retrain = results.training_command(out, dataset, model, p, run, config)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise MASCError(f"checkpoint {path} is unreadable ({type(e).__name__}); delete it and "
                        f"train again: {retrain}") from None
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0][:200]
        raise MASCError(f"checkpoint {path} does not fit a {model} for {dataset} ({first})") from None
    return net


def run_labels(out, dataset, model, p, run, true_labels, *, subset=None, reference=False,
               config=None):
    """The :class:`RunLabels` of a run at p (its first ``subset`` rows), checked against the
    dataset and the run: the labels saved at training time (labels.npz), else those its saved
    progress (``config``) describes. ``reference=True`` is for checkpoints trained elsewhere on
    the whole training set with the reference's labels (seed 42), which come with neither file."""
    folder = results.run_dir(out, dataset, model, p, run)
    path, num_classes = results.labels_path(folder), data.info(dataset).num_classes
    true = np.asarray(true_labels)
    config = config or _config(out, dataset, model, p, run)
    if path.exists():
        saved = RunLabels.load(path)
        where = f"{path}"
    elif config:
        saved = RunLabels.of_run(true, p, num_classes, config["label_seed"], config["subset"],
                                 config["holdout"])
        where = f"the labels that {results.progress_path(folder)} describes"
    elif reference:
        saved = RunLabels.of_run(true, p, num_classes)
        where = "the reference's labels"
    else:
        raise MASCError(
            f"{folder} has no labels.npz or progress.pt, so the rows and labels its model was "
            f"trained on are unknown; train it again ({results.training_command(out, dataset, model, p, run)}"
            f"), or, for a checkpoint trained on the "
            f"whole training set with the reference's labels, pass --reference-labels")
    _check_labels(saved, where, true, p, num_classes, config)
    n = subset or len(saved.true)
    if n > len(saved.true):
        raise MASCError(f"the model in {folder} was trained on the first {len(saved.true)} "
                        f"training samples; --subset can be at most that")
    return RunLabels(saved.corrupted[:n], saved.true[:n], saved.holdout[saved.holdout < n],
                     saved.corrupt, saved.label_seed)


def _check_labels(saved, where, true, p, num_classes, config):
    """Refuse labels that do not belong to this dataset, degree p or the run's training rows."""
    n = len(saved.true)
    if n > len(true) or not np.array_equal(saved.true, true[:n]):
        raise MASCError(f"{where}: its true labels are not this dataset's; copied from another "
                        f"run? delete it and run pytorch_training.py again with the run's settings")
    if saved.corrupt is not None and saved.corrupt != float(p):
        raise MASCError(f"{where} holds labels corrupted at p={saved.corrupt}, not p={p}; "
                        f"copied from another run? delete it and run pytorch_training.py again")
    if config and n != (config["subset"] or len(true)):
        raise MASCError(f"{where} has {n} rows but the model was trained on "
                        f"{config['subset'] or len(true)}; delete it and run pytorch_training.py "
                        f"again with the run's settings")
    seed = saved.label_seed if saved.label_seed is not None else (config or {}).get(
        "label_seed", REFERENCE_SEED)
    if not np.array_equal(saved.corrupted, corrupt_labels(true, p, num_classes, seed)[:n]):
        raise MASCError(f"{where}: its corrupted labels are not those of p={p} with label seed "
                        f"{seed}; delete it and run pytorch_training.py again with the run's "
                        f"settings")
