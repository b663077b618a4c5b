import os
import pickle
import shutil

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


def one_line(err):
    message = str(err.value)
    assert "\n" not in message
    return message


def test_corrupt_cifar_file_is_a_clear_error(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(MASCError, match="data_batch_3 is corrupt") as err:
        data.load("CIFAR10", tmp_path, True)
    assert "python -m MASC.data fetch CIFAR10 --data" in one_line(err)


@pytest.mark.parametrize("damage,match", [
    (lambda b: b[:len(b) // 2], r"corrupt \(truncated\)"),
    (lambda b: b[:3], r"corrupt \(truncated\)"),
    (lambda b: b"", r"corrupt \(truncated\)"),
    (lambda b: bytes(range(256)) * 4, "corrupt"),
    (lambda b: pickle.dumps([1, 2, 3]), "corrupt"),
    (lambda b: pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}),
     "2 images but 1 labels"),
    (lambda b: pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}),
     "label 10 at row 1 is outside 0..9"),
    (lambda b: pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [-1, 0]}),
     "label -1 at row 0"),
    (lambda b: pickle.dumps({"data": np.zeros((2, 3000), np.uint8), "labels": [0, 1]}), "corrupt"),
])
def test_damaged_cifar_pickles_are_one_line(tmp_path, damage, match):
    folder = write_cifar(tmp_path)
    path = folder / "test_batch"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(MASCError, match=match) as err:
        data.load("CIFAR10", tmp_path, False)
    assert str(path) in one_line(err) and f"fetch CIFAR10 --data {tmp_path}" in one_line(err)


def test_cifar100_fine_labels_out_of_range(tmp_path):
    folder = write_cifar(tmp_path, classes=100)
    path = folder / "test"
    path.write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "fine_labels": [100]}))
    with pytest.raises(MASCError, match="label 100 at row 0 is outside 0..99"):
        data.load("CIFAR100", tmp_path, False)


# ---------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST IDX files: size and header, label range, md5 (cached per file state)

