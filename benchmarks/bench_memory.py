"""MASC exp1 + exp2 on ResNet-18 / CIFAR-10-sized layers in bounded memory, one layer per process.

    python benchmarks/bench_memory.py --layers l0                      # the 16,384-d layer, full size
    python benchmarks/bench_memory.py --layers l3 bf_last --rows 2000 --check   # small, vs fit
    python benchmarks/bench_memory.py --layers l0 --old --rows 10000   # the former path, for the baseline

Each layer runs in a fresh subprocess, so its peak resident memory (VmHWM; on CUDA also
``torch.cuda.max_memory_allocated``) is its own. The activations are generated, not read: 50,000
float32 rows (10 balanced classes) of each layer's dimension, as ResNet-18 gives it for a 3x32x32
image, post-ReLU (non-negative) with a power-law spectrum: a class mean plus noise of rank RANK
whose variances decay as j^-ALPHA, through a ReLU. The corrupted labelling (p = 0.8, the
reference's rule) and the true one are fitted from ONE float32 copy of the rows, kept in a
temporary file (``MASC.rowfile.RowFile``; ``--rows-in-memory``: a tensor) by
``MASC.masc.iter_labellings``, one labelling at a time; each labelling then predicts the training
rows (scored against both labellings) and the test rows (generated in batches, as a model would
stream them). ``--old`` runs the former path instead: one estimator per labelling, fed in batches of
1,000 rows by ``partial_fit`` (as the read-out did before ``Reader.masc_by_layer``), each
keeping its own rows.
``--check`` also fits ``MinimumAngleSubspaceClassifier.fit`` on the same rows and asserts the same
k and predictions (small sizes). Results are merged into a CSV (a layer already there is skipped
unless ``--force``), so an interrupted sweep resumes.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
from MASC import MinimumAngleSubspaceClassifier, masc, results
from MASC.corruption import corrupt_labels
from MASC.devices import sync
from MASC.rowfile import RowFile

ROWS, TEST_ROWS, CLASSES, P = 50_000, 10_000, 10, 0.8
RANK, ALPHA, BATCH = 1024, 1.0, 1000
THRESHOLD = 0.99
CSV = HERE / "results" / "memory.csv"
GIB = 1024 ** 3


def resnet_dims():
    """{layer: D} of ResNet-18's tapped layers for one 3x32x32 image (CIFAR-10)."""
    from MASC import layers, models  # in the parent only: the children's RSS stays MASC's own
    net = models.build("ResNet18", "CIFAR10").eval()
    with torch.no_grad():
        return {k: v.shape[1] for k, v in layers.activations(net, torch.zeros(1, 3, 32, 32)).items()}


