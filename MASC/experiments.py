"""The paper's MASC experiments on trained models (docs/protocol.md, 'Experiments exp1, exp2,
exp3').

exp1: the memorised model at p, subspaces from the corrupted labels;
exp2: the same model, subspaces from the true labels;
exp3: the model trained at p = 0.0 (same run), subspaces from the labels corrupted at p.
exp1 and exp2 share the read-out: one forward pass per layer, one layer at a time
(:meth:`~MASC.readout.Reader.masc_by_layer`).

The random-init control reads the same architecture with its initial, untrained weights out in the
same way for exp1 and exp2: extra rows whose ``network`` is ``random-init`` (the trained model's
rows say ``trained``). Every row states ``changed_labels``, the realised share of training labels
that the corruption changed (beside p; about p x (1 - 1/C)).
"""
import numpy as np
import pandas as pd

from . import results, runs
from .masc import accuracy
from .readout import Settings

FITTED_ON = {1: "corrupted", 2: "original", 3: "corrupted"}  # the labelling each exp fits MASC on
MERGE_KEYS = ["subspaces_from", "layer"]  # a row of our MASC CSVs per (labelling, layer, network)
NETWORK = {"network": "trained"}  # the rows of older CSVs (before the control) are the trained net's


def masc_experiments(trained, exps, *, threshold=0.99, readout=Settings(), control=None,
                     reference_files=True, log=print):
    """Run the chosen experiments on a :class:`~MASC.runs.TrainedRun` (exp3 loads the same run
    trained at p = 0.0 beside it); returns one tidy DataFrame (rows: exp x network x layer).

    ``control``: the untrained network (the same architecture with its initial weights), read out
    for exp1 and exp2 beside the trained one; ``reference_files``: also write the reference's
    single-value files (the trained network's)."""
    out, dataset, model, p, run = trained.out, trained.dataset, trained.model, trained.p, trained.run
    for exp in exps:  # results files we will merge into must be readable before any work
        for per_class, keys in ((False, MERGE_KEYS), (True, MERGE_KEYS + ["class"])):
            path = results.masc_csv(out, dataset, model, p, run, exp, per_class)
            if path.exists():
                results.read_csv(path, keys)
    num_classes = trained.spec.num_classes
    test = trained.test
    class_masks = [test.labels == c for c in range(num_classes)]
    split, corrupted, true = trained.training()
    given = {"corrupted": corrupted, "original": true}
    changed = float(np.mean(np.asarray(corrupted) != np.asarray(true)))
    frames = []
    first, clean = [e for e in exps if e in (1, 2)], [e for e in exps if e == 3]
    reads = [("trained", p, first), ("random-init", p, first if control is not None else []),
             ("trained", 0.0, clean)]
    for network, model_p, group in reads:
        if not group:
            continue
        net = (control if network == "random-init" else trained.net if model_p == p else
               runs.load_network(out, dataset, model, model_p, run))
        reader = readout.reader(net, trained.spec)
        labellings = {FITTED_ON[e]: given[FITTED_ON[e]] for e in group}
        log(f"{dataset} {model} run {run}: MASC on the "
            f"{'untrained (initial weights)' if network == 'random-init' else 'trained'} model "
            f"at p={model_p} (exp{'+'.join(map(str, group))}, {len(split)} training samples, "
            f"{reader.device})")
        rows = {exp: [] for exp in group}
        per_class = {exp: [] for exp in group}
        fitted = {exp: [] for exp in group}  # (layer, k per class) for the reference's files
        for found in reader.masc_by_layer(split, labellings, [test.images], threshold=threshold,
                                          classes=range(num_classes)):
            test_pred = found.predictions[0]
            model_test_acc = accuracy(found.network[0], test.labels)
            for exp in group:
                name, layer = FITTED_ON[exp], found.layer
                k = found.n_components[name]
                row = {"dataset": dataset, "model": model, "corrupt": p,
                       "changed_labels": changed, "run": run, "exp": exp, "network": network,
                       "subspaces_from": name, "layer": layer, "dim": found.dim,
                       "k_min": int(k.min()), "k_mean": float(k.mean()), "k_max": int(k.max()),
                       "train_acc_vs_corrupted": accuracy(found.fitted_rows[name], corrupted),
                       "train_acc_vs_true": accuracy(found.fitted_rows[name], true),
                       "test_acc": accuracy(test_pred[name], test.labels),
                       "model_test_acc": model_test_acc, "threshold": threshold,
                       "n_train": len(split), "fit_seconds": round(found.fit_seconds[name], 4),
                       "predict_seconds": round(found.predict_seconds[name], 4)}
                rows[exp].append(row)
                fitted[exp].append((layer, k))
                for c, mask in enumerate(class_masks):
                    per_class[exp].append(
                        {**{f: row[f] for f in ("dataset", "model", "corrupt", "run", "exp",
                                                "network", "subspaces_from", "layer")},
                         "class": c, "n_test": int(mask.sum()),
                         "test_acc": accuracy(test_pred[name][mask], test.labels[mask])})
        for exp in group:
            frame = pd.DataFrame(rows[exp])  # rows of layers not recomputed now are kept
            keys = MERGE_KEYS + list(NETWORK)
            path = results.merge_csv(frame, results.masc_csv(out, dataset, model, p, run, exp),
                                     keys, fill=NETWORK)
            results.merge_csv(pd.DataFrame(per_class[exp]),
                              results.masc_csv(out, dataset, model, p, run, exp, per_class=True),
                              keys + ["class"], fill=NETWORK)
            results.write_provenance(path, reader.device)
            if reference_files and network == "trained":
                for (layer, k), row in zip(fitted[exp], rows[exp]):  # the reference's files last
                    _write_reference(trained, exp, layer, row, k)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _write_reference(trained, exp, layer, row, n_components):
    files = results.reference_masc_files(trained.out, trained.dataset, trained.model, trained.p,
                                         trained.run, exp, layer)
    values = {"train_vs_corrupted": row["train_acc_vs_corrupted"],
              "train_vs_true": row["train_acc_vs_true"], "test": row["test_acc"]}
    for what, path in files.items():
        if what == "pca":
            results.write_csv(pd.DataFrame({"number_pca_components_class": n_components}), path,
                              index=True)
        else:
            results.write_single_value(values[what], path)
