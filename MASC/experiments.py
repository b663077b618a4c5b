"""The paper's MASC experiments on trained models (docs/protocol.md, 'Experiments exp1, exp2,
exp3').

exp1: the memorised model at p, subspaces from the corrupted labels;
exp2: the same model, subspaces from the true labels;
exp3: the model trained at p = 0.0 (same run), subspaces from the labels corrupted at p.
exp1 and exp2 share the read-out: one forward pass per layer, one layer at a time
(:meth:`~MASC.readout.Reader.masc_by_layer`).
"""
import pandas as pd

from . import data, results, runs
from .masc import THRESHOLD, accuracy
from .readout import Settings

FITTED_ON = {1: "corrupted", 2: "original", 3: "corrupted"}  # the labelling each exp fits MASC on
# a row of our MASC CSVs per (labelling, layer, read-out settings); rows of other weights go
MERGE_KEYS = ["subspaces_from", "layer", *results.READOUT_COLUMNS]


def masc_experiments(trained, exps, *, threshold=THRESHOLD, readout=Settings(), log=print):
    """Run the chosen experiments on a :class:`~MASC.runs.TrainedRun` (exp3 loads the same run
    trained at p = 0.0 beside it); returns one tidy DataFrame (rows: exp x layer)."""
    key, dataset = trained.key, trained.dataset
    for exp in exps:  # results files we will merge into must be readable before any work
        for per_class, keys in ((False, MERGE_KEYS), (True, MERGE_KEYS + ["class"])):
            path = key.masc_csv(exp, per_class)
            if path.exists():
                results.read_csv(path, [k for k in keys if k not in results.PROVENANCE])
    num_classes = data.info(dataset).num_classes
    test = trained.test
    class_masks = [test.labels == c for c in range(num_classes)]
    split, corrupted, true = trained.training()
    given = {"corrupted": corrupted, "original": true}
    frames = []
    for model_p, group in ((key.corrupt, [e for e in exps if e in (1, 2)]),
                           (0.0, [e for e in exps if e == 3])):
        if not group:
            continue
        net, provenance = ((trained.net, trained.provenance) if model_p == key.corrupt
                           else runs.load_weights(key.at(model_p)))
        reader = readout.reader(net, dataset)
        labellings = {FITTED_ON[e]: given[FITTED_ON[e]] for e in group}
        settings = {"threshold": threshold, "n_train": len(split), "n_test": len(test),
                    "per_sample_bn": readout.per_sample_bn}
        log(f"{dataset} {key.model} run {key.run}: MASC on the model trained at p={model_p} "
            f"(exp{'+'.join(map(str, group))}, {len(split)} training samples, {reader.device})")
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
                row = {**key.ids(), "exp": exp, "subspaces_from": name, "layer": layer,
                       "dim": found.dim, "k_min": int(k.min()), "k_mean": float(k.mean()),
                       "k_max": int(k.max()),
                       "train_acc_vs_corrupted": accuracy(found.fitted_rows[name], corrupted),
                       "train_acc_vs_true": accuracy(found.fitted_rows[name], true),
                       "test_acc": accuracy(test_pred[name], test.labels),
                       "model_test_acc": model_test_acc, "threshold": threshold,
                       "n_train": len(split), "fit_seconds": round(found.fit_seconds[name], 4),
                       "predict_seconds": round(found.predict_seconds[name], 4),
                       **settings, **provenance}
                rows[exp].append(row)
                fitted[exp].append((layer, k))
                for c, mask in enumerate(class_masks):
                    per_class[exp].append(
                        {**{f: row[f] for f in ("dataset", "model", "corrupt", "run", "exp",
                                                "subspaces_from", "layer")},
                         "class": c, "n_test": int(mask.sum()),  # this class's test images
                         "test_acc": accuracy(test_pred[name][mask], test.labels[mask]),
                         **{s: v for s, v in settings.items() if s != "n_test"}, **provenance})
        for exp in group:
            frame = pd.DataFrame(rows[exp])  # rows of layers not recomputed now are kept
            results.merge_csv(frame, key.masc_csv(exp), MERGE_KEYS, results.MODEL_COLUMNS)
            results.merge_csv(pd.DataFrame(per_class[exp]), key.masc_csv(exp, per_class=True),
                              MERGE_KEYS + ["class"], results.MODEL_COLUMNS)
            for (layer, k), row in zip(fitted[exp], rows[exp]):  # the reference's files last
                _write_reference(trained, exp, layer, row, k)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _write_reference(trained, exp, layer, row, n_components):
    files = trained.key.reference_masc_files(exp, layer)
    values = {"train_vs_corrupted": row["train_acc_vs_corrupted"],
              "train_vs_true": row["train_acc_vs_true"], "test": row["test_acc"]}
    for what, path in files.items():
        if what == "pca":
            results.write_csv(pd.DataFrame({"number_pca_components_class": n_components}), path,
                              index=True)
        else:
            results.write_single_value(values[what], path)
