"""MASC speed: the naive reference-style algorithm vs ours, on the same data, in one run.

    python benchmarks/bench_masc.py                    # (a) CNN layers, (b) D = 2,048, (c) D = 16,384
    python benchmarks/bench_masc.py --parts a b --device cuda

(a) the five layers of an MNIST CNN (trained for one epoch at p = 0.8 unless --checkpoint is
    given): fit on all 60,000 training activations, predict the training and test sets;
(b) a generated layer, D = 2,048, 1,000 samples per class, 10 classes (fewer samples than
    dimensions: our Gram route); fit, then predict the training set and 2,000 test vectors;
(c) ours alone: a generated 16,384-d layer with 5,000 samples per class (the ResNet case); fit,
    then predict 2,000 vectors.
Every case also times our prediction with ``predict_dtype="float32-checked"`` against float64 on the
same fitted estimator (the predictions must be identical, else INVALID).
The naive baseline (MASC/naive.py) groups and doubles samples in Python, builds the D x D
covariance, runs a full eigh, and projects in batches of 100 with arccos, like the reference.
Both must agree (same k for every class, every prediction the same) for a speed-up to count: where
they do not, the line says INVALID instead of a speed-up, and the script exits with status 1.
"""
import argparse
import sys
import time

import torch

from MASC import MinimumAngleSubspaceClassifier, data, devices, layers, models, readout, training
from MASC.corruption import corrupt_labels
from MASC.masc import CHECKED
from MASC.naive import naive_fit, naive_predict


def timed(fn, device):
    devices.sync(device)
    tic = time.perf_counter()
    out = fn()
    devices.sync(device)
    return out, time.perf_counter() - tic


def compare(name, X, y, tests, classes, device, naive=True, checked=True):
    """Time naive and ours on one layer; returns (naive seconds, our seconds, agreed): agreed is
    True only with the same k for every class and the same prediction for every vector."""
    Xd, testsd = X.to(device), [t.to(device) for t in tests]
    clf, fit_s = timed(lambda: MinimumAngleSubspaceClassifier(0.99).fit(Xd, y.to(device),
                                                                        classes=range(classes)), device)
    preds, pred_s = timed(lambda: [clf.predict(t).cpu() for t in testsd], device)
    ours = fit_s + pred_s
    line = f"{name:22} D={X.shape[1]:6} k={clf.n_components_.mean():8.1f}  ours {ours:8.2f} s " \
           f"(fit {fit_s:.2f}, predict {pred_s:.2f})"
    if checked:  # the float32-checked prediction against float64, same estimator, same run
        clf.set_params(predict_dtype=CHECKED)
        fast, fast_s = timed(lambda: [clf.predict(t).cpu() for t in testsd], device)
        same = all(torch.equal(a, b) for a, b in zip(fast, preds))
        print(f"{name:22} predict float64 {pred_s:.2f} s, float32-checked {fast_s:.2f} s: "
              + (f"x{pred_s / fast_s:.2f}" if same else "INVALID (predictions differ)")
              + f", identical: {same}, re-checked rows (last set): "
              f"{clf._checked.rechecked if clf._checked else 0}", flush=True)
        clf.set_params(predict_dtype="float64")
        if not same:
            return None, ours, False
    if not naive:
        print(line, flush=True)
        return None, ours, True
    (subspaces, naive_fit_s) = timed(lambda: naive_fit(X, y, classes), "cpu")
    naive_preds, naive_pred_s = timed(lambda: [naive_predict(subspaces, t) for t in tests], "cpu")
    reference = naive_fit_s + naive_pred_s
    same_k = [int(k) for k in clf.n_components_] == [len(V) for V in subspaces]
    same = sum(int((a.long() == b.long()).sum()) for a, b in zip(preds, naive_preds))
    total = sum(len(t) for t in tests)
    agreed = same_k and same == total and all(len(a) == len(b) for a, b in zip(preds, naive_preds))
    verdict = f"x{reference / ours:6.1f}" if agreed else "INVALID (results differ, no speed-up)"
    print(f"{line}  naive {reference:8.2f} s (fit {naive_fit_s:.2f}, predict {naive_pred_s:.2f})  "
          f"{verdict}  same k: {same_k}, same predictions: {same} of {total}", flush=True)
    return reference, ours, agreed


