"""The paper's models, torchvision style, with the reference's state_dict keys, and one record per
model (:data:`REGISTRY`: how to build, optimise, batch and stop it).

Every model lists the layers MASC reads in ``taps``: reference short name -> name of the submodule
whose output (flattened) is that layer's activation. :mod:`MASC.layers` taps them with forward
hooks, the one mechanism shared by all models. Parameter-free modules (``Identity``, ``Flatten``,
``ReLU``) stand at the tap points; they add no state_dict keys, so reference checkpoints load.
"""
from dataclasses import dataclass, field

import torch
from torch import nn

from . import data
from .errors import MASCError


class CNN(nn.Module):
    """The reference ``NgnCnn`` without dropout: six 3x3 convs, three FC-250 layers, a bias-free head."""

    taps = {"input": "input", "flattern": "flatten", "fc1": "relu_fc1", "fc2": "relu_fc2",
            "fc3": "relu_fc3"}

    def __init__(self, channels=1, image_size=28, num_classes=10, width=250):
        super().__init__()
        self.input = nn.Identity()
        self.conv1 = nn.Conv2d(channels, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv4 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv5 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv6 = nn.Conv2d(64, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.flatten = nn.Flatten()
        side = image_size // 2 // 2 // 2
        self.fcs = nn.ModuleList([nn.Linear(64 * side * side, width), nn.Linear(width, width),
                                  nn.Linear(width, width)])
        self.relu_fc1, self.relu_fc2, self.relu_fc3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.fc3 = nn.Linear(width, num_classes, bias=False)

    def forward(self, x):
        x = self.input(x)
        x = self.pool(torch.relu(self.conv2(torch.relu(self.conv1(x)))))
        x = self.pool(torch.relu(self.conv4(torch.relu(self.conv3(x)))))
        x = self.pool(torch.relu(self.conv6(torch.relu(self.conv5(x)))))
        x = self.flatten(x)
        for fc, relu in zip(self.fcs, (self.relu_fc1, self.relu_fc2, self.relu_fc3)):
            x = relu(fc(x))
        return self.fc3(x)


class MLP(nn.Module):
    """flatten -> 128 -> 512 -> 2048 -> 2048 -> classes, ReLU between."""

    taps = {"input": "flatten", "fc1": "relu1", "fc2": "relu2", "fc3": "relu3", "fc4": "relu4"}

    def __init__(self, in_features=784, num_classes=10):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, 128)
        self.fc2 = nn.Linear(128, 512)
        self.fc3 = nn.Linear(512, 2048)
        self.fc4 = nn.Linear(2048, 2048)
        self.output = nn.Linear(2048, num_classes)
        self.relu1, self.relu2, self.relu3, self.relu4 = nn.ReLU(), nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = self.flatten(x)
        x = self.relu1(self.fc1(x))
        x = self.relu2(self.fc2(x))
        x = self.relu3(self.fc3(x))
        x = self.relu4(self.fc4(x))
        return self.output(x)


class AlexNet(nn.Module):
    """AlexNet for 32x32 (CIFAR100) or 64x64 (TinyImageNet) inputs; features -> fc1 -> fc2 -> fc3.

    ``classifier`` is never used in ``forward``; it is kept so that reference checkpoints load.
    """

    taps = {"flattern": "flatten", "fc1": "relu_fc1", "fc2": "relu_fc2"}

    def __init__(self, num_classes=100, tiny_imagenet=False):
        super().__init__()
        if tiny_imagenet:
            first = [nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                     nn.Conv2d(64, 192, 5, padding=2)]
        else:
            first = [nn.Conv2d(3, 64, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
                     nn.Conv2d(64, 192, 3, padding=1)]
        self.features = nn.Sequential(
            *first, nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(256, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096),
            nn.ReLU(), nn.Linear(4096, num_classes))
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(256, 4096)
        self.fc2 = nn.Linear(4096, 4096)
        self.fc3 = nn.Linear(4096, num_classes)
        self.relu_fc1, self.relu_fc2 = nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = self.flatten(self.features(x))
        x = self.relu_fc2(self.fc2(self.relu_fc1(self.fc1(x))))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus shortcut, then ReLU (``relu`` and ``relu_1`` are the two ReLUs)."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu_1 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu_1(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18: 3x3 stem with a max-pool (32 -> 16), four stages of two blocks."""

    taps = {"l0": "maxpool", "l0_1": "layer1.0.relu", "l0_2": "layer1.0.relu_1",
            "l0_3": "layer1.1.relu", "l1": "layer1.1.relu_1", "l2": "layer2.1.relu_1",
            "l3": "layer3.1.relu_1", "l4": "layer4.1.relu_1", "bf_last": "flatten"}

    def __init__(self, num_classes=10, channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths, strides, in_channels = (64, 128, 256, 512), (1, 2, 2, 2), 64
        for i, (width, stride) in enumerate(zip(widths, strides), start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(in_channels, width, stride),
                                                     BasicBlock(width, width)))
            in_channels = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def _cnn(spec):
    channels, height, _ = spec.shape
    return CNN(channels, height, spec.num_classes)


def _mlp(spec):
    channels, height, width = spec.shape
    return MLP(channels * height * width, spec.num_classes)


def _alexnet(spec):
    channels, height, _ = spec.shape
    if channels != 3 or height not in (32, 64):
        raise MASCError(f"AlexNet takes 3x32x32 or 3x64x64 images, not {spec.name}")
    return AlexNet(spec.num_classes, tiny_imagenet=height == 64)


def _resnet18(spec):
    return ResNet18(spec.num_classes, spec.shape[0])


@dataclass(frozen=True)
class Model:
    """Everything the package knows about a model (docs/protocol.md, 'Training and stop rules'):
    ``make`` builds it for a dataset's :class:`~MASC.data.DatasetInfo`; its optimiser (class,
    settings); its training batch size (``batch_sizes``: per dataset where it differs); its
    stop rule ("running": the epoch's own training accuracy reaches the dataset's target;
    "post-epoch": a full pass over the training set after the epoch, >= POST_EPOCH_TARGET %).
    The layers MASC reads are the class's ``taps``."""

    cls: type
    make: object
    optimiser: tuple
    batch_size: int
    batch_sizes: dict = field(default_factory=dict)
    stop_rule: str = "running"

    @property
    def taps(self):
        return self.cls.taps


# The registry: a new model is one record here (and its class above, with its taps). Every model
# must stack (MASC.stacking runs K copies as one): its parameterised layers are Conv2d,
# BatchNorm2d and Linear, anything else parameter-free (ReLU, pooling, Flatten, Identity, ...);
# tests/test_stacking.py trains every registered model as a stack of 2 against each alone.
REGISTRY = {
    "CNN": Model(CNN, _cnn, (torch.optim.Adam, {"lr": 2e-4}), 128, {"CIFAR10": 32}),
    "MLP": Model(MLP, _mlp, (torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9}), 32,
                 stop_rule="post-epoch"),
    "AlexNet": Model(AlexNet, _alexnet, (torch.optim.Adam, {"lr": 1e-4}), 128,
                     {"TinyImageNet": 500}),
    "ResNet18": Model(ResNet18, _resnet18, (torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9}), 32),
}
MODELS = tuple(REGISTRY)


def record(model):
    """The :class:`Model` record of a model name, or a clear error listing the known names."""
    if model not in REGISTRY:
        raise MASCError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    return REGISTRY[model]


def check_name(model):
    record(model)


def build(model, dataset):
    """A freshly initialised model for a dataset (PyTorch default initialisation)."""
    return record(model).make(data.info(dataset))


def batch_size(model, dataset):
    """The reference's training batch size for a (model, dataset) pair."""
    found = record(model)
    return found.batch_sizes.get(dataset, found.batch_size)


def make_optimiser(model, params, graph_safe=False):
    """The reference optimiser of a model over ``params``; ``graph_safe`` makes it safe to capture
    in a CUDA graph (Adam's step count stays on the device; SGD needs nothing)."""
    cls, settings = record(model).optimiser
    extra = {"capturable": True} if graph_safe and cls is torch.optim.Adam else {}
    return cls(params, **settings, foreach=True, **extra)