def copy_mnist(data_root, tmp_path, train):
    """Copies of the real IDX files of one split under tmp_path/MNIST/raw (the originals stay)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    prefix = "train" if train else "t10k"
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copyfile(data_root / "MNIST" / "raw" / f"{prefix}-{kind}-ubyte",
                        raw / f"{prefix}-{kind}-ubyte")
    return raw


def damage(path, change):
    data_bytes = bytearray(path.read_bytes())
    path.write_bytes(bytes(change(data_bytes)))


def flip(offset):
    def change(b):
        b[offset] ^= 0xFF
        return b
    return change


def set_byte(offset, value):
    def change(b):
        b[offset] = value
        return b
    return change


@pytest.fixture
def fresh_md5_cache(monkeypatch):
    """An empty md5 cache and a count of the files hashed."""
    hashed = []
    real = data._md5

    def counting(path):
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(data, "_MD5_OK", {})
    monkeypatch.setattr(data, "_md5", counting)
    return hashed


@requires_mnist
def test_flipped_pixel_byte_is_corrupt(data_root, tmp_path, fresh_md5_cache):
    raw = copy_mnist(data_root, tmp_path, True)
    damage(raw / "train-images-idx3-ubyte", flip(16 + 28 * 28 * 1234 + 400))
    with pytest.raises(MASCError) as err:
        data.load("MNIST", tmp_path, True)
    message = one_line(err)
    assert message.startswith(f"file {raw / 'train-images-idx3-ubyte'} is corrupt (")
    assert "md5" in message and message.endswith(f"run: python -m MASC.data fetch MNIST --data {tmp_path}")


@requires_mnist
@pytest.mark.parametrize("file,change,match", [
    ("t10k-images-idx3-ubyte", lambda b: b[:-100], "truncated: 7839916 bytes, the header says 7840016"),
    ("t10k-images-idx3-ubyte", lambda b: b[:10], "truncated: 10 bytes, shorter than its 16-byte"),
    ("t10k-images-idx3-ubyte", lambda b: b[:0], "truncated: 0 bytes"),
    ("t10k-labels-idx1-ubyte", lambda b: b[:5000], "truncated: 5000 bytes, the header says 10008"),
    ("t10k-images-idx3-ubyte", lambda b: b + b"\0" * 7, "7 bytes more than the 7840016"),
    ("t10k-labels-idx1-ubyte", set_byte(8 + 321, 12), "label 12 at row 321 is outside 0..9"),
    ("t10k-labels-idx1-ubyte", set_byte(8 + 9999, 255), "label 255 at row 9999"),
    ("t10k-images-idx3-ubyte", set_byte(3, 0x01), "bad IDX header: magic number 0x00000801, "
                                                  "expected 0x00000803"),
    ("t10k-labels-idx1-ubyte", set_byte(2, 0x0D), "bad IDX header: magic number 0x00000d01"),
    ("t10k-images-idx3-ubyte", set_byte(11, 29), r"bad IDX header: dimensions \(10000, 29, 28\)"),
    ("t10k-labels-idx1-ubyte", set_byte(7, 0x0F), r"dimensions \(9999,\), expected \(10000,\)"),
    ("t10k-labels-idx1-ubyte", lambda b: set_byte(58, b[58] ^ 1)(b), "md5"),  # another valid label
])
def test_damaged_idx_file_is_one_line(data_root, tmp_path, fresh_md5_cache, file, change, match):
    raw = copy_mnist(data_root, tmp_path, False)
    damage(raw / file, change)
    with pytest.raises(MASCError, match=match) as err:
        data.load("MNIST", tmp_path, False)
    message = one_line(err)
    assert message.startswith(f"file {raw / file} is corrupt (") and "not found" not in message
    assert message.endswith(f"run: python -m MASC.data fetch MNIST --data {tmp_path}")


@requires_mnist
def test_missing_label_file_says_not_found(data_root, tmp_path, monkeypatch):
    raw = copy_mnist(data_root, tmp_path, False)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    monkeypatch.setattr(data, "_try_download", lambda make: False)  # no network in the test
    with pytest.raises(MASCError, match="MNIST not found at"):
        data.load("MNIST", tmp_path, False)


@requires_mnist
def test_md5_is_checked_once_per_file_state(data_root, tmp_path, fresh_md5_cache):
    raw = copy_mnist(data_root, tmp_path, False)
    first = data.load("MNIST", tmp_path, False)
    assert sorted(fresh_md5_cache) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    second = data.load("MNIST", tmp_path, False)
    assert len(fresh_md5_cache) == 2  # cached: no hashing the second time
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    images = raw / "t10k-images-idx3-ubyte"
    stat = images.stat()
    os.utime(images, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: hashed again
    data.load("MNIST", tmp_path, False)
    assert fresh_md5_cache[2:] == ["t10k-images-idx3-ubyte"]
    damage(images, flip(5000))  # same size, new mtime: hashed again, and the damage found
    with pytest.raises(MASCError, match="md5"):
        data.load("MNIST", tmp_path, False)
    assert fresh_md5_cache[3:] == ["t10k-images-idx3-ubyte"]
    with pytest.raises(MASCError, match="md5"):  # the failure is cached too, still reported
        data.load("MNIST", tmp_path, False)
    assert len(fresh_md5_cache) == 4


@requires_mnist
def test_idx_loader_matches_torchvision(data_root):
    import torchvision

    ours = data.load("MNIST", data_root, False)
    reference = torchvision.datasets.MNIST(str(data_root), train=False)
    assert ours.images.shape == (10000, 1, 28, 28) and ours.images.is_contiguous()
    assert torch.equal(ours.images[:, 0], reference.data)
    assert torch.equal(ours.labels, reference.targets) and ours.labels.dtype == torch.int64


@requires_mnist
def test_fetch_replaces_a_damaged_file(data_root, tmp_path, monkeypatch, fresh_md5_cache):
    """The command the corrupt-file message gives repairs it (torchvision stood in for by a copy
    of the real files: no network in the tests)."""
    raw = copy_mnist(data_root, tmp_path, False)
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        shutil.copyfile(data_root / "MNIST" / "raw" / f, raw / f)
    damage(raw / "t10k-images-idx3-ubyte", flip(20000))

    def download(make):  # torchvision keeps files that exist: only the damaged one is missing
        for f in data.IDX_MD5["MNIST"]:
            if not (raw / f).exists():
                shutil.copyfile(data_root / "MNIST" / "raw" / f, raw / f)
        return True

    monkeypatch.setattr(data, "_try_download", download)
    assert "downloaded by torchvision and verified" in data.fetch("MNIST", tmp_path)
    assert len(data.load("MNIST", tmp_path, False)) == 10000


def test_data_folder_that_is_a_file(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("not a folder")
    with pytest.raises(MASCError, match="is a file, not a folder") as err:
        data.load("MNIST", path, True)
    one_line(err)


@pytest.mark.parametrize("name", ["MNIST", "CIFAR10"])
@pytest.mark.parametrize("where", ["file", "below_file"])
def test_fetch_into_a_file_is_one_line(tmp_path, capsys, monkeypatch, name, where):
    monkeypatch.setattr(data, "_try_download", lambda make: False)  # no network in the test
    path = tmp_path / "data.txt"
    path.write_text("not a folder")
    target = path if where == "file" else path / "sub"
    with pytest.raises(SystemExit) as stop:
        data.main(["fetch", name, "--data", str(target)])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1
    assert err[0].startswith(f"error: cannot fetch {name} into ") and "is a file, not a folder" in err[0]


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST", "CIFAR10"])
def test_fetch_into_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch, name):
    monkeypatch.setattr(data, "_try_download", lambda make: False)  # no network in the test
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root writes anyway: stand in for a read-only file system

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(data.tempfile, "TemporaryFile", refuse)
        monkeypatch.setattr(type(folder), "mkdir", lambda self, *a, **k: refuse()
                            if not self.exists() else None)
    try:
        with pytest.raises(SystemExit) as stop:
            data.main(["fetch", name, "--data", str(folder)])
    finally:
        folder.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: cannot fetch {name} into {folder}") and "not writable" in err[0]


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
