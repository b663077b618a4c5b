"""The paper's MASC experiments on trained models (docs/protocol.md, 'Experiments exp1, exp2,
exp3').

exp1: the memorised model at p, subspaces from the corrupted labels;
exp2: the same model, subspaces from the true labels;
exp3: the model trained at p = 0.0 (same run), subspaces from the labels corrupted at p.
exp1 and exp2 share one pass over the data.
"""
import pandas as pd

from . import data, results, runs
from .masc import accuracy
from .readout import Settings

FITTED_ON = {1: "corrupted", 2: "original", 3: "corrupted"}  # the labelling each exp fits MASC on
MERGE_KEYS = ["subspaces_from", "layer"]  # a row of our MASC CSVs per (labelling, layer)


def masc_experiments(trained, exps, *, threshold=0.99, readout=Settings(), log=print):
    """Run the chosen experiments on a :class:`~MASC.runs.TrainedRun` (exp3 loads the same run
    trained at p = 0.0 beside it); returns one tidy DataFrame (rows: exp x layer)."""
    out, dataset, model, p, run = trained.out, trained.dataset, trained.model, trained.p, trained.run
    for exp in exps:  # results files we will merge into must be readable before any work
        for per_class, keys in ((False, MERGE_KEYS), (True, MERGE_KEYS + ["class"])):
            path = results.masc_csv(out, dataset, model, p, run, exp, per_class)
            if path.exists():
                results.read_csv(path, keys)
    num_classes = data.info(dataset).num_classes
    test = trained.test
    class_masks = [test.labels == c for c in range(num_classes)]
    split, corrupted, true = trained.training()
    given = {"corrupted": corrupted, "original": true}
    frames = []
    for model_p, group in ((p, [e for e in exps if e in (1, 2)]), (0.0, [e for e in exps if e == 3])):
        if not group:
            continue
        net = trained.net if model_p == p else runs.load_network(out, dataset, model, model_p, run)
        reader = readout.reader(net, dataset)
        labellings = {FITTED_ON[e]: given[FITTED_ON[e]] for e in group}
        log(f"{dataset} {model} run {run}: MASC on the model trained at p={model_p} "
            f"(exp{'+'.join(map(str, group))}, {len(split)} training samples, {reader.device})")
        estimators, fit_seconds = reader.fit_masc(split, labellings, threshold=threshold,
                                                  classes=range(num_classes))
        train_pred, _, train_seconds = reader.predict(split.images, estimators)
        test_pred, net_pred, test_seconds = reader.predict(test.images, estimators)
        model_test_acc = accuracy(net_pred, test.labels)
        for exp in group:
            keys = [key for key in estimators if key[0] == FITTED_ON[exp]]
            rows, per_class = [], []
            for key in keys:
                est, layer = estimators[key], key[1]
                k = est.n_components_
                row = {"dataset": dataset, "model": model, "corrupt": p, "run": run, "exp": exp,
                       "subspaces_from": key[0], "layer": layer, "dim": est.n_features_in_,
                       "k_min": int(k.min()), "k_mean": float(k.mean()), "k_max": int(k.max()),
                       "train_acc_vs_corrupted": accuracy(train_pred[key], corrupted),
                       "train_acc_vs_true": accuracy(train_pred[key], true),
                       "test_acc": accuracy(test_pred[key], test.labels),
                       "model_test_acc": model_test_acc, "threshold": threshold,
                       "n_train": len(split), "fit_seconds": round(fit_seconds[key], 4),
                       "predict_seconds": round(train_seconds[key] + test_seconds[key], 4)}
                rows.append(row)
                for c, mask in enumerate(class_masks):
                    per_class.append({**{f: row[f] for f in ("dataset", "model", "corrupt", "run",
                                                             "exp", "subspaces_from", "layer")},
                                      "class": c, "n_test": int(mask.sum()),
                                      "test_acc": accuracy(test_pred[key][mask], test.labels[mask])})
            frame = pd.DataFrame(rows)  # rows of layers not recomputed now are kept
            results.merge_csv(frame, results.masc_csv(out, dataset, model, p, run, exp),
                              MERGE_KEYS)
            results.merge_csv(pd.DataFrame(per_class),
                              results.masc_csv(out, dataset, model, p, run, exp, per_class=True),
                              MERGE_KEYS + ["class"])
            for key, row in zip(keys, rows):  # the reference's files once ours are written
                _write_reference(trained, exp, key[1], row, estimators[key].n_components_)
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
