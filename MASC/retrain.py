"""Retraining with MASC relabels (docs/protocol.md, 'Retraining with MASC relabels'): fine-tune
a memorised model on the labels that
MASC predicts at its best layer.

Two protocols decide which data pick the layer, stop the fine-tuning early and are reported:

* ``reference`` (the paper's): the clean test set is split 80/20 (sklearn, seed 2345); test20
  picks the layer and stops early, test80 is reported. The model selection thus sees test labels,
  and the last epoch's weights are kept (the reference never restores the best epoch).
* ``clean`` (our fix): the training images that the memorised model was *not* trained on
  (``pytorch_training.py --holdout``), with their corrupted labels only, pick the layer and stop
  early; the training rows are relabelled and trained on; the full test set is only reported, and
  the best epoch's weights are restored. Under the reference's uniform noise the expected accuracy
  against noisy labels is (1 - p) a + p / C for accuracy a against the true labels, so noisy labels
  of unseen images rank layers and epochs as the true ones would (in expectation). A hold-out the
  model was trained on would not do: it has memorised those noisy labels too (MNIST-CNN p = 0.8:
  99.7% on them, 30% on the test set), which favours the most memorising layer and epoch.

Subspaces come from the corrupted ("corrupted", the reference's corr) or the true training labels
("original", org). Fine-tuning reuses the training engine: a stack of one model, the model's
optimiser (fresh), batch size and cross-entropy loss.
"""
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from . import data, results, training
from .corruption import LABELLINGS
from .devices import pick_device
from .errors import MASCError
from .masc import THRESHOLD, accuracy
from .readout import Settings

PROTOCOLS = ("reference", "clean")
SHORT = results.SHORT
REFERENCE_SPLIT_SEED = 2345
REFERENCE_TEST20 = 0.2
MAX_EPOCHS = 30  # fine-tuning epoch cap (the reference's)
PATIENCE = 3  # epochs without a strict improvement of the validation accuracy before stopping


def split_indices(n, held_out, seed):
    """(kept, held-out) indices of range(n), as ``sklearn.train_test_split`` orders them.

    The reference splits its 10,000 test images with ``held_out=0.2, seed=2345``: 8,000 / 2,000."""
    kept, held = train_test_split(np.arange(n), test_size=held_out, random_state=seed)
    return kept, held


@dataclass
class Splits:
    """What one protocol selects with and reports (both protocols fit MASC on, relabel and
    fine-tune on the rows the model was trained on: ``RunLabels.train_rows``)."""

    val: data.Split   # picks the layer and stops early
    test: data.Split  # reported only


def protocol_splits(protocol, train, labels, test):
    """The :class:`Splits` of a protocol: ``train`` is the run's training split, ``labels`` its
    :class:`~MASC.corruption.RunLabels` (the clean protocol validates on its hold-out)."""
    if protocol == "reference":
        test80, test20 = split_indices(len(test), REFERENCE_TEST20, REFERENCE_SPLIT_SEED)
        return Splits(test.take(test20), test.take(test80))
    if protocol != "clean":
        raise MASCError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if not len(labels.holdout):
        raise MASCError("the clean protocol validates on training images the memorised model never "
                        "saw: train it with a hold-out first, e.g. pytorch_training.py ... "
                        "--holdout 0.1")
    noisy = data.Split(train.images, torch.as_tensor(labels.corrupted))
    return Splits(noisy.take(labels.holdout), test)


def _share(count, total):
    return float(count) / total if total else math.nan


def relabel_stats(given, true, relabels):
    """How relabelling changed the training labels (fractions; docs/protocol.md, 'Retraining
    with MASC relabels'), and how well
    "MASC disagrees with the given label" detects corrupted labels (given != true).

    NaN where there is nothing to divide by, e.g. everything about corrupted labels at p = 0."""
    given, true, relabels = (np.asarray(a) for a in (given, true, relabels))
    corrupted, flagged = given != true, relabels != given
    n_corrupted = int(corrupted.sum())
    caught = int((flagged & corrupted).sum())
    return {"n_train": len(given), "n_corrupted": n_corrupted, "n_relabelled": int(flagged.sum()),
            "relabel_acc_vs_true": _share((relabels == true).sum(), len(true)),
            "wrong_relabelled_correctly": _share((corrupted & (relabels == true)).sum(), n_corrupted),
            "correct_relabelled_wrongly": _share((~corrupted & flagged).sum(), len(given) - n_corrupted),
            "net_change": _share(n_corrupted - (relabels != true).sum(), n_corrupted),
            "detector_precision": _share(caught, flagged.sum()) if n_corrupted else math.nan,
            "detector_recall": _share(caught, n_corrupted)}


class EarlyStopping:
    """Stop after ``patience`` epochs in a row without a strict improvement of a score."""

    def __init__(self, patience):
        self.patience, self.best, self.best_epoch, self.waited = patience, -math.inf, None, 0

    def step(self, epoch, score):
        """Record an epoch's score; True when training should stop now."""
        if score > self.best:
            self.best, self.best_epoch, self.waited = score, epoch, 0
        else:
            self.waited += 1
        return self.waited >= self.patience


