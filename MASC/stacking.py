"""K models of one architecture run as one: stacked parameters and grouped layers.

Between the input and the first ``Flatten`` the K models' feature maps travel side by side as one
(B, K*C, H, W) tensor in channels_last memory: every convolution is a single convolution with K
groups, and pools, ReLUs and BatchNorm act per channel, so per model. ``Flatten`` turns them into
(K, features, B), where every ``Linear`` is one batched matmul W @ h (feature-major: neither the
weights nor their gradients are ever transposed). Each model computes exactly its own function;
the device sees a few large kernels instead of K small ones, and no layout conversions.
"""
import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from .errors import MASCError


class _Grouped(nn.Module):
    """A layer of K stacked models. It holds the single model's (meta) tensors under their usual
    names only as placeholders: ``functional_call`` supplies the stacked (K, ...) tensors."""

    def __init__(self, module, names):
        super().__init__()
        for name in names:
            value = getattr(module, name)
            if isinstance(value, nn.Parameter) or value is None:
                self.register_parameter(name, value)
            else:
                self.register_buffer(name, value)


class GroupedConv2d(_Grouped):
    """``Conv2d`` on (B, K*C_in, H, W): one convolution with K groups."""

    def __init__(self, conv):
        super().__init__(conv, ("weight", "bias"))
        if conv.padding_mode != "zeros" or conv.groups != 1:
            raise MASCError("stacking supports plain zero-padded convolutions only")
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation

    def forward(self, x):
        k = self.weight.shape[0]
        bias = None if self.bias is None else self.bias.flatten()
        return F.conv2d(x, self.weight.flatten(0, 1), bias, self.stride, self.padding,
                        self.dilation, groups=k)


class GroupedBatchNorm2d(_Grouped):
    """``BatchNorm2d`` on (B, K*C, H, W): statistics per channel are statistics per model."""

    def __init__(self, bn):
        super().__init__(bn, ("weight", "bias", "running_mean", "running_var",
                              "num_batches_tracked"))
        if bn.momentum is None or not (bn.affine and bn.track_running_stats):
            raise MASCError("stacking supports BatchNorm2d with affine weights, running "
                            "statistics and a fixed momentum only")
        self.momentum, self.eps = bn.momentum, bn.eps

    def forward(self, x):
        if self.training:
            self.num_batches_tracked.add_(1)
        # flatten() of the contiguous (K, C) statistics is a view: the update lands in the stack
        return F.batch_norm(x, self.running_mean.flatten(), self.running_var.flatten(),
                            self.weight.flatten(), self.bias.flatten(), self.training,
                            self.momentum, self.eps)


class StackedFlatten(nn.Module):
    """``Flatten`` from (B, K*C, H, W) to (K, C*H*W, B), each model's features in their usual order."""

    def __init__(self, flatten, k):
        super().__init__()
        if flatten.start_dim != 1 or flatten.end_dim != -1:
            raise MASCError("stacking supports Flatten() with its default dimensions only")
        self.k = k

    def forward(self, x):
        return x.unflatten(1, (self.k, -1)).flatten(2).permute(1, 2, 0)


class StackedLinear(_Grouped):
    """``Linear`` on (K, features, B): one batched matmul W @ h (+ bias)."""

    def __init__(self, linear):
        super().__init__(linear, ("weight", "bias"))

    def forward(self, h):
        if self.bias is None:
            return torch.bmm(self.weight, h)
        return torch.baddbmm(self.bias.unsqueeze(2), self.weight, h)


def grouped(model, k):
    """A meta-device copy of ``model`` whose layers run k stacked models at once."""
    model = copy.deepcopy(model).to("meta")
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                setattr(parent, name, GroupedConv2d(child))
            elif isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, GroupedBatchNorm2d(child))
            elif isinstance(child, nn.Linear):
                setattr(parent, name, StackedLinear(child))
            elif isinstance(child, nn.Flatten):
                setattr(parent, name, StackedFlatten(child, k))
            elif next(child.named_parameters(recurse=False), None) or \
                    next(child.named_buffers(recurse=False), None):
                raise MASCError(f"cannot stack a {type(child).__name__} layer; stacking knows "
                                f"Conv2d, BatchNorm2d, Linear and Flatten")
    return model


class Stack:
    """K models of one architecture as stacked parameters (K, ...), run as one grouped model.

    ``channels_last`` keeps the feature maps in channels_last memory (NHWC, the native layout of
    cuDNN's tensor-core and oneDNN's convolution kernels); either layout computes the same function.
    """

    def __init__(self, nets, channels_last=True):
        self.template = copy.deepcopy(nets[0]).to("meta")
        self.keys = list(nets[0].state_dict())
        params, buffers = stack_module_state(nets)
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.buffers = buffers
        self.size = len(nets)
        self.base = grouped(self.template, self.size)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x, shared=False):
        """Logits (K, B, classes) for images (K, B, C, H, W) or, with ``shared``, one (B, C, H, W)
        batch for all K models."""
        if shared:
            x = x.expand(self.size, *x.shape)
        k, b, c = x.shape[:3]
        x = x.transpose(0, 1).reshape(b, k * c, *x.shape[3:])
        x = x.contiguous(memory_format=self.memory_format)
        return functional_call(self.base, (self.params, self.buffers), (x,)).transpose(1, 2)

    def train(self, mode=True):
        self.base.train(mode)

    def state_dict(self, k):
        """Model k's state_dict with the usual keys, on the CPU."""
        merged = {**self.params, **self.buffers}
        return OrderedDict((key, merged[key][k].detach().to("cpu", copy=True)) for key in self.keys)

    def select(self, keep):
        """A new Stack holding only models ``keep`` (a list of indices)."""
        new = copy.copy(self)
        index = torch.tensor(keep, device=next(iter(self.params.values())).device)
        new.params = {k: v.detach().index_select(0, index).requires_grad_()
                      for k, v in self.params.items()}
        new.buffers = {k: v.index_select(0, index) for k, v in self.buffers.items()}
        new.size = len(keep)
        new.base = grouped(self.template, new.size)
        new.base.train(self.base.training)
        return new
