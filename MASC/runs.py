"""One place to load a trained run: its network, the rows and labels it was trained on, and the
data splits, each checked against the run's saved files (clear errors when they do not fit)."""
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import data, models, results
from .corruption import REFERENCE_SEED, RunLabels, corrupt_labels, holdout_rows
from .errors import MASCError
from .results import RunKey


def as_key(where):
    """A :class:`~MASC.results.RunKey` from ``(key,)`` or ``(out, dataset, model, p, run)``."""
    return where[0] if len(where) == 1 and isinstance(where[0], RunKey) else RunKey(*where)


@dataclass
class TrainedRun:
    """A trained run (its :class:`~MASC.results.RunKey` ``key``): its network (final checkpoint,
    CPU), its :class:`RunLabels`, the training split's rows it knows (trained on or held out),
    the test split, and ``provenance``: what made the weights read
    (:data:`~MASC.results.MODEL_COLUMNS`), recorded in every row a read-out writes."""

    key: RunKey
    net: nn.Module
    labels: RunLabels
    train: data.Split
    test: data.Split
    provenance: dict

    out = property(lambda self: self.key.out)
    dataset = property(lambda self: self.key.dataset)
    model = property(lambda self: self.key.model)
    corrupt = property(lambda self: self.key.corrupt)
    p = corrupt  # the reference scripts' name for the corruption degree
    run = property(lambda self: self.key.run)
    seed = property(lambda self: self.provenance["seed"])  # training seed (NaN: trained elsewhere)

    def training(self):
        """``(split, corrupted, true)`` of the rows the network was trained on."""
        return self.labels.training(self.train)

    def ids(self):
        """The columns that name this run in a tidy CSV."""
        return {**self.key.ids(), "seed": self.seed}


def load_run(*where, root=None, subset=None, test_subset=None, reference_labels=False):
    """The :class:`TrainedRun` of a run (``where``: its RunKey, or out, dataset, model, p, run):
    its first ``subset`` training rows, the first ``test_subset`` test images.
    ``reference_labels``: for a checkpoint trained elsewhere on the whole training set with the
    reference's labels (no labels.npz or progress.pt). A run being trained is refused."""
    key = as_key(where)
    config = _config(key)
    net, provenance = load_weights(key, config)
    train, test = data.load(key.dataset, root, True), data.load(key.dataset, root, False)
    labels = run_labels(key, train.labels.numpy(), subset=subset, reference=reference_labels,
                        config=config)
    if labels.label_seed is not None:
        provenance["label_seed"] = labels.label_seed
    return TrainedRun(key, net, labels, train.first(len(labels.true)), test.first(test_subset),
                      provenance)


def load_weights(key, config=None):
    """``(network, provenance)`` of a run's final checkpoint: :func:`load_network` and what
    made those weights (:data:`~MASC.results.MODEL_COLUMNS`; ``config``: its saved settings
    when the caller has read them already)."""
    config = config or _config(key) or {}
    net, path = load_network(key, config=config, with_path=True)
    return net, {"seed": config.get("seed", math.nan),
                 "label_seed": config.get("label_seed", REFERENCE_SEED),
                 "subset": config.get("subset") or data.info(key.dataset).train_size,
                 "holdout": config.get("holdout", 0.0),
                 "checkpoint_epoch": results.checkpoint_epoch(path) + 1}


def _config(key):
    return (results.load_progress(key.progress) or {}).get("config")


def load_network(*where, config=None, with_path=False):
    """The final checkpoint of a run (``where``: its RunKey, or out, dataset, model, p, run),
    loaded into a fresh model (clear errors if missing, bad, or being trained now).
    ``config``: the run's saved settings, when the caller has read them already; ``with_path``:
    return ``(network, checkpoint path)``."""
    key = as_key(where)
    holder = results.lock_holder(key.folder)
    if holder:
        raise MASCError(f"{key.folder} is being trained by {holder}; its checkpoint is not final "
                        f"yet: wait for the training to finish (or stop it) and run again")
    config = config or _config(key)
    path = key.require_checkpoint(config)
    net = models.build(key.model, key.dataset)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise MASCError(f"checkpoint {path} is unreadable ({type(e).__name__}); delete it and "
                        f"train again: {key.command(config)}") from None
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0][:200]
        raise MASCError(f"checkpoint {path} does not fit a {key.model} for {key.dataset} "
                        f"({first})") from None
    net.input_scaling = (config or {}).get("scaling", "reference")  # how its inputs were scaled
    return (net, path) if with_path else net