def fine_tune(net, train, val, test, run, *, device="cpu", max_epochs=MAX_EPOCHS,
              patience=PATIENCE, shuffle=False, restore_best=False, log=print):
    """Fine-tune ``net`` on ``train`` (its labels: the relabels) with the training engine
    (``run``: its seed fixes the data order).

    Each epoch: train (running accuracy against the relabels), then evaluate ``val`` and ``test``;
    early stopping on ``val``. Returns ``(history, stopper, weights)``: rows (epoch, train %,
    val %, test %), the :class:`EarlyStopping`, and the best epoch's weights with
    ``restore_best``, else the last epoch's (CPU state_dict)."""
    device = pick_device(device)
    trainer = training.Trainer([run], [net.to(device)], train.labels[None].to(device),
                               train.to(device), graphs=device.type == "cuda",
                               scaling=data.input_scaling(net))
    val, test = val.to(device), test.to(device)
    stopper, history, best = EarlyStopping(patience), [], None
    for epoch in range(1, max_epochs + 1):
        train_acc = trainer.train_epoch(epoch - 1, shuffle)[0]
        val_acc, test_acc = trainer.evaluate(val)[0], trainer.evaluate(test)[0]
        history.append((epoch, train_acc, val_acc, test_acc))
        stop = stopper.step(epoch, val_acc)
        if restore_best and stopper.best_epoch == epoch:
            best = trainer.stack.state_dict(0)
        log(f"  epoch {epoch}: train {train_acc:.2f}% (vs relabels), val {val_acc:.2f}%, "
            f"test {test_acc:.2f}%")
        if stop:
            break
    return history, stopper, best if restore_best else trainer.stack.state_dict(0)


def masc_layers(reader, fit_split, given, splits, *, threshold=THRESHOLD):
    """MASC per (labelling, layer) of a :class:`~MASC.readout.Reader`, fitted on ``fit_split``
    with the labellings ``given``, one layer at a time (:meth:`~MASC.readout.Reader.masc_by_layer`).

    Returns ``(table, relabels, model_acc)``: one row per (labelling, layer) with MASC's
    accuracy on the validation and test sets and whether the layer is chosen (the first best on
    validation, in layer order); MASC's predictions on ``fit_split`` per (labelling, layer) (the
    relabels, if that layer is chosen); and the network's own (val, test) accuracy."""
    rows, relabels = [], {}
    for found in reader.masc_by_layer(fit_split, given, [splits.val.images, splits.test.images],
                                      threshold=threshold,
                                      classes=range(data.info(reader.dataset).num_classes)):
        (val_pred, test_pred), (net_val, net_test) = found.predictions, found.network
        for s in given:
            relabels[s, found.layer] = found.fitted_rows[s]
            rows.append({"subspaces_from": s, "layer": found.layer,
                         "k_mean": float(found.n_components[s].mean()),
                         "masc_val_acc": accuracy(val_pred[s], splits.val.labels),
                         "masc_test_acc": accuracy(test_pred[s], splits.test.labels)})
    table = pd.DataFrame(rows).sort_values("subspaces_from", kind="stable", key=lambda s: s.map(
        list(given).index)).reset_index(drop=True)  # grouped by labelling, as fitted
    best = table.groupby("subspaces_from", sort=False).masc_val_acc.idxmax()  # first maximum
    table["chosen"] = table.index.isin(best)
    return table, relabels, (accuracy(net_val, splits.val.labels),
                             accuracy(net_test, splits.test.labels))


