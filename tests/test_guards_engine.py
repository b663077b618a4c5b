"""The training engine, the CIFAR transform, the stop thresholds and per-image BatchNorm against
independent references (plain PyTorch, torchvision, the spec's numbers). No real data needed."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import write_cifar
from MASC import data, layers, models, readout, results, training


# 6. The stacked engine (a stack of one) against a plain nn.Module + torch.optim loop ------------

def relative_error(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.slow
@pytest.mark.parametrize("model,n", [("CNN", 300), ("MLP", 100)])  # batches 128, 128, 44 / 32 x 3, 4
def test_a_stack_of_one_trains_like_a_plain_module_and_optimiser(model, n, monkeypatch):
    """Two shuffled epochs in float64: the engine's running accuracies, weight updates and
    predictions against the reference's loop (model(x), mean cross-entropy, the model's
    optimiser from models.make_optimiser, zero_grad / backward / step) on the same batches."""
    real = data.normalise
    monkeypatch.setattr(data, "normalise", lambda images, *args: real(images, *args).double())
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,))
    net = models.build(model, "MNIST").double()
    plain, start = copy.deepcopy(net), copy.deepcopy(net.state_dict())
    run = training.Run("MNIST", model, 0.0, 1, seed=3)
    group = training.Trainer([run], [net], labels[None], data.Split(images, labels))
    optimiser = models.make_optimiser(model, plain.parameters())
    batch = models.batch_size(model, "MNIST")
    for epoch in range(2):
        running = group.train_epoch(epoch, shuffle=True)[0]
        order, correct = training.epoch_order(run.seed, epoch, n), 0
        plain.train()
        for start_row in range(0, n, batch):
            idx = order[start_row:start_row + batch]
            logits = plain(real(images[idx], "MNIST").double())
            # the engine takes the loss of float32 logits (for bf16 autocast), so does this loop: a
            # float64 loss would differ by float32 rounding, which Adam turns into ~1% differences
            # of the CNN's first-layer updates after 6 steps
            loss = F.cross_entropy(logits.float(), labels[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            correct += int((logits.argmax(1) == labels[idx]).sum())
        assert running == 100 * correct / n
    ours, theirs = group.stack.state_dict(0), plain.state_dict()
    for key, value in theirs.items():  # the updates agree, not only the weights
        assert relative_error(ours[key] - start[key], value - start[key]) < 1e-7, key
    assert any(not torch.equal(theirs[k], start[k]) for k in theirs)
    test = data.Split(torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8), labels[:50])
    with torch.no_grad():
        expected = plain.eval()(real(test.images, "MNIST").double()).argmax(1)
    assert torch.equal(group.predict(test)[0], expected)


# 7. CIFAR normalisation against torchvision's ---------------------------------------------------

@pytest.mark.parametrize("name,classes", [("CIFAR10", 10), ("CIFAR100", 100)])
@pytest.mark.parametrize("train", [True, False])
def test_cifar_images_and_labels_equal_torchvisions_transform(tmp_path, monkeypatch, name, classes,
                                                              train):
    """data.load + data.normalise bit for bit against torchvision's dataset with ToTensor and
    Normalize((0.5,)*3, (0.5,)*3) on the same files, and the same labels in the same order."""
    import torchvision
    from torchvision import transforms

    write_cifar(tmp_path, classes)
    cls = getattr(torchvision.datasets, name)
    monkeypatch.setattr(cls, "_check_integrity", lambda self: True)  # generated files: no md5s
    monkeypatch.setattr(cls, "_load_meta", lambda self: None)  # and no batches.meta
    reference = cls(str(tmp_path), train=train, transform=transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]))
    split = data.load(name, tmp_path, train)
    assert len(split) == len(reference) == (100 if name == "CIFAR10" and train else 20)
    assert torch.equal(data.normalise(split.images, name),
                       torch.stack([reference[i][0] for i in range(len(reference))]))
    assert split.labels.tolist() == [reference[i][1] for i in range(len(reference))]
    assert split.labels.dtype == torch.int64 and len(set(split.labels.tolist())) == \
        min(classes, len(split))


# 8. Stop thresholds -----------------------------------------------------------------------------

SPEC_STOP = {"MNIST": 99.9, "FashionMNIST": 99.1, "CIFAR10": 100.0, "CIFAR100": 99.1,
             "TinyImageNet": 99.9}  # % running train accuracy (spec)


def test_stop_thresholds_are_the_specs():
    assert {name: spec.stop_accuracy for name, spec in data.DATASETS.items()} == SPEC_STOP
    for name, target in SPEC_STOP.items():
        for model in ("CNN", "AlexNet", "ResNet18"):
            assert training.stop_rule(model, name) == ("running", target)
        assert training.stop_rule("MLP", name) == ("post-epoch", 99.99)


@pytest.mark.parametrize("name", sorted(SPEC_STOP))
def test_a_run_stops_once_its_running_accuracy_reaches_the_datasets_threshold(tmp_path, monkeypatch,
                                                                              name):
    """Scripted running accuracies: just below the spec's threshold, then exactly at it. The run
    goes on after the first epoch and stops after the second, its target reached."""
    target = SPEC_STOP[name]
    spec = data.info(name)

    def load(dataset, root=None, train=True):
        g = torch.Generator().manual_seed(int(train))
        n = 8
        return data.Split(torch.randint(0, 256, (n, *spec.shape), dtype=torch.uint8, generator=g),
                          torch.arange(n) % spec.num_classes)

    monkeypatch.setattr(data, "load", load)
    scripted = [target - 0.01, target, 100.0, 100.0]
    monkeypatch.setattr(training.Trainer, "train_epoch",
                        lambda self, epoch, shuffle: [scripted[epoch]] * len(self.runs))
    run = training.Run(name, "CNN", 0.0, 1, seed=1)
    done = training.train([run], out=tmp_path, device="cpu", epochs=4, progress=False,
                          log=lambda *_: None)
    folder = results.run_dir(tmp_path, name, "CNN", 0.0, 1)
    assert done[run] == folder / "model_1.pth"
    state = results.RunKey(tmp_path, name, "CNN", 0.0, 1).load_progress()
    assert state["epoch"] == 2 and state["reached_target"] is True
    assert [row[1] for row in state["history"]] == scripted[:2]


# 9. Per-image BatchNorm against a real BatchNorm2d in train mode, one image at a time ----------

def test_per_sample_batchnorm_equals_train_mode_batchnorm_on_one_image_at_a_time():
    torch.manual_seed(0)
    net = models.build("ResNet18", "CIFAR10")
    for module in net.modules():  # non-trivial affine weights and running statistics
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    names = layers.layer_names(net)
    ours = readout.Reader(net, "CIFAR10", per_sample_bn=True, batch_size=3).collect(images)[0]
    evaluated = readout.Reader(net, "CIFAR10", per_sample_bn=False).collect(images)[0]
    for i in range(len(images)):
        alone = copy.deepcopy(net).train()  # the reference: train-mode BatchNorm on a batch of one
        with torch.no_grad():
            reference = layers.activations(alone, data.normalise(images[i:i + 1], "CIFAR10"))
        for name in names:  # float32 rounding of two normalisation kernels: ~1e-6
            assert relative_error(ours[name][i:i + 1], reference[name]) < 1e-5, (i, name)
    assert not torch.allclose(evaluated["bf_last"], ours["bf_last"], atol=1e-3)  # eval mode differs
    assert readout.per_sample_batchnorm(net) is not net
    assert not any(isinstance(m, readout.PerSampleBatchNorm) for m in net.modules())  # a copy

