"""Layer read-out: activations of a model's layers in large batches, fed straight to estimators.

The model runs in eval mode under ``no_grad`` on the chosen device; nothing is pickled. The
reference instead ran ResNet-18's BatchNorm in train mode one image at a time (docs/protocol.md,
'Read-out and ResNet per-sample BatchNorm'):
``per_sample_bn=True`` reproduces that quirk exactly and still in large batches, because batch
statistics over a batch of one image are per-image instance-norm statistics.
"""
import copy
import time

import torch
from torch import nn
import torch.nn.functional as F

from . import data
from .errors import MASCError
from .layers import check_layers, tapped
from .masc import MinimumAngleSubspaceClassifier

BATCH = 1000


class PerSampleBatchNorm(nn.Module):
    """A BatchNorm2d that normalises each image with its own statistics (train mode, batch 1)."""

    def __init__(self, bn):
        super().__init__()
        self.bn = bn

    def forward(self, x):
        return F.instance_norm(x, weight=self.bn.weight, bias=self.bn.bias, eps=self.bn.eps)


def per_sample_batchnorm(model):
    """A copy of ``model`` whose BatchNorm2d layers use per-image statistics."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, name, PerSampleBatchNorm(child))
    return model


def sync(device):
    """Wait for a CUDA device's queued work (so that a clock reads its time); else nothing."""
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize()


def forward_layers(model, images, dataset, layers=None, device="cpu", batch_size=BATCH,
                   per_sample_bn=False):
    """Yield ``(rows, {layer: (b, D) activation}, logits)`` over uint8 ``images`` in order.

    A layer whose activations are not all finite (a diverged or damaged model) is an error that
    names it."""
    layers = check_layers(model, layers)
    model = (per_sample_batchnorm(model) if per_sample_bn else model).to(device).eval()
    with torch.no_grad(), tapped(model, layers) as found:
        for start in range(0, len(images), batch_size):
            x = data.normalise(images[start:start + batch_size].to(device), dataset)
            logits = model(x)
            for layer, a in found.items():
                if not torch.isfinite(a).all():
                    raise MASCError(f"layer {layer} gives NaN or infinite activations on images "
                                    f"{start}-{start + len(x) - 1}: the model diverged or its "
                                    f"checkpoint is damaged; train it again")
            yield slice(start, start + len(x)), dict(found), logits


def fit_masc(model, split, labellings, dataset, layers=None, device="cpu", threshold=0.99,
             batch_size=BATCH, per_sample_bn=False, classes=None):
    """One MASC per (labelling, layer), fitted from one pass over ``split``.

    ``labellings`` maps a name (e.g. "corrupted", "original") to training labels. Returns
    ``(estimators, seconds)``, both keyed by (labelling, layer); seconds are fit time alone."""
    layers = check_layers(model, layers)
    labellings = {name: torch.as_tensor(y).to(device) for name, y in labellings.items()}
    estimators = {(name, layer): MinimumAngleSubspaceClassifier(threshold, device=device)
                  for name in labellings for layer in layers}
    seconds = dict.fromkeys(estimators, 0.0)
    for rows, acts, _ in forward_layers(model, split.images, dataset, layers, device, batch_size,
                                        per_sample_bn):
        for (name, layer), est in estimators.items():
            tic = time.perf_counter()
            est.partial_fit(acts[layer], labellings[name][rows], classes=classes)
            sync(device)
            seconds[name, layer] += time.perf_counter() - tic
    for key, est in estimators.items():
        tic = time.perf_counter()
        est.solve()
        sync(device)
        seconds[key] += time.perf_counter() - tic
    return estimators, seconds


def predict(model, images, estimators, dataset, device="cpu", batch_size=BATCH, per_sample_bn=False):
    """Predictions of every estimator (keyed by (labelling, layer)) and of the network itself.

    Returns ``(predictions, network_predictions, seconds)``; seconds per estimator key."""
    layers = sorted({layer for _, layer in estimators}, key=list(model.taps).index)
    found = {key: [] for key in estimators}
    network, seconds = [], dict.fromkeys(estimators, 0.0)
    for _, acts, logits in forward_layers(model, images, dataset, layers, device, batch_size,
                                          per_sample_bn):
        network.append(logits.argmax(1).cpu())
        for key, est in estimators.items():
            tic = time.perf_counter()
            found[key].append(est.predict(acts[key[1]]).cpu())
            seconds[key] += time.perf_counter() - tic
    return {k: torch.cat(v) for k, v in found.items()}, torch.cat(network), seconds


def collect(model, images, dataset, layers=None, device="cpu", batch_size=BATCH, per_sample_bn=False):
    """All activations of ``layers`` for ``images`` as CPU float32 tensors, plus network predictions."""
    parts, network = {}, []
    for _, acts, logits in forward_layers(model, images, dataset, layers, device, batch_size,
                                          per_sample_bn):
        network.append(logits.argmax(1).cpu())
        for layer, a in acts.items():
            parts.setdefault(layer, []).append(a.float().cpu())
    return {layer: torch.cat(v) for layer, v in parts.items()}, torch.cat(network)