def retrain(trained, *, protocol="reference", subspaces=LABELLINGS, threshold=THRESHOLD,
            max_epochs=MAX_EPOCHS, patience=PATIENCE, seed=None, shuffle=False,
            readout=Settings(), log=print):
    """Relabel with MASC and fine-tune the memorised model of a :class:`~MASC.runs.TrainedRun`,
    once per subspace labelling (``subspaces``: among "corrupted" and "original").

    ``seed`` (default: the run index) fixes the fine-tuning's data order.
    Writes the tidy CSVs (and, for the reference protocol, the reference's files); returns the
    summary DataFrame (one row per labelling)."""
    key, dataset = trained.key, trained.dataset
    seed = key.run if seed is None else seed
    if not subspaces or any(s not in LABELLINGS for s in subspaces):
        raise MASCError(f"subspaces must be among {', '.join(LABELLINGS)}, got {list(subspaces)}")
    if max_epochs < 1 or patience < 1:
        raise MASCError(f"max epochs and patience must be at least 1, got {max_epochs} and {patience}")
    labels = trained.labels
    splits = protocol_splits(protocol, trained.train, labels, trained.test)
    fit_split, corrupted, true = trained.training()
    reader = readout.reader(trained.net, dataset)
    log(f"{key}, {protocol} protocol: MASC on {len(fit_split)} training "
        f"samples, {len(splits.val)} validation, {len(splits.test)} test ({reader.device})")
    given = {"corrupted": corrupted, "original": true}
    table, relabels, (model_val_acc, model_test_acc) = masc_layers(
        reader, fit_split, {s: given[s] for s in subspaces}, splits, threshold=threshold)
    chosen = table[table.chosen]
    ids = {**key.ids(), "protocol": protocol, "seed": trained.seed, "finetune_seed": seed}
    settings = {"threshold": threshold, "n_test": len(splits.test),
                "per_sample_bn": readout.per_sample_bn, "max_epochs": max_epochs,
                "patience": patience, "shuffle": shuffle, **trained.provenance}
    summaries, epochs, histories = [], [], {}
    for c in chosen.itertuples():
        s, new_labels = c.subspaces_from, relabels[c.subspaces_from, c.layer]
        stats = relabel_stats(corrupted, true, new_labels.numpy())
        log(f"{s} subspaces: layer {c.layer} (MASC val {c.masc_val_acc:.4f}), "
            f"{stats['n_relabelled']} of {len(fit_split)} labels changed; fine-tuning")
        history, stopper, weights = fine_tune(
            trained.net, data.Split(fit_split.images, new_labels), splits.val, splits.test,
            training.Run(dataset, key.model, key.corrupt, key.run, seed), device=reader.device,
            max_epochs=max_epochs, patience=patience, shuffle=shuffle,
            restore_best=protocol == "clean", log=log)
        kept_epoch = stopper.best_epoch if protocol == "clean" else len(history)
        results.save_checkpoint(weights, key.retrain_dir(s, protocol), kept_epoch)
        frame = pd.DataFrame(history, columns=["epoch", "train", "val", "test"])
        histories[s] = frame
        epochs.append(pd.DataFrame({**ids, "subspaces_from": s, "layer": c.layer,
                                    "epoch": frame.epoch, "train_acc_vs_relabels": frame.train / 100,
                                    "val_acc": frame.val / 100, "test_acc": frame.test / 100,
                                    "n_train": len(fit_split), **settings}))
        summaries.append({**ids, "subspaces_from": s, "layer": c.layer,
                          "masc_val_acc": c.masc_val_acc, "masc_test_acc": c.masc_test_acc,
                          "model_val_acc": model_val_acc, "model_test_acc": model_test_acc,
                          "epochs_run": len(history), "best_epoch": stopper.best_epoch,
                          "kept_epoch": kept_epoch,
                          "test_acc_best_epoch": frame.test[stopper.best_epoch - 1] / 100,
                          "test_acc_final": frame.test[kept_epoch - 1] / 100,
                          "test_acc_max": frame.test.max() / 100, **stats, **settings})
    summary = pd.DataFrame(summaries)
    results.write_csv(pd.concat(epochs, ignore_index=True), key.retrain_csv(protocol, "epochs"))
    results.write_csv(summary, key.retrain_csv(protocol, "summary"))
    results.write_csv(pd.concat([pd.DataFrame([ids] * len(table)), table,
                                 pd.DataFrame([{"n_train": len(fit_split), **settings}]
                                              * len(table))],
                                axis=1), key.retrain_csv(protocol, "layers"))
    if protocol == "reference":
        _write_reference(trained, table, histories, model_test_acc, summary)
    return summary


def _write_reference(trained, layer_table, histories, model_test80, summary):
    """The reference protocol's files in the reference layout (docs/protocol.md, 'Retraining
    with MASC relabels' and 'Output file layout'), in the folder of the memorised checkpoint's
    (0-based) epoch."""
    key, memorised_epoch = trained.key, trained.provenance["checkpoint_epoch"] - 1
    for row in layer_table.itertuples():
        files = key.reference_retrain_files(row.subspaces_from, memorised_epoch, row.layer)
        results.write_single_value(row.masc_test_acc, files["layer_test80"])
        results.write_single_value(row.masc_val_acc, files["layer_test20"])
    for s, frame in histories.items():
        results.write_csv(pd.DataFrame({"epoch": frame.epoch, "Train_accuracy": frame.train,
                                        "Test_accuracy_80": frame.test,
                                        "Test_accuracy_20": frame.val}),
                          key.reference_retrain_files(s)["history"], index=True)
    files = key.reference_retrain_files("original")
    results.write_single_value(100 * model_test80, files["test80"], column="Test_accuracy_80")
    if key.corrupt != 0:
        change = {}
        for row in summary.itertuples():
            short = SHORT[row.subspaces_from]
            change.update({f"per_wlrc_{short}": 100 * row.wrong_relabelled_correctly,
                           f"per_clwr_{short}": 100 * row.correct_relabelled_wrongly,
                           f"per_incorrect_{short}": row.net_change})
        results.write_csv(pd.DataFrame([change]), files["change"], index=True)
