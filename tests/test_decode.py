"""python -m MASC.decode: a user's model (defined here, or torchvision's ResNet-18), checkpoint
and data, read out end to end; the random-init control; one-line errors for what does not fit."""
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from torch import nn

from conftest import requires_mnist
from MASC import decode, results
from MASC.corruption import corrupt_labels
from MASC.errors import MASCError

HERE = __file__


class SmallNet(nn.Module):
    """A user's model: conv -> relu -> pool -> flatten -> fc -> relu -> head."""

    def __init__(self, channels=1, num_classes=3, size=8, width=16):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * (size // 2) ** 2, width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.flat(self.pool(torch.relu(self.conv(x))))
        return self.head(torch.relu(self.fc(x)))


def small_net(**kwargs):
    """The builder a user would name: ``tests/test_decode.py:small_net``."""
    return SmallNet(**kwargs)


def generated(path, n, classes=3, seed=0, channels=1, size=8):
    """An .npz of uint8 images whose class sets one bright square (easy for any read-out)."""
    rng = np.random.RandomState(seed)
    labels = np.arange(n) % classes
    images = rng.randint(0, 60, (n, channels, size, size)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, :, 2 * c:2 * c + 2, 2 * c:2 * c + 2] = 250
    np.savez(path, images=images, labels=labels)
    return path


@pytest.fixture
def npz(tmp_path):
    return generated(tmp_path / "train.npz", 60), generated(tmp_path / "test.npz", 30, seed=1)


def decode_main(*argv):
    decode.main(["--device", "cpu", *map(str, argv)])


def test_a_model_defined_here_end_to_end_with_the_control(npz, tmp_path):
    """CSV rows per (network, layer) with the pipeline's columns, the network's own accuracy,
    the control's rows from the builder's initialisation, the figure, and the provenance and
    environment columns
    (break: read the control from the trained weights, or drop its rows)."""
    train, test = npz
    torch.manual_seed(3)
    trained = small_net()
    f = np.load(train)
    x, y = torch.from_numpy(f["images"]).float() / 255, torch.from_numpy(f["labels"])
    optimiser = torch.optim.Adam(trained.parameters(), lr=0.02)
    for _ in range(40):  # a few full-batch steps: it learns the squares
        optimiser.zero_grad()
        nn.functional.cross_entropy(trained(x), y).backward()
        optimiser.step()
    weights = tmp_path / "w.pt"
    torch.save(trained.state_dict(), weights)
    out = tmp_path / "out"
    decode_main("--model", f"{HERE}:small_net", "--weights", weights, "--train", train, "--test",
                test, "--layers", "conv", "flat", "relu_1", "--control", "random-init",
                "--out", out)
    csv = results.masc_csv(out, "train", "small_net", 0.0, 1, 1)
    table = pd.read_csv(csv)
    assert list(table.network) == ["trained"] * 3 + ["random-init"] * 3
    assert list(table.layer) == ["conv", "flat", "relu_1"] * 2
    assert table.dim.tolist() == [256, 64, 16] * 2
    assert table.changed_labels.eq(0).all() and table.subspaces_from.eq("corrupted").all()
    assert table.test_acc.between(0, 1).all() and (table.n_train == 60).all()
    trained_acc, control_acc = table.model_test_acc.iloc[0], table.model_test_acc.iloc[3]
    with torch.no_grad():
        images = np.load(test)["images"]
        x = torch.from_numpy(images).float() / 255
        own = (trained(x).argmax(1).numpy() == np.load(test)["labels"]).mean()
        initial = decode.build_model(small_net, seed=0)
        init = (initial(x).argmax(1).numpy() == np.load(test)["labels"]).mean()
    assert trained_acc == pytest.approx(own, abs=1e-4)  # the accuracies are rounded to 4 places
    assert control_acc == pytest.approx(init, abs=1e-4)
    assert trained_acc > 0.9 > control_acc  # two networks
    per_class = pd.read_csv(results.masc_csv(out, "train", "small_net", 0.0, 1, 1, per_class=True))
    assert len(per_class) == 2 * 3 * 3 and set(per_class.network) == {"trained", "random-init"}
    assert csv.with_name("Run_1_layers.png").stat().st_size > 0
    assert table.torch.eq(torch.__version__).all() and table.device.str.startswith("cpu (").all()
    assert set(results.ENVIRONMENT_COLUMNS) <= set(table) and table.commit.notna().all()
    assert table.seed.isna().all() and table.checkpoint_epoch.isna().all()  # weights from elsewhere
    assert table.init_seed.isna().tolist() == [True] * 3 + [False] * 3  # the control's seed only
    assert (table.init_seed.iloc[3:] == 0).all()
    assert (table.subset == 60).all() and (table.holdout == 0).all()
    assert not results.RunKey(out, "train", "small_net", 0.0, 1).reference_masc_files(1, "conv")[
        "test"].exists()  # a user's run gets our tidy files only


@pytest.mark.slow  # reads ResNet-18 out three times (about 2 s unloaded)
def test_torchvision_resnet18_with_local_weights_and_second_labelling(tmp_path):
    """torchvision's ResNet-18 (no download: random weights saved here), 3-channel generated
    images, graph node and module names, labels it was trained on beside the data's own: exp1
    and exp2, the realised share of changed labels beside p."""
    train = generated(tmp_path / "train.npz", 45, channels=3, size=16)
    test = generated(tmp_path / "test.npz", 30, seed=1, channels=3, size=16)
    true = np.load(train)["labels"]
    given = corrupt_labels(true, 0.6, 3, seed=5)
    np.save(tmp_path / "given.npy", given)
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "r.pt")
    out = tmp_path / "out"
    decode_main("--model", "torchvision.models.resnet18", "--model-args", "num_classes=3",
                "--weights", tmp_path / "r.pt", "--train", train, "--test", test,
                "--train-labels", tmp_path / "given.npy", "--corrupt", "0.6",
                "--layers", "layer1.0.add", "layer4", "flatten", "--out", out)
    exp1 = pd.read_csv(results.masc_csv(out, "train", "resnet18", 0.6, 1, 1))
    exp2 = pd.read_csv(results.masc_csv(out, "train", "resnet18", 0.6, 1, 2))
    assert list(exp1.layer) == ["layer1.0.add", "layer4", "flatten"]
    assert exp1.dim.tolist() == [64 * 4 * 4, 512, 512]
    assert exp1.changed_labels.eq(np.mean(given != true)).all() and 0 < exp1.changed_labels[0] < 1
    assert set(exp1.subspaces_from) == {"corrupted"} and set(exp2.subspaces_from) == {"original"}
    assert (exp1.corrupt == 0.6).all() and set(exp1.network) == {"trained"}


