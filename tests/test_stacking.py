"""Stacked models (MASC.stacking) compute exactly what each model computes alone."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import check_stack_against_each_model, close
from MASC import models
from MASC.errors import MASCError
from MASC.stacking import Stack

SLOW = pytest.mark.slow  # float64 AlexNet and ResNet passes take seconds each
CASES = [("CNN", "MNIST", (1, 28, 28)), ("MLP", "MNIST", (1, 28, 28)),
         pytest.param("AlexNet", "CIFAR100", (3, 32, 32), marks=SLOW),
         pytest.param("AlexNet", "TinyImageNet", (3, 64, 64), marks=SLOW),
         pytest.param("ResNet18", "CIFAR10", (3, 32, 32), marks=SLOW)]


def nets_and_images(model, dataset, shape, k=2, b=4):
    torch.manual_seed(0)
    nets = [models.build(model, dataset) for _ in range(k)]
    return nets, torch.randn(k, b, *shape)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("model,dataset,shape", CASES)
def test_stack_equals_each_model_alone_forward_and_backward(model, dataset, shape, channels_last):
    nets, x = nets_and_images(model, dataset, shape)
    nets, x = [net.double() for net in nets], x.double()  # float32 rounding would blur the check
    stack = check_stack_against_each_model(nets, x, channels_last, 1e-10)
    for k, net in enumerate(nets):
        state = stack.state_dict(k)
        for name, value in net.state_dict().items():  # BatchNorm statistics updated per model
            assert close(state[name].double(), value.double(), 1e-10), name


@pytest.mark.parametrize("model,dataset,shape", CASES[::2])
def test_eval_mode_and_shared_input(model, dataset, shape):
    nets, x = nets_and_images(model, dataset, shape)
    stack = Stack(nets)
    stack.train(False)
    with torch.no_grad():
        out = stack(x[0], shared=True)
        for k, net in enumerate(nets):
            assert close(out[k], net.eval()(x[0]))


TRAINED = {"CNN": ("MNIST", (1, 28, 28)), "MLP": ("MNIST", (1, 28, 28)),  # Adam, SGD
           "AlexNet": ("CIFAR100", (3, 32, 32)), "ResNet18": ("CIFAR10", (3, 32, 32))}


def test_every_registered_model_is_trained_as_a_stack_below():
    """The stacking rule of MASC/models.py's registry is checked for every model in it."""
    assert set(TRAINED) == set(models.REGISTRY)


@pytest.mark.parametrize("model", [m if m in ("CNN", "MLP") else pytest.param(m, marks=SLOW)
                                   for m in TRAINED])
def test_training_a_stack_equals_training_each_model_alone(model):
    """Each registered model trains as a stack of 2 exactly as each alone (a stack of 1), with
    its own optimiser (break: a layer the stack does not group)."""
    dataset, shape = TRAINED[model]
    nets, x = nets_and_images(model, dataset, shape, b=16 if model != "ResNet18" else 4)
    nets = [net.double() for net in nets]
    steps = torch.randn(3, *x.shape, dtype=torch.float64)
    labels = torch.randint(0, 10, (3, *x.shape[:2]))

    def trained(stack, images, targets):
        optimiser = models.make_optimiser(model, list(stack.params.values()))
        for xb, yb in zip(images, targets):
            logits = stack(xb)
            loss = F.cross_entropy(logits.transpose(1, 2), yb, reduction="none").mean(1).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return stack

    together = trained(Stack(nets), steps, labels)
    for k, net in enumerate(nets):
        alone = trained(Stack([net]), steps[:, k:k + 1], labels[:, k:k + 1])
        for name in together.keys:
            assert close(together.state_dict(k)[name], alone.state_dict(0)[name], 1e-10), name


def test_select_keeps_the_chosen_models():
    nets, x = nets_and_images("ResNet18", "CIFAR10", (3, 32, 32), k=3)
    stack = Stack(nets)
    stack.train(False)
    kept = stack.select([0, 2])
    assert kept.size == 2 and not kept.base.training
    with torch.no_grad():
        assert torch.allclose(kept(x[[0, 2]]), stack(x)[[0, 2]], atol=1e-6)
    assert torch.equal(kept.state_dict(1)["fc.weight"], stack.state_dict(2)["fc.weight"])


def test_an_unknown_layer_is_refused():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(4)

        def forward(self, x):
            return self.norm(x)

    with pytest.raises(MASCError, match="cannot stack a LayerNorm"):
        Stack([Odd(), Odd()])