def run_labels(key, true_labels, *, subset=None, reference=False, config=None):
    """The :class:`RunLabels` of a run (its RunKey; its first ``subset`` rows), checked against
    the dataset and the run's saved settings: the labels saved at training time (labels.npz),
    else those its saved progress (``config``) describes. ``reference=True`` is for checkpoints
    trained elsewhere on the whole training set with the reference's labels (seed 42), which
    come with neither file."""
    p, folder = key.corrupt, key.folder
    path, num_classes = key.labels, data.info(key.dataset).num_classes
    true = np.asarray(true_labels)
    config = config or _config(key)
    if path.exists():
        saved = RunLabels.load(path)
        where = f"{path}"
    elif config:
        saved = RunLabels.of_run(true, p, num_classes, config["label_seed"], config["subset"],
                                 config["holdout"])
        where = f"the labels that {key.progress} describes"
    elif reference:
        saved = RunLabels.of_run(true, p, num_classes)
        where = "the reference's labels"
    else:
        raise MASCError(
            f"{folder} has no {key.labels.name} or {key.progress.name}, so the rows and labels "
            f"its model was trained on are unknown; train it again ({key.command()}), or, for a "
            f"checkpoint trained on the whole training set with the reference's labels, pass "
            f"--reference-labels")
    _check_labels(saved, where, true, p, num_classes, config)
    n = subset or len(saved.true)
    if n > len(saved.true):
        raise MASCError(f"the model in {folder} was trained on the first {len(saved.true)} "
                        f"training samples; --subset can be at most that")
    return RunLabels(saved.corrupted[:n], saved.true[:n], saved.holdout[saved.holdout < n],
                     saved.corrupt, saved.label_seed)


def _check_labels(saved, where, true, p, num_classes, config):
    """Refuse labels that do not belong to this dataset, degree p or the run's training rows,
    label seed and hold-out (those of its saved progress ``config``, where it has one)."""
    n = len(saved.true)
    again = "delete it and run pytorch_training.py again with the run's settings"
    if n > len(true) or not np.array_equal(saved.true, true[:n]):
        raise MASCError(f"{where}: its true labels are not this dataset's; copied from another "
                        f"run? {again}")
    if saved.corrupt is not None and saved.corrupt != float(p):
        raise MASCError(f"{where} holds labels corrupted at p={saved.corrupt}, not p={p}; "
                        f"copied from another run? delete it and run pytorch_training.py again")
    if config and n != (config["subset"] or len(true)):
        raise MASCError(f"{where} has {n} rows but the model was trained on "
                        f"{config['subset'] or len(true)}; {again}")
    if config and saved.label_seed is not None and saved.label_seed != config["label_seed"]:
        raise MASCError(f"{where} holds labels of label seed {saved.label_seed} but the model was "
                        f"trained with label seed {config['label_seed']}; {again}")
    if config and not np.array_equal(saved.holdout, holdout_rows(n, config["holdout"])):
        raise MASCError(f"{where} holds out {len(saved.holdout)} rows but the model was trained "
                        f"with a hold-out of {config['holdout']} "
                        f"({len(holdout_rows(n, config['holdout']))} rows); {again}")
    seed = saved.label_seed if saved.label_seed is not None else (config or {}).get(
        "label_seed", REFERENCE_SEED)
    if not np.array_equal(saved.corrupted, corrupt_labels(true, p, num_classes, seed)[:n]):
        raise MASCError(f"{where}: its corrupted labels are not those of p={p} with label seed "
                        f"{seed}; {again}")
