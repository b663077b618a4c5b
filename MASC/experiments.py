"""The paper's MASC experiments on trained models (docs/protocol.md, 'Experiments exp1, exp2,
exp3').

exp1: the memorised model at p, subspaces from the corrupted labels;
exp2: the same model, subspaces from the true labels;
exp3: the model trained at p = 0.0 (same run), subspaces from the labels corrupted at p.
exp1 and exp2 share one pass over the data.
"""
import numpy as np
import pandas as pd
import torch

from . import data, models, readout, results, training
from .corruption import REFERENCE_SEED, RunLabels, corrupt_labels
from .errors import MASCError
from .masc import accuracy

SUBSPACES = {1: "corrupted", 2: "original", 3: "corrupted"}
MERGE_KEYS = ["subspaces_from", "layer"]  # a row of our MASC CSVs per (labelling, layer)


def load_trained(out, dataset, model, p, run):
    """The final checkpoint of a run, loaded into a fresh model (clear errors if missing or bad)."""
    config = (training.load_progress(results.run_dir(out, dataset, model, p, run)) or {}).get("config")
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


def run_labels(out, dataset, model, p, run, true_labels, subset=None, reference=False):
    """The :class:`RunLabels` of a run at p (its first ``subset`` rows), checked against the
    dataset and the run: the labels saved at training time (labels.npz), else those its saved
    progress describes. ``reference=True`` is for checkpoints trained elsewhere on the whole
    training set with the reference's labels (seed 42), which come with neither file."""
    folder = results.run_dir(out, dataset, model, p, run)
    path, num_classes = folder / "labels.npz", data.info(dataset).num_classes
    true = np.asarray(true_labels)
    config = (training.load_progress(folder) or {}).get("config")
    if path.exists():
        saved = RunLabels.load(path)
        where = f"{path}"
    elif config:
        saved = RunLabels.of_run(true, p, num_classes, config["label_seed"], config["subset"],
                                 config["holdout"])
        where = f"the labels that {folder / 'progress.pt'} describes"
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


def masc_experiments(dataset, model, p, run, exps, out=".", root=None, device="auto",
                     threshold=0.99, layers=None, subset=None, per_sample_bn=True,
                     batch_size=readout.BATCH, reference_labels=False, log=print):
    """Run the chosen experiments; returns one tidy DataFrame (rows: exp x layer)."""
    device = training.pick_device(device)
    spec = data.info(dataset)
    for exp in exps:  # results files we will merge into must be readable before any work
        for per_class, keys in ((False, MERGE_KEYS), (True, MERGE_KEYS + ["class"])):
            path = results.masc_csv(out, dataset, model, p, run, exp, per_class)
            if path.exists():
                results.read_csv(path, keys)
    train_split, test_split = data.load(dataset, root, True), data.load(dataset, root, False)
    class_masks = [test_split.labels == c for c in range(spec.num_classes)]
    frames = []
    for model_p, group in ((p, [e for e in exps if e in (1, 2)]), (0.0, [e for e in exps if e == 3])):
        if not group:
            continue
        net = load_trained(out, dataset, model, model_p, run)
        labels = run_labels(out, dataset, model, p, run, train_split.labels.numpy(), subset,
                            reference_labels)
        split, corrupted, true = labels.training(train_split)
        given = {"corrupted": corrupted, "original": true}
        labellings = {SUBSPACES[e]: given[SUBSPACES[e]] for e in group}
        log(f"{dataset} {model} run {run}: MASC on the model trained at p={model_p} "
            f"(exp{'+'.join(map(str, group))}, {len(split)} training samples, {device})")
        estimators, fit_seconds = readout.fit_masc(
            net, split, labellings, dataset, layers, device, threshold, batch_size, per_sample_bn,
            classes=range(spec.num_classes))
        train_pred, _, train_seconds = readout.predict(net, split.images, estimators, dataset,
                                                       device, batch_size, per_sample_bn)
        test_pred, net_pred, test_seconds = readout.predict(net, test_split.images, estimators,
                                                            dataset, device, batch_size, per_sample_bn)
        model_test_acc = accuracy(net_pred, test_split.labels)
        for exp in group:
            keys = [key for key in estimators if key[0] == SUBSPACES[exp]]
            rows, per_class = [], []
            for key in keys:
                est, layer = estimators[key], key[1]
                k = est.n_components_
                row = {"dataset": dataset, "model": model, "corrupt": p, "run": run, "exp": exp,
                       "subspaces_from": key[0], "layer": layer, "dim": est.n_features_in_,
                       "k_min": int(k.min()), "k_mean": float(k.mean()), "k_max": int(k.max()),
                       "train_acc_vs_corrupted": accuracy(train_pred[key], corrupted),
                       "train_acc_vs_true": accuracy(train_pred[key], true),
                       "test_acc": accuracy(test_pred[key], test_split.labels),
                       "model_test_acc": model_test_acc, "threshold": threshold,
                       "n_train": len(split), "fit_seconds": round(fit_seconds[key], 4),
                       "predict_seconds": round(train_seconds[key] + test_seconds[key], 4)}
                rows.append(row)
                for c, mask in enumerate(class_masks):
                    per_class.append({**{f: row[f] for f in ("dataset", "model", "corrupt", "run",
                                                             "exp", "subspaces_from", "layer")},
                                      "class": c, "n_test": int(mask.sum()),
                                      "test_acc": accuracy(test_pred[key][mask], test_split.labels[mask])})
            frame = pd.DataFrame(rows)  # rows of layers not recomputed now are kept
            results.merge_csv(frame, results.masc_csv(out, dataset, model, p, run, exp),
                              MERGE_KEYS)
            results.merge_csv(pd.DataFrame(per_class),
                              results.masc_csv(out, dataset, model, p, run, exp, per_class=True),
                              MERGE_KEYS + ["class"])
            for key, row in zip(keys, rows):  # the reference's files once ours are written
                _write_reference(out, dataset, model, p, run, exp, key[1], row,
                                 estimators[key].n_components_)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _write_reference(out, dataset, model, p, run, exp, layer, row, n_components):
    files = results.reference_masc_files(out, dataset, model, p, run, exp, layer)
    values = {"train_vs_corrupted": row["train_acc_vs_corrupted"],
              "train_vs_true": row["train_acc_vs_true"], "test": row["test_acc"]}
    for what, path in files.items():
        if what == "pca":
            results.write_csv(pd.DataFrame({"number_pca_components_class": n_components}), path,
                              index=True)
        else:
            results.write_single_value(values[what], path)
