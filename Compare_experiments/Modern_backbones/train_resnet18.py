"""Train ResNet-18 on CIFAR-10 with labels corrupted at degree p (the modern-backbone study).

    python Compare_experiments/Modern_backbones/train_resnet18.py -corr all -run 1
    python Compare_experiments/Modern_backbones/train_resnet18.py -corr 0.8 -run 1 --subset 1000 --epochs 1

pytorch_training.py with -model ResNet18 -dataset CIFAR10 (same flags and files): SGD lr 1e-3,
momentum 0.9, batch 32, until the running train accuracy reaches 100% (or the epoch cap);
run r uses seed r. Checkpoints: models/CIFAR10_ResNet18/Network/{p}/Run_{r}/model_{e}.pth.
"""
import sys

import pytorch_training  # installed with the package (pip install -e .)

_FIXED = ["-model", "ResNet18", "-dataset", "CIFAR10"]


def main(argv=None):
    return pytorch_training.main(_FIXED + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