def speed_up(part, naive, ours, agreed):
    """A part's total speed-up line, or INVALID when any of its layers disagreed."""
    if agreed:
        return f"{part} naive {naive:.1f} s, ours {ours:.1f} s, speed-up x{naive / ours:.1f}"
    return f"{part} naive {naive:.1f} s, ours {ours:.1f} s: INVALID, ours and naive disagree"


def part_a(args, device):
    root = str(data.data_root(args.data))
    train_split, test_split = data.load("MNIST", root, True), data.load("MNIST", root, False)
    run = training.Run("MNIST", "CNN", 0.8, 1, seed=1)
    labels = torch.as_tensor(corrupt_labels(train_split.labels.numpy(), run.corrupt, 10, run.label_seed))
    net = models.build("CNN", "MNIST")
    if args.checkpoint:
        net.load_state_dict(torch.load(args.checkpoint, weights_only=True))
    else:  # one epoch at p = 0.8
        torch.manual_seed(1)
        training.train_net(net, data.Split(train_split.images, labels), run, 1, shuffle=True)
    reader = readout.Reader(net, "MNIST", device="cpu")
    train_acts, _ = reader.collect(train_split.images)
    test_acts, _ = reader.collect(test_split.images)
    print(f"(a) MNIST CNN layers: fit on {len(labels)} training activations (p = 0.8 labels), "
          f"predict {len(labels)} train + {len(test_split)} test")
    totals = [compare(layer, train_acts[layer], labels, [train_acts[layer], test_acts[layer]], 10,
                      device) for layer in layers.layer_names(net)]
    naive, ours, agreed = sum(t[0] for t in totals), sum(t[1] for t in totals), all(t[2] for t in totals)
    print(speed_up("(a) all five layers:", naive, ours, agreed) + "\n")
    return agreed


def generated(n_per_class, dim, classes=10, rank=256, sample_seed=1):
    """ReLU activations: a class mean plus noise of rank 256 with a decaying spectrum (k ~ 250).
    The means and the noise basis are fixed; ``sample_seed`` draws the samples."""
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(rank, dim, generator=g) / rank ** 0.5
    means = 0.1 * torch.randn(classes, dim, generator=g)
    scale = torch.arange(1, rank + 1, dtype=torch.float32) ** -0.5
    g.manual_seed(sample_seed)
    X = torch.cat([torch.relu(means[c] + (torch.randn(n_per_class, rank, generator=g) * scale) @ basis)
                   for c in range(classes)])
    return X, torch.arange(classes).repeat_interleave(n_per_class)


def part_b(args, device):
    X, y = generated(args.b_per_class, args.b_dim)
    T, _ = generated(200, args.b_dim, sample_seed=2)
    print(f"(b) generated layer, D = {args.b_dim:,}, 10 classes x {args.b_per_class:,} samples")
    naive, ours, agreed = compare("generated", X, y, [X, T], 10, device)
    print(speed_up("(b)", naive, ours, agreed) + "\n")
    return agreed


def part_c(args, device):
    X, y = generated(5000, 16384)
    T, _ = generated(200, 16384, sample_seed=2)
    print("(c) generated ResNet-sized layer, 10 classes x 5,000 samples (ours only)")
    compare("generated", X, y, [T], 10, device, naive=False)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    p.add_argument("--device", default="cpu", help="device for ours (naive always runs on CPU)")
    p.add_argument("--data", default=None)
    p.add_argument("--checkpoint", default=None, help="a trained MNIST CNN for part (a)")
    p.add_argument("--b-per-class", type=int, default=1000, help="part (b): samples per class")
    p.add_argument("--b-dim", type=int, default=2048, help="part (b): dimensions")
    args = p.parse_args(argv)
    device = devices.pick_device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"ours on {name}; naive on CPU, {torch.get_num_threads()} threads\n")
    invalid = [part for part in args.parts
               if not {"a": part_a, "b": part_b, "c": part_c}[part](args, device)]
    if invalid:
        print(f"INVALID: ours and the naive MASC disagree in part(s) {', '.join(invalid)}; "
              f"no speed-up counts", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
