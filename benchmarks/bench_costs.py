"""Cost curves: MASC fit / predict time and peak memory against N (rows) and D (dims), and
training time against K (stacked runs), with log-log figures and fitted exponents.

    python benchmarks/bench_costs.py                          # CPU-sized defaults (a few minutes)
    python benchmarks/bench_costs.py --ns 1000 2000 4000 --ds 256 512 1024 --ks 1 2 4

Each MASC point fits ``MinimumAngleSubspaceClassifier`` (n = 0.99, 10 classes) on generated
post-ReLU rows (``bench_memory.Activations``: power-law spectrum) and predicts the same number of
rows; its peak memory is the process's peak resident set above the level before the point (Linux
resets VmHWM through /proc/self/clear_refs). Training points time one epoch of K stacked CNNs (the
engine's ``Trainer``, as ``bench_training.py``) on generated MNIST-shaped images. A fitted exponent
b means cost ~ x^b over the measured range: to predict a new dataset or layer, scale a measured
point by (x_new / x)^b. Writes CSVs to benchmarks/results/ and PNGs to benchmarks/figures/.
"""
import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench_memory import Activations, peak_rss_gb  # the benchmark beside this one
from MASC import MinimumAngleSubspaceClassifier, data, models, results, training
from MASC.devices import pick_device

HERE = Path(__file__).resolve().parent

NS = [1000, 2000, 4000, 8000, 16000]  # rows, at D = FIXED_D
DS = [128, 256, 512, 1024, 2048]  # dims, at N = FIXED_N
KS = [1, 2, 4, 8]  # stacked CNNs
FIXED_D, FIXED_N, CLASSES = 1024, 4000, 10
TRAIN_IMAGES = 2048
FIGURES, RESULTS = HERE / "figures", HERE / "results"


def reset_peak():
    """Reset this process's peak RSS to the current RSS (Linux >= 4.0); returns the current GiB."""
    Path("/proc/self/clear_refs").write_text("5")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024 ** 2
    return 0.0


def masc_point(n, dim):
    """(fit s, predict s, peak GiB above the start, mean k) for n rows of dimension dim."""
    gen = Activations(dim)
    X, y = gen.rows(n)
    T = gen.rows(n, salt=1)[0]
    base = reset_peak()
    tic = time.perf_counter()
    clf = MinimumAngleSubspaceClassifier(0.99).fit(X, y)
    fit_s = time.perf_counter() - tic
    tic = time.perf_counter()
    clf.predict(T)
    predict_s = time.perf_counter() - tic
    return fit_s, predict_s, peak_rss_gb() - base, float(clf.n_components_.mean())


def training_point(k, n_images, device):
    """Seconds of one training epoch of k stacked CNNs on n generated MNIST-shaped images."""
    g = torch.Generator().manual_seed(0)
    split = data.Split(torch.randint(0, 256, (n_images, 1, 28, 28), dtype=torch.uint8, generator=g),
                       torch.randint(0, 10, (n_images,), generator=g)).to(device)
    runs = [training.Run("MNIST", "CNN", 0.8, r, seed=r) for r in range(1, k + 1)]
    nets = []
    for run in runs:
        torch.manual_seed(run.seed)
        nets.append(models.build("CNN", "MNIST").to(device))
    group = training.Trainer(runs, nets, torch.stack([split.labels] * k), split,
                             graphs=device.type == "cuda")
    group.train_epoch(0, True)  # warm-up
    tic = time.perf_counter()
    group.train_epoch(1, True)
    return time.perf_counter() - tic


def exponent(x, y):
    """Least-squares slope of log y on log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def plot(frame, x, columns, title, path):
    """One log-log figure: each column against x, its fitted exponent in the legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for col in columns:
        b = exponent(frame[x], frame[col])
        ax.loglog(frame[x], frame[col], "o-", label=f"{col} ~ {x}^{b:.2f}")
    ax.set_xlabel(x)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ns", type=int, nargs="+", default=NS, help="rows, at D = --fixed-d")
    p.add_argument("--ds", type=int, nargs="+", default=DS, help="dims, at N = --fixed-n")
    p.add_argument("--ks", type=int, nargs="+", default=KS, help="stacked CNNs")
    p.add_argument("--fixed-d", type=int, default=FIXED_D)
    p.add_argument("--fixed-n", type=int, default=FIXED_N)
    p.add_argument("--train-images", type=int, default=TRAIN_IMAGES)
    p.add_argument("--device", default="cpu", help="device for the training points")
    p.add_argument("--figures", default=str(FIGURES))
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    figures, out = Path(args.figures), Path(args.results)
    where = f"{torch.get_num_threads()} CPU threads"
    rows = []
    for sweep, points in (("N", [(n, args.fixed_d) for n in args.ns]),
                          ("D", [(args.fixed_n, d) for d in args.ds])):
        for n, dim in points:
            fit_s, predict_s, peak, k = masc_point(n, dim)
            rows.append({"sweep": sweep, "N": n, "D": dim, "k_mean": round(k, 1),
                         "fit_s": fit_s, "predict_s": predict_s, "peak_gb": max(peak, 1e-4)})
            print(f"MASC N={n:6} D={dim:5} k={k:7.1f} fit {fit_s:7.2f} s predict "
                  f"{predict_s:7.2f} s peak +{peak:.3f} GB", flush=True)
    masc_frame = pd.DataFrame(rows)
    results.write_csv(masc_frame, out / "costs_masc.csv")
    device = pick_device(args.device)
    train_rows = []
    for k in args.ks:
        seconds = training_point(k, args.train_images, device)
        train_rows.append({"K": k, "epoch_s": seconds, "images_per_s": k * args.train_images / seconds})
        print(f"train K={k:3} one epoch of {args.train_images} images: {seconds:.2f} s "
              f"({k * args.train_images / seconds:,.0f} img/s over all runs)", flush=True)
    train_frame = pd.DataFrame(train_rows)
    results.write_csv(train_frame, out / "costs_training.csv")
    table = ["| cost | against | fitted exponent | range |", "|---|---|---|---|"]
    for sweep, x in (("N", "N"), ("D", "D")):
        part = masc_frame[masc_frame.sweep == sweep]
        fixed = f"D = {args.fixed_d}" if sweep == "N" else f"N = {args.fixed_n}"
        plot(part, x, ["fit_s", "predict_s", "peak_gb"], f"MASC against {x} ({fixed}; {where})",
             figures / f"masc_vs_{x}.png")
        for col in ("fit_s", "predict_s", "peak_gb"):
            table.append(f"| MASC {col} | {x} ({fixed}) | {exponent(part[x], part[col]):.2f} | "
                         f"{part[x].min()}-{part[x].max()} |")
    plot(train_frame, "K", ["epoch_s"], f"Training epoch against K stacked CNNs ({device.type})",
         figures / "training_vs_K.png")
    table.append(f"| training epoch_s | K (CNN, {args.train_images} images, {device.type}) | "
                 f"{exponent(train_frame.K, train_frame.epoch_s):.2f} | "
                 f"{train_frame.K.min()}-{train_frame.K.max()} |")
    print("\n" + "\n".join(table))
    return masc_frame, train_frame


if __name__ == "__main__":
    main()
