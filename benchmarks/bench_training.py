"""Training throughput: the reference-style loop vs our engine (one run, and K runs stacked).

    python benchmarks/bench_training.py                         # CPU-sized defaults
    python benchmarks/bench_training.py --device cuda --train-images 20000 --ks 1 6 18

Every configuration, the reference style included, times one epoch over the same first N training
images plus one pass over the same test images (after an untimed warm-up epoch), on real MNIST,
and reports images per second counted over all models (train + test images). The reference style
is a torchvision dataset with per-sample ``ToTensor`` + ``Normalize``, a DataLoader at the model's
batch size, and test batches of 4. Both run in float32 with the same matmul settings (on CUDA:
TF32 on for both).

The headline is the like-for-like ratio: ours, one run, float32, against the reference style on
the same images. The other ratios are labelled for what they are: K stacked runs' total
throughput against one reference-style process (the work of K runs, not a faster single run),
and bf16 autocast against the float32 reference (a different precision).
"""
import argparse
import time
import torch
import torch.nn.functional as F

from MASC import data, models, training
from MASC.devices import pick_device, sync


def reference_style(model_name, root, n_train, n_test, device):
    """Seconds of one epoch + test pass, the way the reference scripts do it."""
    import torchvision
    from torchvision import transforms
    from torch.utils.data import DataLoader, Subset

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train_set = Subset(torchvision.datasets.MNIST(root, train=True, transform=tf), range(n_train))
    test_set = Subset(torchvision.datasets.MNIST(root, train=False, transform=tf), range(n_test))
    train_loader = DataLoader(train_set, batch_size=models.batch_size(model_name, "MNIST"))
    test_loader = DataLoader(test_set, batch_size=4)
    torch.manual_seed(0)
    net = models.build(model_name, "MNIST").to(device)
    opt = models.make_optimiser(model_name, net.parameters())

    def epoch():
        net.train()
        correct = 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            out = net(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            correct += (out.argmax(1) == y).sum().item()
            opt.step()
        net.eval()
        with torch.no_grad():
            for x, y in test_loader:
                correct += (net(x.to(device)).argmax(1) == y.to(device)).sum().item()

    epoch()  # warm-up
    sync(device)
    tic = time.perf_counter()
    epoch()
    sync(device)
    return time.perf_counter() - tic


def ours(model_name, train_split, test_split, k, device, graphs, bf16, channels_last):
    """Seconds of one epoch + test pass of k stacked runs with our engine."""
    runs = [training.Run("MNIST", model_name, 0.8, r, seed=r) for r in range(1, k + 1)]
    nets = []
    for run in runs:
        torch.manual_seed(run.seed)
        nets.append(models.build(model_name, "MNIST").to(device))
    labels = torch.stack([train_split.labels] * k)
    group = training.Trainer(runs, nets, labels, train_split, graphs=graphs, bf16=bf16,
                             channels_last=channels_last)
    group.train_epoch(0, True)  # warm-up (captures the CUDA graphs)
    group.evaluate(test_split)
    sync(device)
    tic = time.perf_counter()
    group.train_epoch(1, True)
    group.evaluate(test_split)
    sync(device)
    return time.perf_counter() - tic


def ratio_meaning(k, bf16, channels_last):
    """What a configuration's 'vs reference' ratio compares."""
    if k == 1 and not bf16:
        return "same work, same precision" + ("" if channels_last else " (NCHW)")
    what = f"{k} runs' throughput / 1 reference process" if k > 1 else "1 run"
    return what + (", bf16 vs fp32" if bf16 else "") + ("" if channels_last else ", NCHW")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default=None)
    p.add_argument("--models", nargs="+", default=["CNN", "MLP"])
    p.add_argument("--train-images", type=int, default=6000,
                   help="first N training images, for every configuration")
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--ks", type=int, nargs="+", default=[1, 6], help="stack sizes to time")
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    p.add_argument("--tf32", action="store_true",
                   help="TF32 matmuls on CUDA (off by default, as in the paper's protocol)")
    p.add_argument("--no-graphs", action="store_true", help="eager steps on CUDA too")
    p.add_argument("--nchw", action="store_true",
                   help="also time the stacks with NCHW feature maps (default: channels_last only)")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    root = str(data.data_root(args.data))
    training.set_precision(device, args.tf32)
    n_train = args.train_images
    train_split = data.load("MNIST", root, True).first(n_train).to(device)
    test_split = data.load("MNIST", root, False).first(args.test_images).to(device)
    n_test = len(test_split)
    per_model = len(train_split) + n_test
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    precision = "float32, TF32 matmuls" if device.type == "cuda" else "float32"
    print(f"device: {name}; {len(train_split)} train + {n_test} test images per model, for the "
          f"reference style and ours alike; {precision} unless marked bf16")
    print(f"{'model':6} {'configuration':46} {'seconds':>8} {'images/s':>11} {'vs reference':>12}  "
          f"ratio compares")
    graphs = device.type == "cuda" and not args.no_graphs
    headlines = []
    for model_name in args.models:
        base = reference_style(model_name, root, len(train_split), n_test, device)
        base_rate = per_model / base
        print(f"{model_name:6} {'reference style (DataLoader)':46} {base:8.2f} {base_rate:11,.0f} "
              f"{1:12.2f}  (baseline: 1 process)")
        ks = args.ks if 1 in args.ks else [1, *args.ks]  # the headline needs one plain run
        variants = [(k, bf16, cl) for bf16 in ([False, True] if args.bf16 else [False])
                    for cl in ([True, False] if args.nchw else [True]) for k in ks]
        for k, bf16, cl in variants:
            seconds = ours(model_name, train_split, test_split, k, device, graphs, bf16, cl)
            rate = k * per_model / seconds
            label = f"ours, {k} run{'s' if k > 1 else ''}{' stacked' if k > 1 else ''}" \
                    f"{', CUDA graph' if graphs else ''}{', bf16' if bf16 else ''}{', NCHW' if not cl else ''}"
            print(f"{model_name:6} {label:46} {seconds:8.2f} {rate:11,.0f} {rate / base_rate:12.2f}  "
                  f"{ratio_meaning(k, bf16, cl)}")
            if (k, bf16, cl) == (1, False, True):
                headlines.append(f"{model_name}: ours, 1 run, is x{rate / base_rate:.2f} the reference "
                                 f"style's speed (same {len(train_split)} train + {n_test} test "
                                 f"images, same precision)")
    print("\nheadline (like for like):")
    for line in headlines:
        print(f"  {line}")


if __name__ == "__main__":
    main()
