"""Layer read-out: activations of a model's layers in large batches, fed straight to estimators.

The model runs in eval mode under ``no_grad`` on the chosen device; nothing is pickled. The
reference instead ran ResNet-18's BatchNorm in train mode one image at a time (docs/protocol.md,
'Read-out and ResNet per-sample BatchNorm'):
``per_sample_bn=True`` reproduces that quirk exactly and still in large batches, because batch
statistics over a batch of one image are per-image instance-norm statistics.
"""
import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn
import torch.nn.functional as F

from . import data
from .errors import MASCError
from .layers import check_layers, tapped
from .devices import pick_device, sync
from .masc import THRESHOLD, iter_labellings
from .rowfile import RowFile

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


@dataclass(frozen=True)
class Settings:
    """How a trained network is read out (the scripts' read-out flags), in one object: each
    field's default is the one default of that setting (the scripts' and :class:`Reader`'s)."""

    layers: tuple = None  # short names; None: every tapped layer
    device: str = "auto"
    batch_size: int = field(default=BATCH, metadata={"constant": "BATCH"})  # images per pass
    per_sample_bn: bool = True  # ResNet BatchNorm on each image alone, as the paper read it out
    rows_on_disk: bool = False  # MASC's activations in temporary files ($TMPDIR), not in memory

    def reader(self, net, dataset):
        """A :class:`Reader` of ``net`` with these settings."""
        return Reader(net, dataset, layers=self.layers, device=self.device,
                      batch_size=self.batch_size, per_sample_bn=self.per_sample_bn,
                      rows_on_disk=self.rows_on_disk)


@dataclass
class LayerRows:
    """One layer's activations (:meth:`Reader.layer_rows`): ``rows`` of the first image set and
    ``image_sets`` of the others ((n, D) tensors on the reader's device, or RowFiles), and the
    network's own predictions on the others (CPU)."""

    layer: str
    rows: object
    image_sets: list
    network: list

    @property
    def dim(self):
        return self.rows.shape[1]

    def free(self):
        """Drop the activations (RowFiles are closed, their files removed)."""
        for acts in (self.rows, *self.image_sets):
            if isinstance(acts, RowFile):
                acts.close()
        self.rows, self.image_sets = None, []


@dataclass
class LayerMASC:
    """MASC read out at one layer, its estimators already freed: per labelling name, k per class,
    the predictions on the rows it was fitted on and on each image set, and the seconds spent."""

    layer: str
    dim: int
    n_components: dict = field(default_factory=dict)  # name -> k per class (NumPy)
    fitted_rows: dict = field(default_factory=dict)  # name -> predictions on the fitting rows
    predictions: list = field(default_factory=list)  # per image set: {name: predictions}
    network: list = field(default_factory=list)  # per image set: the network's own predictions
    fit_seconds: dict = field(default_factory=dict)
    predict_seconds: dict = field(default_factory=dict)


