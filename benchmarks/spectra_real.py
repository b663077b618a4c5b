"""How many components real activations need, against bench_memory.py's generated ones.

    python benchmarks/spectra_real.py                     # l0, l2, l4; 5,000 images of one class

bench_memory.py's cost is set by k, the components MASC keeps per class. This script measures k at
the 0.99 threshold on real images (MNIST and Fashion-MNIST upscaled to 3x32x32, the only real
images this machine has) read out of an untrained ResNet-18 (CIFAR-10 shape, per-image BatchNorm as
the paper read it), and on the same number of bench_memory.py's generated rows of the same layer,
for one class ("one") and for rows of every class ("mixed": what a class of fully corrupted labels
holds), so one can see whether the benchmark's memory and time are pessimistic.
"""
import argparse
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

from MASC import data, models, readout

HERE = Path(__file__).resolve().parent


def k_at(A, threshold):
    """k of one class's rows A at the threshold (the reference's rule), from the smaller Gram."""
    A = A.double()
    G = A @ A.T if len(A) < A.shape[1] else A.T @ A
    ev = torch.linalg.eigvalsh(G).flip(0)
    return int((ev.cumsum(0) / ev.sum() <= threshold).sum()) + 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", nargs="+", default=["l0", "l2", "l4"])
    p.add_argument("--images", type=int, default=5000, help="images of the class (<= 5,421)")
    p.add_argument("--digit", type=int, default=3)
    p.add_argument("--threshold", type=float, default=0.99)
    p.add_argument("--data", default=None)
    args = p.parse_args(argv)
    spec = importlib.util.spec_from_file_location("bench_memory", HERE / "bench_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    torch.manual_seed(0)
    reader = readout.Reader(models.build("ResNet18", "CIFAR10"), "CIFAR10", layers=args.layers,
                            per_sample_bn=True, batch_size=250)
    print(f"k at {args.threshold} for {args.images} rows of one class", flush=True)
    sources = ("generated", "MNIST", "FashionMNIST")
    print(f"{'layer':8} {'D':>6} " + " ".join(f"{s + ' ' + m:>18}" for s in sources
                                               for m in ("one", "mixed")), flush=True)
    found, dims = {}, {}
    for name in sources[1:]:
        train = data.load(name, data.data_root(args.data), True)
        for mix, images in (("one", train.images[train.labels == args.digit][:args.images]),
                            ("mixed", train.images[:args.images])):
            images = F.interpolate(images.float(), size=32, mode="bilinear").round().clamp(0, 255)
            acts, _ = reader.collect(images.to(torch.uint8).expand(-1, 3, -1, -1).contiguous())
            for layer, A in acts.items():
                found[name, mix, layer], dims[layer] = k_at(A, args.threshold), A.shape[1]
    rows = []
    for layer in args.layers:
        gen = bench.Activations(dims[layer])  # one class: rows 0, 10, ... of its true labelling
        batches = [gen.batch(s, bench.BATCH) for s in range(0, args.images * bench.CLASSES,
                                                            bench.BATCH)]
        found["generated", "one", layer] = k_at(torch.cat([x[y == 0] for x, y in batches]),
                                                args.threshold)
        found["generated", "mixed", layer] = k_at(torch.cat([x for x, _ in batches])[
            :args.images], args.threshold)
        del batches
        row = {"layer": layer, "D": dims[layer], **{f"{s}_{m}": found[s, m, layer]
                                                     for s in sources for m in ("one", "mixed")}}
        rows.append(row)
        print(f"{layer:8} {dims[layer]:6} " + " ".join(f"{v:18}" for v in list(row.values())[2:]),
              flush=True)
    return rows


if __name__ == "__main__":
    main()
