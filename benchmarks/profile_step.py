"""Where the time of one stacked training step goes: a torch.profiler table of eager steps.

    python benchmarks/profile_step.py --model CNN --k 18 --device cuda
"""
import argparse

import torch

from MASC import data, devices, models, training


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="CNN")
    p.add_argument("--k", type=int, default=18)
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    device = devices.pick_device(args.device)
    torch.backends.cudnn.benchmark = True
    split = data.load("MNIST", None, True).first(4096).to(device)
    runs = [training.Run("MNIST", args.model, 0.8, r, seed=r) for r in range(args.k)]
    nets = [models.build(args.model, "MNIST").to(device) for _ in runs]
    group = training.Trainer(runs, nets, torch.stack([split.labels] * args.k), split)
    B = models.batch_size(args.model, "MNIST")
    idx = torch.stack([torch.randperm(len(split), device=device)[:B] for _ in runs])
    for _ in range(3):
        group._step(idx)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.steps):
            group._step(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))


if __name__ == "__main__":
    main()