class Reader:
    """A trained network read out layer by layer: built once from the network and how to read
    it, then used to read MASC out of every layer and to collect activations.

    ``layers``: short names (None: every tapped layer); ``per_sample_bn``: ResNet BatchNorm with
    each image's own statistics (the paper's read-out, the default; False: running statistics);
    the network runs in eval mode under ``no_grad`` on ``device`` in batches of ``batch_size``
    images. ``rows_on_disk``: MASC keeps a layer's activations in temporary files
    (:class:`~MASC.rowfile.RowFile`) instead of memory (same k and predictions; for layers whose
    rows do not fit)."""

    def __init__(self, net, dataset, *, layers=Settings.layers, device=Settings.device,
                 batch_size=Settings.batch_size, per_sample_bn=Settings.per_sample_bn,
                 rows_on_disk=Settings.rows_on_disk):
        self.dataset, self.batch_size, self.rows_on_disk = dataset, batch_size, rows_on_disk
        self.scaling = data.input_scaling(net)
        self.device = pick_device(device)
        self.layers = check_layers(net, layers)
        self.net = (per_sample_batchnorm(net) if per_sample_bn else net).to(self.device).eval()

    def batches(self, images, layers=None):
        """Yield ``(rows, {layer: (b, D) activation}, logits)`` over uint8 ``images`` in order.

        A layer whose activations are not all finite (a diverged or damaged model) is an error
        that names it."""
        layers = self.layers if layers is None else layers
        with torch.no_grad(), tapped(self.net, layers) as found:
            for start in range(0, len(images), self.batch_size):
                x = data.normalise(images[start:start + self.batch_size].to(self.device),
                                   self.dataset, self.scaling)
                logits = self.net(x)
                for layer, a in found.items():
                    if not torch.isfinite(a).all():
                        raise MASCError(f"layer {layer} gives NaN or infinite activations on "
                                        f"images {start}-{start + len(x) - 1}: the model diverged "
                                        f"or its checkpoint is damaged; train it again")
                yield slice(start, start + len(x)), dict(found), logits

    def layer_rows(self, images, image_sets=()):
        """Yield a :class:`LayerRows` per layer, one layer at a time, in bounded memory: one
        forward pass over ``images`` and the other ``image_sets`` (uint8 images) stores that
        layer's activations once (on the device, or in RowFiles with ``rows_on_disk``); they are
        freed when the consumer moves on (or calls ``free``). The one path of every read-out:
        :meth:`masc_by_layer`, the probes, any other estimator."""
        for layer in self.layers:
            found = LayerRows(layer, *self._activations([images, *image_sets], layer))
            try:
                yield found
            finally:
                found.free()

    def masc_by_layer(self, split, labellings, image_sets=(), *, threshold=THRESHOLD,
                      classes=None):
        """Yield a :class:`LayerMASC` per layer, one layer at a time, in bounded memory.

        For each layer (:meth:`layer_rows`), each labelling of ``split`` (name -> labels) is
        fitted from the stored rows (:func:`~MASC.masc.iter_labellings`), predicts them and the
        image sets, and is freed before the next. Only predictions are kept, so memory holds one
        layer's rows (none with ``rows_on_disk``) and one labelling's subspaces. k and predictions
        are those of :meth:`MASC.masc.MinimumAngleSubspaceClassifier.fit` on the layer's
        activations."""
        for layer in self.layer_rows(split.images, image_sets):
            rows, images = layer.rows, layer.image_sets
            found = LayerMASC(layer.layer, layer.dim, network=layer.network,
                              predictions=[{} for _ in image_sets])
            tic = time.perf_counter()
            for name, est in iter_labellings(rows, labellings, threshold, classes, self.device):
                sync(self.device)
                found.fit_seconds[name] = time.perf_counter() - tic
                tic = time.perf_counter()
                found.n_components[name] = est.n_components_
                found.fitted_rows[name] = est.predict(rows).cpu()
                for i, acts in enumerate(images):
                    found.predictions[i][name] = est.predict(acts).cpu()
                sync(self.device)
                found.predict_seconds[name] = time.perf_counter() - tic
                del est
                tic = time.perf_counter()
            del rows, images
            layer.free()
            yield found

    def _activations(self, image_sets, layer):
        """``(first set's activations, [the others'], [the network's predictions on the
        others])`` of one layer (one forward pass over every set, each set in a single
        preallocated tensor on the device, or a RowFile)."""
        stored, network = [], []
        for i, images in enumerate(image_sets):
            acts, logits = None, []
            for rows, found, out in self.batches(images, [layer]):
                a = found[layer]
                if acts is None:
                    acts = (RowFile(len(images), a.shape[1]) if self.rows_on_disk else
                            torch.empty(len(images), a.shape[1], dtype=a.dtype, device=a.device))
                acts[rows] = a
                logits.append(out.argmax(1).cpu())
            stored.append(acts)
            if i:
                network.append(torch.cat(logits))
        return stored[0], stored[1:], network

    def collect(self, images):
        """All activations of the layers for ``images`` as CPU float32 tensors, plus the
        network's predictions."""
        parts, network = {}, []
        for _, acts, logits in self.batches(images):
            network.append(logits.argmax(1).cpu())
            for layer, a in acts.items():
                parts.setdefault(layer, []).append(a.float().cpu())
        return {layer: torch.cat(v) for layer, v in parts.items()}, torch.cat(network)
