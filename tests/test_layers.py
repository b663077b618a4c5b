"""Layers by name on any nn.Module: the paper's short names, torchvision graph node names where
the model traces, forward hooks on module names where it does not; clear errors; the listing."""
import pytest
import torch
import torchvision
from torch import nn

from MASC import layers, models
from MASC.errors import MASCError


class Untraceable(nn.Module):
    """Data-dependent control flow (torch.fx cannot trace it) and a module run twice."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
        self.shared = nn.ReLU()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.body(x)
        if h.sum() > 0:  # a Python branch on a tensor's value
            h = h * 2
        return self.head(self.shared(self.shared(h)))


def test_paper_cnn_by_module_names_is_bit_identical_to_its_short_names():
    """The short names go through forward hooks (as the paper read them), the module names
    through the traced graph: the same activations, bit for bit (break: read a module's input,
    or the first node of a module instead of its output)."""
    torch.manual_seed(0)
    net = models.build("CNN", "MNIST").eval()
    x = torch.randn(4, 1, 28, 28)
    short = list(net.taps)
    assert layers.resolve(net, short)[1] is False  # hooks
    assert layers.resolve(net, list(net.taps.values()))[1] is True  # torchvision's graph
    with torch.no_grad():
        by_alias = layers.activations(net, x)
        by_module = layers.activations(net, x, list(net.taps.values()))
    assert list(by_alias) == short
    for alias, module in net.taps.items():
        assert torch.equal(by_alias[alias], by_module[module]), alias


def test_torchvision_resnet18_graph_nodes_and_module_names():
    """Graph node names tell a module's two calls apart (relu, relu_1), read functional nodes
    (add) and the input (x); a module name is its last node; the model's own output is its
    last layer (break: read module names by hooks, which keep the second call)."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(3, 3, 28, 28)
    names = ["x", "layer1.0.relu", "layer1.0.relu_1", "layer1.0.add", "layer1", "layer1.1.relu_1",
             "flatten", "fc"]
    with torch.no_grad():
        found = layers.activations(net, x, names)
        logits = net(x)
        block = net.layer1[0]
        stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        first_relu = torch.relu(block.bn1(block.conv1(stem)))
    assert list(found) == names
    assert torch.equal(found["x"], x.flatten(1))
    assert torch.allclose(found["layer1.0.relu"], first_relu.flatten(1))
    assert torch.equal(found["layer1.0.relu_1"], found["layer1.0.add"].clamp(min=0))
    assert not torch.equal(found["layer1.0.relu"], found["layer1.0.relu_1"])
    assert torch.equal(found["layer1"], found["layer1.1.relu_1"])
    assert torch.equal(found["fc"], logits) and found["flatten"].shape == (3, 512)
    assert layers.layer_names(net)[:4] == ["conv1", "bn1", "relu", "maxpool"]  # top-level modules


def test_untraceable_model_is_read_by_hooks_on_module_names():
    """Without a graph, module names are read by forward hooks; a module that runs twice is an
    error, not its second output taken silently (break: drop the check in the hook)."""
    torch.manual_seed(0)
    net = Untraceable().eval()
    x = torch.rand(5, 1, 4, 4)
    assert layers.graph_nodes(net) is None
    assert layers.layer_names(net) == ["body", "shared", "head"]
    with torch.no_grad():
        found = layers.activations(net, x, ["body.1", "body", "head"])
        assert torch.equal(found["head"], net(x))
        assert torch.equal(found["body"], torch.relu(found["body.1"]))
        with pytest.raises(MASCError, match="module shared runs more than once"):
            layers.activations(net, x, ["shared"])


def test_unknown_layers_name_the_nearest_ones():
    net = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(MASCError, match="ResNet has no layer 'layer5'; nearest: layer4") as e:
        layers.check_layers(net, ["layer1", "layer5"])
    assert "python -m MASC.layers" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(MASCError, match="has no layer 'bdy'; nearest: body"):
        layers.check_layers(Untraceable(), ["bdy"])
    with pytest.raises(MASCError, match="CNN has no layer 'fc9'; nearest: .*fc3"):
        layers.check_layers(models.build("CNN", "MNIST"), ["fc9"])


def test_a_layer_that_gives_no_tensor_is_a_clear_error():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.split = nn.Identity()

        def forward(self, x):
            out = self.split((x, x))
            if x.sum() > 0:  # untraceable: read by a hook
                pass
            return out[0].flatten(1)

    with pytest.raises(MASCError, match="layer 'split' gives a tuple, not a batch"):
        layers.activations(Pair(), torch.ones(2, 3), ["split"])


def test_layers_command_lists_names_shapes_and_sizes(capsys):
    layers.main(["CNN", "--dataset", "MNIST"])
    lines = capsys.readouterr().out.splitlines()
    row = {line.split()[0]: line for line in lines[2:]}
    assert "(576,)" in row["flattern"] and row["flattern"].rstrip().endswith("576")
    assert "relu_fc1" in row["fc1"] and "graph node" in row["relu_1"]
    assert row["conv1"].rstrip().endswith("12,544")  # 16 x 28 x 28
    layers.main(["torchvision.models.resnet18", "--model-args", "num_classes=10",
                 "--input-shape", "3", "28", "28"])
    out = capsys.readouterr().out
    assert "layer1.0.relu_1" in out and "module (its last node)" in out and "traced: yes" in out
    with pytest.raises(SystemExit) as stop:
        layers.main(["CNN"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("error: give the example input")
    layers.main([f"{__file__}:Untraceable", "--input-shape", "1", "4", "4"])
    out = capsys.readouterr().out
    assert "traced: no" in out and "runs 2 times" in out