class Activations:
    """Generated post-ReLU activations of one layer: rows i..j are the same on every call."""

    def __init__(self, dim, rank=RANK, alpha=ALPHA, classes=CLASSES, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.rank = min(rank, dim)
        self.basis = torch.randn(self.rank, dim, generator=g) / self.rank ** 0.5
        self.means = 0.1 * torch.randn(classes, dim, generator=g)
        self.scale = torch.arange(1, self.rank + 1, dtype=torch.float32) ** (-alpha / 2)
        self.classes, self.seed = classes, seed

    def batch(self, start, n, salt=0):
        """Rows start..start+n-1 (true label = row index mod classes), float32."""
        g = torch.Generator().manual_seed(self.seed * 7919 + salt * 1_000_003 + start)
        y = torch.arange(start, start + n) % self.classes
        noise = (torch.randn(n, self.rank, generator=g) * self.scale) @ self.basis
        return torch.relu(self.means[y] + noise), y

    def rows(self, n, salt=0, on_disk=False):
        """All n rows in one float32 store (a RowFile, or a preallocated tensor), and their
        labels."""
        X = RowFile(n, self.basis.shape[1]) if on_disk else torch.empty(n, self.basis.shape[1])
        for start in range(0, n, BATCH):
            X[start:start + BATCH] = self.batch(start, min(BATCH, n - start), salt)[0]
        return X, torch.arange(n) % self.classes


def peak_rss_gib():
    """This process's peak resident set (VmHWM), GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024 ** 2
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def theoretical_gib(D, rows, test_rows, k_mean, classes, old, on_disk):
    """Bytes (GiB) that must be resident at once: the stored rows (one float32 copy, none on
    disk; the old path keeps one per labelling), one labelling's float64 components, a class's
    Gram-route temporaries (float64 block, Gram and eigenvectors, D x k twice)."""
    n_c = rows // classes
    stored = 0 if on_disk else (2 if old else 1) * rows * D * 4
    components = classes * k_mean * D * 8 * (2 if old else 1)
    temporary = n_c * D * 8 + 2 * min(n_c, D) ** 2 * 8 + 2 * D * k_mean * 8
    return (stored + components + temporary) / GIB


def one_layer(args, layer, D):
    """Exp1 + exp2 on one generated layer; returns the result row (in this process)."""
    device = torch.device(args.device)
    gen = Activations(D, args.rank, args.alpha)
    tic = time.perf_counter()
    true = torch.arange(args.rows) % CLASSES
    corrupted = torch.as_tensor(corrupt_labels(true.numpy(), P, CLASSES))
    labellings = {"corrupted": corrupted, "original": true}
    params = dict(threshold=THRESHOLD, classes=range(CLASSES), device=device,
                  batch_size=args.batch_size, predict_dtype=args.predict_dtype)
    X = None
    if args.old:
        fitted = old_path(gen, labellings, args, params)
    else:
        X = gen.rows(args.rows, on_disk=not args.rows_in_memory)[0]
        X = X if isinstance(X, RowFile) else X.to(device)
        fitted = masc.iter_labellings(X, labellings, **params)
    generated = time.perf_counter() - tic
    row = {"layer": layer, "D": D, "rows": args.rows, "path": path_name(args),
           "device": str(device), "threads": torch.get_num_threads(), "rank": args.rank,
           "alpha": args.alpha, "predict_dtype": args.predict_dtype}
    fit_s = predict_s = 0.0
    same = True
    fitted = iter(fitted)
    while True:  # one labelling's subspaces alive at a time
        tic = time.perf_counter()
        name, est = next(fitted, (None, None))  # iter_labellings fits here
        if est is None:
            break
        est.solve()
        sync(device)
        fit_s += time.perf_counter() - tic
        tic = time.perf_counter()
        train_pred = predict_rows(est, X, gen, args.train_predict_rows or args.rows, device, 0)
        test_pred = predict_rows(est, None, gen, args.test_rows, device, salt=1)
        sync(device)
        predict_s += time.perf_counter() - tic
        test_true = torch.arange(args.test_rows) % CLASSES
        row[f"k_mean_{name}"] = float(est.n_components_.mean())
        row[f"train_acc_vs_corrupted_{name}"] = masc.accuracy(train_pred, corrupted[:len(train_pred)])
        row[f"train_acc_vs_true_{name}"] = masc.accuracy(train_pred, true[:len(train_pred)])
        row[f"test_acc_{name}"] = masc.accuracy(test_pred, test_true)
        if args.check:
            rows = gen.rows(args.rows)[0].to(device)
            plain = MinimumAngleSubspaceClassifier(THRESHOLD, device=device).fit(
                rows, labellings[name], classes=range(CLASSES))
            same &= list(plain.n_components_) == list(est.n_components_)
            same &= bool(torch.equal(plain.predict(rows[:len(train_pred)]).cpu(), train_pred))
            same &= bool(torch.equal(predict_rows(plain, None, gen, args.test_rows, device, 1),
                                     test_pred))
            del plain
        del est
    if args.check:
        row["same_as_fit"] = same
    row.update(generate_s=round(generated, 2), fit_s=round(fit_s, 2),
               predict_s=round(predict_s, 2), peak_rss_gib=round(peak_rss_gib(), 3),
               theoretical_gib=round(theoretical_gib(D, args.rows, args.test_rows, max(
                   row["k_mean_corrupted"], row["k_mean_original"]), CLASSES, args.old,
                   path_name(args) == "disk"), 3))
    row["peak_rss_mib"] = round(row["peak_rss_gib"] * 1024, 1)
    if device.type == "cuda":
        row["cuda_peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 3)
    return row


def path_name(args):
    return "old" if args.old else "memory" if args.rows_in_memory else "disk"


def predict_rows(est, X, gen, n, device, salt):
    """Predictions for the first n rows: of X when given, else generated in batches."""
    if X is not None:
        return est.predict(X if n == len(X) else X[:n]).cpu()
    return torch.cat([est.predict(gen.batch(s, min(BATCH, n - s), salt)[0].to(device)).cpu()
                      for s in range(0, n, BATCH)])


def old_path(gen, labellings, args, params):
    """The former path: an estimator per labelling, partial_fit in batches, each keeping its rows."""
    classes = params.pop("classes")
    ests = {name: MinimumAngleSubspaceClassifier(**params) for name in labellings}
    for start in range(0, args.rows, BATCH):
        x, _ = gen.batch(start, min(BATCH, args.rows - start))
        for name, est in ests.items():
            est.partial_fit(x.to(params["device"]), labellings[name][start:start + len(x)],
                            classes=classes)
    return list(ests.items())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", nargs="+", default=None, help="ResNet-18 layers (default: all nine)")
    p.add_argument("--rows", type=int, default=ROWS, help="training rows (balanced classes)")
    p.add_argument("--test-rows", type=int, default=TEST_ROWS)
    p.add_argument("--train-predict-rows", type=int, default=None,
                   help="predict only the first N training rows (default: all)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every layer's D (tests)")
    p.add_argument("--rank", type=int, default=RANK)
    p.add_argument("--alpha", type=float, default=ALPHA)
    p.add_argument("--batch-size", type=int, default=1024, help="rows projected at once")
    p.add_argument("--predict-dtype", default="float64")
    p.add_argument("--device", default="cpu")
    p.add_argument("--old", action="store_true", help="the former path (one copy per labelling)")
    p.add_argument("--rows-in-memory", action="store_true",
                   help="shared rows in a tensor instead of a temporary file")
    p.add_argument("--check", action="store_true", help="assert same k and predictions as fit")
    p.add_argument("--csv", default=str(CSV))
    p.add_argument("--force", action="store_true", help="recompute layers already in the CSV")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child: "layer:D"
    args = p.parse_args(argv)
    if args.one:
        layer, D = args.one.split(":")
        print(json.dumps(one_layer(args, layer, int(D))))
        return None
    dims = resnet_dims()
    chosen = args.layers or list(dims)
    unknown = [name for name in chosen if name not in dims]
    if unknown:
        raise SystemExit(f"unknown layer(s) {unknown}; ResNet-18's are {list(dims)}")
    path = Path(args.csv)
    done = set() if args.force or not path.exists() else set(
        results.read_csv(path, ["layer", "path", "rows"]).query(
            f"path == '{path_name(args)}' and rows == {args.rows}").layer)
    rows = []
    print(f"{'layer':8} {'D':>6} {'path':6} {'k (ỹ / y*)':>15} {'fit s':>8} {'predict s':>9} "
          f"{'peak RSS GiB':>12} {'theory GiB':>10}", flush=True)
    for layer in chosen:
        D = max(1, int(dims[layer] * args.scale))
        if layer in done:
            print(f"{layer:8} already in {path}; --force to redo", flush=True)
            continue
        child = [sys.executable, __file__, "--one", f"{layer}:{D}",
                 *[a for a in (argv if argv is not None else sys.argv[1:])]]
        out = subprocess.run(child, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"layer {layer} failed:\n{out.stderr[-3000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{layer:8} {D:6} {row['path']:6} {row['k_mean_corrupted']:7.1f} / "
              f"{row['k_mean_original']:6.1f} {row['fit_s']:8.1f} {row['predict_s']:9.1f} "
              f"{row['peak_rss_gib']:12.2f} {row['theoretical_gib']:10.2f}"
              + (f"  same as fit: {row['same_as_fit']}" if "same_as_fit" in row else ""), flush=True)
        results.merge_csv(pd.DataFrame([row]), path, ["layer", "path", "rows", "D"])
    if rows:
        print(f"largest peak: {max(r['peak_rss_gib'] for r in rows):.2f} GiB; "
              f"total time {sum(r['fit_s'] + r['predict_s'] for r in rows):.0f} s")
    if path.exists():
        against_old(results.read_csv(path, ["layer", "path", "rows"]))
    return rows


def against_old(table):
    """Print each path's peak and time against the former path's ("old", the baseline) for every
    layer and row count measured both ways."""
    for (layer, n), group in table.groupby(["layer", "rows"], sort=False):
        old = group[group.path == "old"]
        for _, r in group[group.path != "old"].iterrows() if len(old) else ():
            base = old.iloc[0]
            print(f"{layer} at {n:,} rows, {r.path} vs old: peak {r.peak_rss_gib:.2f} / "
                  f"{base.peak_rss_gib:.2f} GiB (x{base.peak_rss_gib / r.peak_rss_gib:.2f} less), "
                  f"fit + predict {r.fit_s + r.predict_s:.0f} / {base.fit_s + base.predict_s:.0f} s")


if __name__ == "__main__":
    main()
