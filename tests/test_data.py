import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import requires_mnist, write_cifar
from MASC import data
from MASC.errors import MASCError


@requires_mnist
def test_real_mnist_shapes_statistics_and_reference_transform(data_root):
    import torchvision
    from torchvision import transforms

    train, test = data.load("MNIST", data_root, True), data.load("MNIST", data_root, False)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert len(test) == 10000 and train.labels.dtype == torch.int64
    assert abs(train.images.float().div(255).mean().item() - 0.1307) < 1e-4
    reference = torchvision.datasets.MNIST(str(data_root), train=True, transform=transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]))
    ours = data.normalise(train.images[:64], "MNIST")
    assert torch.equal(ours, torch.stack([reference[i][0] for i in range(64)]))  # bit for bit


@requires_mnist
def test_fetch_is_idempotent_and_verifies_md5s(data_root):
    assert "already present and verified" in data.fetch("MNIST", data_root)


def test_fashion_md5s_and_class_balance_when_present(data_root):
    if not (data_root / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte").exists():
        pytest.skip("Fashion-MNIST absent: run `python -m MASC.data fetch FashionMNIST`")
    assert data._idx_verified("FashionMNIST", data_root / "FashionMNIST" / "raw")
    split = data.load("FashionMNIST", data_root, True)
    assert torch.bincount(split.labels).tolist() == [6000] * 10


@pytest.mark.parametrize("name,classes,train_files", [("CIFAR10", 10, 5), ("CIFAR100", 100, 1)])
def test_cifar_pickle_layout(tmp_path, name, classes, train_files):
    folder = write_cifar(tmp_path, classes)
    train, test = data.load(name, tmp_path, True), data.load(name, tmp_path, False)
    assert train.images.shape == (20 * train_files, 3, 32, 32) and len(test) == 20
    first_file = "data_batch_1" if name == "CIFAR10" else "train"
    with open(folder / first_file, "rb") as fh:
        first = pickle.load(fh)
    assert torch.equal(train.images[0].flatten(), torch.from_numpy(first["data"][0]))  # C, H, W order
    x = data.normalise(train.images[:2], name)
    assert x.min() >= -1 and x.max() <= 1


def test_missing_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(MASCError) as err:
        data.load("CIFAR10", tmp_path, True)
    message = str(err.value)
    assert "CIFAR10 not found at" in message and "python -m MASC.data fetch CIFAR10" in message
    assert "\n" not in message
    with pytest.raises(MASCError, match="unknown dataset 'SVHN'"):
        data.load("SVHN", tmp_path)


def test_corrupt_cifar_file_is_a_clear_error(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(MASCError, match="unreadable"):
        data.load("CIFAR10", tmp_path, True)


def test_tiny_imagenet_folder_layout_and_val_regrouping(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # ImageFolder sorts: n01 -> 0, n02 -> 1, n03 -> 2
    rng = np.random.RandomState(0)

    def image(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.randint(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)

    for w in wnids:
        for i in range(2):
            image(base / "train" / w / "images" / f"{w}_{i}.JPEG")
    notes = []
    for i, w in enumerate(["n03", "n01", "n03"]):
        image(base / "val" / "images" / f"val_{i}.JPEG")
        notes.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(notes) + "\n")
    train, val = data.load("TinyImageNet", tmp_path, True), data.load("TinyImageNet", tmp_path, False)
    assert train.images.shape == (6, 3, 64, 64) and train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert sorted(val.labels.tolist()) == [0, 2, 2]
    assert not (base / "val" / "images").exists()  # regrouped once, into class folders
    assert (base / "train_uint8.pt").exists()  # decoded once
    x = data.normalise(val.images, "TinyImageNet")
    assert torch.equal(x, val.images.float() / 255)  # ToTensor only, no normalisation
    assert torch.equal(data.load("TinyImageNet", tmp_path, False).images, val.images)


def test_data_root_flag_then_environment(monkeypatch):
    monkeypatch.setenv("MASC_DATA", "/somewhere")
    assert str(data.data_root()) == "/somewhere" and str(data.data_root("x")) == "x"
    monkeypatch.delenv("MASC_DATA")
    assert str(data.data_root()) == "data"