def test_what_does_not_fit_is_one_error_line(npz, tmp_path, capsys):
    """A checkpoint of another model, a missing layer, labels out of range, an evaluation set of
    other classes: each one line on stderr, exit status 2, nothing written."""
    train, test = npz
    other = tmp_path / "other.pt"
    state = small_net(num_classes=5).state_dict()
    state.pop("conv.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, other)
    out = tmp_path / "out"
    common = ["--model", f"{HERE}:small_net", "--train", train, "--test", test, "--out", out]

    def error(*argv):
        with pytest.raises(SystemExit) as stop:
            decode_main(*common, *argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        return err

    err = error("--weights", other)
    assert "do not fit small_net: missing 1 key(s) (conv.bias); 1 unexpected (extra.weight); " \
           "other shapes: head.weight (5, 16) for (3, 16)" in err
    assert "has no layer 'fcc'; nearest: fc" in error("--layers", "conv", "fcc")
    np.save(tmp_path / "bad.npy", np.full(60, 7))
    bad = np.load(train)["labels"].copy()
    bad[4] = 7
    np.save(tmp_path / "bad.npy", bad)
    assert "training label 7 (row 4) is outside 0..2" in error(
        "--train-labels", tmp_path / "bad.npy", "--corrupt", "0.2",
        "--model-args", "num_classes=3")
    wider = generated(tmp_path / "wide.npz", 30, classes=4)
    assert "the evaluation set wide has class 3 (row 3), outside the training classes 0..2" in \
        error("--test", wider)
    assert "give --corrupt P" in error("--train-labels", tmp_path / "bad.npy")
    assert "the network gives 2 outputs for 3 classes" in error("--model-args", "num_classes=2")
    assert not out.exists()


def test_image_folders_name_their_classes(tmp_path, capsys):
    """An image folder per set: its class folders are its classes; another set of classes to
    evaluate on, or a label beyond them, is refused (break: compare only the label ranges)."""
    from PIL import Image

    def folder(root, classes, n=4):
        rng = np.random.RandomState(len(classes))
        for c, name in enumerate(classes):
            (root / name).mkdir(parents=True)
            for i in range(n):
                image = rng.randint(0, 60, (8, 8), dtype=np.uint8)
                image[2 * c:2 * c + 2, 2 * c:2 * c + 2] = 250
                Image.fromarray(image).save(root / name / f"{i}.png")
        return root

    train = folder(tmp_path / "shapes", ["a", "b", "c"])
    test = folder(tmp_path / "shapes_test", ["a", "b", "c"], n=2)
    other = folder(tmp_path / "other", ["a", "b", "d"], n=2)
    out = tmp_path / "out"
    decode.read_out(small_net, train, test, model_args={"channels": 3}, layers=["fc"], out=out,
                    readout=decode.Settings(device="cpu"), log=lambda *_: None)
    table = pd.read_csv(results.masc_csv(out, "shapes", "small_net", 0.0, 1, 1))
    assert table.n_train.tolist() == [12] and table.dim.tolist() == [16]
    on_disk = decode.read_out(small_net, train, test, model_args={"channels": 3}, layers=["fc"],
                              out=tmp_path / "disk", figure=False, log=lambda *_: None,
                              readout=decode.Settings(device="cpu", rows_on_disk=True))
    same = ["k_mean", "train_acc_vs_corrupted", "test_acc", "model_test_acc"]
    assert on_disk[same].values.tolist() == table[same].values.tolist()  # --rows-on-disk
    with pytest.raises(MASCError, match="the evaluation set other has other classes than the "
                                        "training set shapes"):
        decode.read_out(small_net, train, other, model_args={"channels": 3}, out=out)
    np.save(tmp_path / "labels.npy", np.array([0, 1, 2, 3] * 3))
    with pytest.raises(MASCError, match="training label 3 .* outside 0..2, the 3 classes"):
        decode.read_out(small_net, train, test, model_args={"channels": 3}, out=out,
                        train_labels=tmp_path / "labels.npy", corrupt=0.5)


@requires_mnist
@pytest.mark.slow  # reads ResNet-18 and a small model out on real MNIST
def test_real_mnist_resnet18_and_a_small_model(tmp_path, data_root):
    """Real MNIST by name: ResNet-18 with grey images repeated to 3 channels, and the small model
    with a run's labels.npz (corrupted at p = 0.8, realised share printed beside p)."""
    from MASC.corruption import RunLabels

    out = tmp_path / "out"
    decode_main("--model", "torchvision.models.resnet18", "--model-args", "num_classes=10",
                "--train", "MNIST", "--channels", "3", "--subset", "300", "--test-subset", "200",
                "--layers", "maxpool", "layer2", "flatten", "--control", "random-init",
                "--data", data_root, "--out", out)
    table = pd.read_csv(results.masc_csv(out, "MNIST", "resnet18", 0.0, 1, 1))
    assert table.layer.tolist() == ["maxpool", "layer2", "flatten"] * 2
    assert table.dim.tolist() == [64 * 7 * 7, 128 * 4 * 4, 512] * 2
    assert (table.test_acc > 0.5).all()  # an untrained ResNet's layers still sort digits
    from MASC import data

    labels = data.load("MNIST", data_root, True).labels.numpy()
    RunLabels.of_run(labels, 0.8, 10, subset=300).save(tmp_path / "labels.npz")
    decode_main("--model", f"{HERE}:SmallNet", "--model-args", "size=28", "num_classes=10",
                "--train", "MNIST", "--train-labels", tmp_path / "labels.npz", "--test-subset",
                "200", "--layers", "all", "--data", data_root, "--out", out)
    exp1 = pd.read_csv(results.masc_csv(out, "MNIST", "SmallNet", 0.8, 1, 1))
    exp2 = pd.read_csv(results.masc_csv(out, "MNIST", "SmallNet", 0.8, 1, 2))
    assert exp1.layer.tolist() == ["conv", "pool", "flat", "fc", "head"]
    assert exp1.n_train.eq(300).all() and 0.6 < exp1.changed_labels[0] < 0.8
    assert exp2.test_acc.mean() > exp1.test_acc.mean()  # true-label subspaces read digits better
