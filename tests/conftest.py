"""Shared fixtures and helpers: the real data folder (fetched by .ci/run), tiny trained runs (one
factory, cached per session), a small test set, small generated data and the scripts as modules.
No test module imports another: what two need lives here."""
import importlib.util
import os
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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


QUIET = dict(device="cpu", progress=False, log=lambda *_: None)  # training without output
SMALL_TEST = 200  # test images of small_test_set


def cut_test_set(monkeypatch, n):
    """Real MNIST (and Fashion-MNIST) from DATA, with the test split cut to its first n images."""
    from MASC import data

    real = data.load
    monkeypatch.setattr(data, "load", lambda name, root=None, train=True:
                        real(name, DATA, train).first(None if train else n))


@pytest.fixture
def small_test_set(monkeypatch):
    """Real MNIST, with the test split cut to SMALL_TEST images to keep the tests fast."""
    cut_test_set(monkeypatch, SMALL_TEST)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """A factory of tiny trained runs: CNNs on real MNIST (run 1, seed 1), trained once per
    session for each set of settings and copied for each test.

    ``tiny_runs(dest, corrs=(0.8,), **schedule)`` trains (or takes from the cache) the runs at
    the degrees ``corrs`` with the :class:`MASC.training.Schedule` fields ``schedule`` (default:
    128 images, one epoch, the first SMALL_TEST test images), copies the results root into
    ``dest`` (which a test may then write to) and returns ``dest``."""
    from MASC import training

    cache = {}

    def make(dest, corrs=(0.8,), **schedule):
        schedule = {"subset": 128, "epochs": 1, "test_subset": SMALL_TEST, **schedule}
        key = (tuple(corrs), tuple(sorted(schedule.items())))
        if key not in cache:
            root = tmp_path_factory.mktemp("tiny_run")
            training.train([training.Run("MNIST", "CNN", p, 1, seed=1) for p in corrs],
                           out=root, root=DATA, **QUIET, **schedule)
            cache[key] = root
        shutil.copytree(cache[key], dest, dirs_exist_ok=True)
        return Path(dest)

    return make


def script(path):
    """A script of the repository (its path under ROOT) as a module; its main takes argv."""
    spec = importlib.util.spec_from_file_location(path.replace("/", "_")[:-3], ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blobs(n_per_class, dim, classes=4, seed=0, rank=None):
    """Gaussian classes around random centres, float32 rows and their labels."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(rank or dim, dim, generator=g)
    X = torch.cat([torch.randn(n_per_class, rank or dim, generator=g) @ mix * 0.4
                   + 2 * torch.randn(1, dim, generator=g) for _ in range(classes)])
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return X.float(), y


def uneven(dim=40, sizes=(12, 60, 25, 80), seed=0):
    """Classes with fewer rows than dimensions (12, 25) and more (60, 80), float32."""
    g = torch.Generator().manual_seed(seed)
    X = torch.cat([torch.relu(torch.randn(n, dim, generator=g) @ torch.randn(dim, dim, generator=g)
                              * 0.3 + torch.randn(1, dim, generator=g)) for n in sizes])
    y = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
    return X.float(), y


def close(a, b, tol=1e-4):
    """Equal up to rounding: a relative error of the whole tensor."""
    return (a - b).norm() <= tol * b.norm()


def check_stack_against_each_model(nets, x, channels_last, tol):
    """Forward and backward of a Stack of ``nets`` on images x (K, B, ...) against each net alone
    (outputs and gradients within ``tol``); returns the stack."""
    from MASC.stacking import Stack

    stack = Stack(nets, channels_last)
    out = stack(x)
    out.square().sum().backward()
    for k, net in enumerate(nets):
        alone = net(x[k])
        alone.square().sum().backward()
        assert close(out[k], alone, tol)
        for name, p in net.named_parameters():
            if p.grad is not None:  # AlexNet's unused classifier has none, in both
                assert close(stack.params[name].grad[k], p.grad, tol), name
    return stack


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
