"""The one way to read a model's layers: forward hooks on the modules named in ``model.taps``."""
import contextlib

from .errors import MASCError


def layer_names(model):
    """The reference short names of a model's probed layers, input to output."""
    return list(model.taps)


def check_layers(model, layers):
    """``layers`` (None means all) as a list, or a clear error naming the valid ones."""
    if layers is None:
        return layer_names(model)
    unknown = [name for name in layers if name not in model.taps]
    if unknown:
        raise MASCError(f"{type(model).__name__} has no layer {', '.join(map(repr, unknown))}; "
                        f"its layers are {', '.join(model.taps)}")
    return list(layers)


@contextlib.contextmanager
def tapped(model, layers=None):
    """Within the block, every forward of ``model`` fills the yielded dict with
    ``{layer: activation flattened to (batch, D)}`` for the requested layers."""
    layers = check_layers(model, layers)
    modules = dict(model.named_modules())
    found = {}
    handles = [modules[model.taps[name]].register_forward_hook(
        lambda module, args, output, name=name: found.__setitem__(name, output.flatten(1)))
        for name in layers]
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


def activations(model, x, layers=None):
    """``{layer: (batch, D) activation}`` of one forward pass (the caller picks mode and grad)."""
    with tapped(model, layers) as found:
        model(x)
    return dict(found)
