"""Shared fixtures: the real data folder (fetched by .ci/run) and small generated data."""
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(os.environ.get("MASC_DATA", ROOT / "data"))
REQUIRED_DATA = ("MNIST", "FashionMNIST")  # .ci/run sets MASC_REQUIRE_DATA=1: absent = failure


def have(name):
    return (DATA / name / "raw" / "train-labels-idx1-ubyte").exists()


requires_mnist = pytest.mark.skipif(
    not have("MNIST"), reason="real MNIST absent: run `python -m MASC.data fetch MNIST`")
requires_fashion = pytest.mark.skipif(
    not have("FashionMNIST"), reason="real Fashion-MNIST absent: run `python -m MASC.data fetch`")


def pytest_sessionstart(session):
    """In CI, a dataset the tests need must be there: its tests would otherwise skip unseen."""
    missing = [name for name in REQUIRED_DATA if not have(name)]
    if os.environ.get("MASC_REQUIRE_DATA") == "1" and missing:
        pytest.exit(f"MASC_REQUIRE_DATA=1 but {', '.join(missing)} is absent from {DATA}: run "
                    f"`python -m MASC.data fetch {' '.join(missing)}`", returncode=1)


@pytest.fixture(scope="session")
def data_root():
    return DATA


@pytest.fixture
def backend_flags():
    """Puts torch's TF32 and cuDNN settings back after the test, on CPU and CUDA builds alike.
    Not monkeypatch: torch serves ``cuda.matmul.allow_tf32`` from ``__getattr__``, which pytest
    9.2's monkeypatch records as absent and then fails to delete at teardown."""
    import torch

    flags = [(torch.backends.cuda.matmul, "allow_tf32"), (torch.backends.cudnn, "allow_tf32"),
             (torch.backends.cudnn, "benchmark"), (torch.backends.cudnn, "deterministic")]
    saved = [getattr(owner, name) for owner, name in flags]
    yield
    for (owner, name), value in zip(flags, saved):
        setattr(owner, name, value)


def write_cifar(root, classes=10, train_per_file=20, test_size=20):
    """Random images in the real cifar-10-batches-py / cifar-100-python pickle layouts; labels
    cycle through the classes, across the training files (every class present). Returns the
    folder."""
    import torchvision

    cls = torchvision.datasets.CIFAR10 if classes == 10 else torchvision.datasets.CIFAR100
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    key = "labels" if classes == 10 else "fine_labels"

    def write(name, n, first_label):
        entry = {"data": rng.randint(0, 256, (n, 3072), dtype=np.uint8),
                 key: [(first_label + i) % classes for i in range(n)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)

    for i, (name, _) in enumerate(cls.train_list):
        write(name, train_per_file, i * train_per_file)
    for name, _ in cls.test_list:
        write(name, test_size, 0)
    return folder


def record_weights_each_epoch(monkeypatch):
    """After every training epoch, append model 0's weights to the list returned."""
    from MASC import training

    snapshots, real_epoch = [], training.Trainer.train_epoch

    def train_epoch(self, epoch, shuffle):
        accuracy = real_epoch(self, epoch, shuffle)
        snapshots.append(self.stack.state_dict(0))
        return accuracy

    monkeypatch.setattr(training.Trainer, "train_epoch", train_epoch)
    return snapshots
