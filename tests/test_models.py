import pytest
import torch

from MASC import data, layers, models
from MASC.errors import MASCError

EXPECTED = {  # (model, dataset): {layer: dim}
    ("CNN", "MNIST"): {"input": 784, "flattern": 576, "fc1": 250, "fc2": 250, "fc3": 250},
    ("CNN", "CIFAR10"): {"input": 3072, "flattern": 1024, "fc1": 250, "fc2": 250, "fc3": 250},
    ("MLP", "MNIST"): {"input": 784, "fc1": 128, "fc2": 512, "fc3": 2048, "fc4": 2048},
    ("MLP", "CIFAR10"): {"input": 3072, "fc1": 128, "fc2": 512, "fc3": 2048, "fc4": 2048},
    ("AlexNet", "CIFAR100"): {"flattern": 256, "fc1": 4096, "fc2": 4096},
    ("AlexNet", "TinyImageNet"): {"flattern": 256, "fc1": 4096, "fc2": 4096},
    ("ResNet18", "CIFAR10"): {"l0": 16384, "l0_1": 16384, "l0_2": 16384, "l0_3": 16384,
                              "l1": 16384, "l2": 8192, "l3": 4096, "l4": 2048, "bf_last": 512},
}


@pytest.mark.parametrize("model,dataset", sorted(EXPECTED))
def test_layer_names_dims_and_logits(model, dataset):
    net = models.build(model, dataset).eval()
    spec = data.info(dataset)
    x = torch.randn(3, *spec.shape)
    with torch.no_grad():
        acts = layers.activations(net, x)
        logits = net(x)
    assert list(acts) == list(EXPECTED[model, dataset])
    assert {k: v.shape for k, v in acts.items()} == {k: (3, d) for k, d in EXPECTED[model, dataset].items()}
    assert logits.shape == (3, spec.num_classes)


def test_input_layer_is_the_normalised_image_and_taps_match_manual_forward():
    net = models.build("CNN", "MNIST").eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        acts = layers.activations(net, x)
        h = torch.relu(net.fcs[0](acts["flattern"]))
    assert torch.equal(acts["input"], x.flatten(1))
    assert torch.allclose(acts["fc1"], h)
    assert (acts["fc3"] >= 0).all()  # after ReLU


REFERENCE_KEYS = {
    "CNN": [f"conv{i}.{w}" for i in range(1, 7) for w in ("weight", "bias")]
    + [f"fcs.{i}.{w}" for i in range(3) for w in ("weight", "bias")] + ["fc3.weight"],
    "MLP": [f"{n}.{w}" for n in ("fc1", "fc2", "fc3", "fc4", "output") for w in ("weight", "bias")],
    "AlexNet": [f"features.{i}.{w}" for i in (0, 3, 6, 8, 10) for w in ("weight", "bias")]
    + [f"classifier.{i}.{w}" for i in (1, 4, 6) for w in ("weight", "bias")]
    + [f"{n}.{w}" for n in ("fc1", "fc2", "fc3") for w in ("weight", "bias")],
}


@pytest.mark.parametrize("model,dataset", [("CNN", "MNIST"), ("MLP", "CIFAR10"), ("AlexNet", "CIFAR100")])
def test_state_dict_keys_are_the_reference_ones(model, dataset):
    assert list(models.build(model, dataset).state_dict()) == REFERENCE_KEYS[model]


def test_resnet_state_dict_keys():
    keys = set(models.build("ResNet18", "CIFAR10").state_dict())
    assert len(keys) == 122
    for k in ("conv1.weight", "bn1.num_batches_tracked", "layer1.0.conv2.weight",
              "layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.running_var", "fc.bias"):
        assert k in keys
    assert "layer1.0.shortcut.0.weight" not in keys


def test_alexnet_variants_and_cnn_head_without_bias():
    tiny = models.build("AlexNet", "TinyImageNet")
    assert tiny.features[0].kernel_size == (11, 11) and tiny.fc3.out_features == 200
    assert models.build("CNN", "MNIST").fc3.bias is None


def test_unknown_names_and_layers_give_clear_errors():
    with pytest.raises(MASCError, match="unknown model 'VGG'"):
        models.build("VGG", "MNIST")
    with pytest.raises(MASCError, match="unknown dataset"):
        models.build("CNN", "SVHN")
    with pytest.raises(MASCError, match="has no layer 'fc9'"):
        layers.activations(models.build("CNN", "MNIST"), torch.zeros(1, 1, 28, 28), ["fc9"])
    with pytest.raises(MASCError, match="AlexNet takes"):
        models.build("AlexNet", "MNIST")


def test_training_settings_of_the_reference():
    assert models.batch_size("CNN", "MNIST") == 128 and models.batch_size("CNN", "CIFAR10") == 32
    assert models.batch_size("AlexNet", "TinyImageNet") == 500 and models.batch_size("MLP", "MNIST") == 32
    opt = models.make_optimiser("CNN", models.build("CNN", "MNIST").parameters())
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == 2e-4
    opt = models.make_optimiser("ResNet18", models.build("ResNet18", "CIFAR10").parameters())
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
