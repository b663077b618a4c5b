"""CUDA paths (CUDA-graph training step, MASC on the GPU); skipped where no GPU is visible."""
import pytest
import torch

from conftest import check_stack_against_each_model, requires_mnist
from MASC import MinimumAngleSubspaceClassifier, data, models, training
from MASC.corruption import corrupt_labels

# these tests pin TF32 and cuDNN settings: backend_flags puts them back for the tests that follow
pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.usefixtures("backend_flags")]


def group(model, graphs, n=1000, k=3):
    torch.backends.cuda.matmul.allow_tf32 = False  # the same kernels in both paths:
    torch.backends.cudnn.allow_tf32 = False        # graph replay must then match eager closely
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    split = data.load("MNIST", None, True).first(n).to("cuda")
    runs = [training.Run("MNIST", model, 0.8, r, seed=r) for r in range(1, k + 1)]
    nets = []
    for run in runs:
        torch.manual_seed(run.seed)
        nets.append(models.build(model, "MNIST").cuda())
    labels = torch.stack([torch.as_tensor(corrupt_labels(split.labels.cpu().numpy(), r.corrupt, 10, r.label_seed))
                          for r in runs]).cuda()
    return training.Trainer(runs, nets, labels, split, graphs=graphs)


@requires_mnist
@pytest.mark.parametrize("model", ["CNN", "MLP"])  # Adam and SGD with momentum
def test_cuda_graph_epochs_equal_eager_epochs(model):
    eager, graphed = group(model, False), group(model, True)
    for epoch in range(2):  # the partial last batch gets its own graph
        acc_e, acc_g = eager.train_epoch(epoch, True), graphed.train_epoch(epoch, True)
        assert max(abs(a - b) for a, b in zip(acc_e, acc_g)) < 0.5
    for k in range(3):
        a, b = eager.stack.state_dict(k), graphed.stack.state_dict(k)
        assert all(torch.allclose(a[n], b[n], rtol=1e-4, atol=1e-6) for n in a)


@requires_mnist
def test_dropping_a_run_recaptures_and_keeps_the_others_exact():
    full, alone = group("CNN", True), group("CNN", True, k=3)
    full.train_epoch(0, True)
    alone.train_epoch(0, True)
    full.keep([0, 2])
    full.train_epoch(1, True)
    alone.train_epoch(1, True)
    a, b = full.stack.state_dict(1), alone.stack.state_dict(2)
    assert all(torch.allclose(a[n], b[n], rtol=1e-3, atol=1e-4) for n in a)


def test_masc_on_cuda_equals_cpu():
    g = torch.Generator().manual_seed(0)
    X = torch.relu(torch.randn(600, 300, generator=g) + torch.randn(6, 300, generator=g).repeat(100, 1))
    y = torch.arange(6).repeat(100)
    cpu = MinimumAngleSubspaceClassifier().fit(X, y)
    gpu = MinimumAngleSubspaceClassifier().fit(X.cuda(), y.cuda())
    assert list(cpu.n_components_) == list(gpu.n_components_)
    assert torch.equal(cpu.predict(X), gpu.predict(X.cuda()).cpu())


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("model,dataset,shape,dtype,tol", [
    ("CNN", "MNIST", (1, 28, 28), torch.float32, 1e-4),
    ("AlexNet", "CIFAR100", (3, 32, 32), torch.float32, 1e-4),
    # float64 (cuDNN runs it in NCHW): ResNet's BatchNorm on 8 images amplifies float32 rounding
    ("ResNet18", "CIFAR10", (3, 32, 32), torch.float64, 1e-10)])
def test_stack_on_cuda_equals_each_model_alone(model, dataset, shape, dtype, tol, channels_last):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    nets = [models.build(model, dataset).to("cuda", dtype) for _ in range(3)]
    x = torch.randn(3, 8, *shape, dtype=dtype, device="cuda")
    check_stack_against_each_model(nets, x, channels_last, tol)
