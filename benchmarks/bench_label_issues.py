"""Finding wrong labels on MNIST-sized layers: seconds of cross-fitted MASC
(``MASC.noise.find_label_issues``) against in-sample MASC and against the field's usual route,
cleanlab on K-fold out-of-sample probabilities of a logistic-regression probe, all on the same
rows in one run.

    python benchmarks/bench_label_issues.py                  # 60,000 x 250 and 60,000 x 784
    python benchmarks/bench_label_issues.py --n 10000 --no-probe

The layers: fc1 of an untrained (seeded) MNIST CNN, 250-d, and the raw pixels, 784-d, of the first
--n MNIST training images, with the project's corrupted labels at --p (label seed 42). Each line
prints the seconds, the ratio against cross-fitted MASC, and how well the flags match the known
corruption (precision, recall, AUROC of the ranking): the timings count only where the finders did
their job. The probe (cleanlab) needs pip install -r requirements-study.txt.
"""
import argparse
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from MASC import data, models, noise, readout
from MASC.corruption import corrupt_labels


def layers(n, root):
    """``({name: (n, d) float32 rows}, true labels)`` of the first n MNIST training images."""
    split = data.load("MNIST", root, True).first(n)
    torch.manual_seed(0)
    reader = readout.Reader(models.build("CNN", "MNIST"), "MNIST", layers=["fc1"], device="cpu")
    fc1, _ = reader.collect(split.images)
    return {"fc1 (untrained CNN)": fc1["fc1"], "pixels": split.images.reshape(n, -1).float()}, \
        split.labels.numpy()


def finders(folds, probe):
    """``{name: (flags, suspicion) of (X, given)}``: the finders timed."""
    def masc(cv):
        def run(X, given):
            report = noise.label_report(X, given, cv=cv)
            return report.is_label_issue.to_numpy(), 1 - report.label_quality.to_numpy()
        return run

    def cleanlab_probe(X, given):
        return noise.confident_learning(given, noise.probe_probabilities(X, given, 10, folds))

    found = {f"MASC cross-fitted ({folds} folds)": masc(folds), "MASC in-sample": masc(None)}
    if probe:
        found[f"cleanlab, {folds}-fold probe"] = cleanlab_probe
    return found


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=60000, help="MNIST training images")
    p.add_argument("--p", type=float, default=0.4, help="corruption degree of the labels")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--no-probe", dest="probe", action="store_false",
                   help="skip cleanlab on the probe (minutes on 60,000 x 784 on a CPU)")
    p.add_argument("--data", default=None)
    args = p.parse_args(argv)
    rows, true = layers(args.n, str(data.data_root(args.data)))
    given = corrupt_labels(true, args.p, 10, 42)
    wrong = given != true
    print(f"{args.n} MNIST images, p = {args.p}: {wrong.mean():.1%} of the labels wrong; "
          f"torch threads {torch.get_num_threads()}")
    for layer, X in rows.items():
        base = None
        for name, find in finders(args.folds, args.probe).items():
            tic = time.perf_counter()
            flags, suspicion = find(X, given)
            seconds = time.perf_counter() - tic
            base = base or seconds
            hits = (flags & wrong).sum()
            print(f"{layer:20} {tuple(X.shape)!s:13} {name:28} {seconds:8.1f} s  x{seconds / base:5.2f}"
                  f"  flagged {flags.sum():6}  precision {hits / max(flags.sum(), 1):.3f}  recall "
                  f"{hits / wrong.sum():.3f}  AUROC {roc_auc_score(wrong, suspicion):.3f}", flush=True)


if __name__ == "__main__":
    main()
