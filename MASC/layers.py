"""The one way to read a model's layers by name, for the paper's models and any ``nn.Module``.

A layer name is, in this order:

1. one of the paper's short names in ``model.taps`` (``flattern``, ``fc1``, ``l0``, ...), an alias
   of the module whose output it is, read by a forward hook as the paper read it;
2. for a model that ``torch.fx`` traces: a torchvision graph node name (``get_graph_node_names``:
   ``x`` the input, ``flatten``, a functional ``relu_1``, ``layer1.0.add``) or a module name (its
   last node), read with torchvision's ``create_feature_extractor`` from the same input;
3. for a model that does not trace: a module name of ``named_modules()``, read by a forward hook.

Every activation is flattened to (batch, D). Without names, the layers are the paper's short
names, or for other models their top-level modules. List a model's layers and their sizes with::

    python -m MASC.layers CNN --dataset MNIST
    python -m MASC.layers torchvision.models.resnet18 --model-args num_classes=10 \\
        --input-shape 3 28 28
"""
import argparse
import contextlib
import difflib
import math
import warnings
import weakref

import torch

from .errors import MASCError


def layer_names(model):
    """The layers read when none are named: the paper's short names (input to output), or the
    model's top-level modules."""
    taps = getattr(model, "taps", None)
    return list(taps) if taps else [name for name, _ in model.named_children()]


_NODES = weakref.WeakKeyDictionary()  # model -> its graph node names (traced once per model)


def graph_nodes(model):
    """torchvision's graph node names of ``model`` in eval mode, or None if it does not trace
    (traced once per model object)."""
    from torchvision.models.feature_extraction import get_graph_node_names

    if model not in _NODES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _NODES[model] = get_graph_node_names(model, suppress_diff_warning=True)[1]
        except Exception:  # torch.fx fails in many ways on untraceable code
            _NODES[model] = None
    return _NODES[model]


def _module_names(model, nodes):
    """Module names (the model itself excluded); with graph ``nodes``, only modules that own one
    (a module that forward never runs has no output)."""
    names = [name for name, _ in model.named_modules() if name]
    if nodes is None:
        return names
    owners = {node.rsplit(".", i)[0] for node in nodes for i in range(1, node.count(".") + 1)}
    return [name for name in names if name in owners or name in set(nodes)]


def _node(name, nodes):
    """The graph node that gives layer ``name``: itself, or a module's last node (torchvision's
    rule for a module name)."""
    if name in nodes:
        return name
    return [node for node in nodes if node.startswith(name + ".")][-1]


def resolve(model, layers=None):
    """``(targets, graph)``: for each layer name (None: :func:`layer_names`), the module or graph
    node that gives it, and whether they are read from the traced graph (else by forward hooks).
    An unknown name is an error naming the nearest known ones."""
    layers = layer_names(model) if layers is None else list(layers)
    aliases = getattr(model, "taps", None) or {}
    if all(name in aliases for name in layers):
        return {name: aliases[name] for name in layers}, False
    nodes = graph_nodes(model)
    known = [*aliases, *(nodes or ()), *_module_names(model, nodes)]
    unknown = [name for name in layers if name not in set(known)]
    if unknown:
        near = difflib.get_close_matches(unknown[0], list(dict.fromkeys(known)), n=3, cutoff=0.5)
        raise MASCError(f"{type(model).__name__} has no layer {', '.join(map(repr, unknown))}"
                        + (f"; nearest: {', '.join(near)}" if near else "")
                        + "; `python -m MASC.layers MODEL` lists its layers and their sizes")
    targets = {name: aliases.get(name, name) for name in layers}
    if nodes is None:
        return targets, False
    return {name: _node(target, nodes) for name, target in targets.items()}, True


def check_layers(model, layers):
    """``layers`` (None means the default ones) as a list, or a clear error."""
    return list(resolve(model, layers)[0])


def _flat(name, output):
    if not isinstance(output, torch.Tensor) or output.dim() == 0:
        raise MASCError(f"layer {name!r} gives a {type(output).__name__}, not a batch of "
                        f"activations; read another layer (`python -m MASC.layers MODEL` lists "
                        f"them)")
    return output.reshape(len(output), -1)


def _extractor(model, targets):
    """torchvision's feature extractor of the graph nodes ``targets`` (it shares ``model``'s
    parameters)."""
    from torchvision.models.feature_extraction import create_feature_extractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_feature_extractor(model, {t: t for t in targets},
                                        suppress_diff_warning=True)


@contextlib.contextmanager
def tapped(model, layers=None):
    """Within the block, every forward of ``model`` fills the yielded dict with
    ``{layer: activation flattened to (batch, D)}`` for the requested layers (see the module
    doc for how each name is read)."""
    targets, graph = resolve(model, layers)
    found = {}
    if graph:  # the extractor runs on the forward's own input, after it
        extractor = _extractor(model, set(targets.values()))

        def read(module, args, kwargs, output):
            extractor.train(module.training)
            values = extractor(*args, **kwargs)
            found.update({name: _flat(name, values[t]) for name, t in targets.items()})

        handles = [model.register_forward_hook(read, with_kwargs=True)]
    else:
        modules = dict(model.named_modules())

        def keep(name):
            def hook(module, args, output):
                if name in found:
                    raise MASCError(f"module {targets[name]} runs more than once in a forward "
                                    f"pass, so layer {name!r} is ambiguous; read a module that "
                                    f"runs once")
                found[name] = _flat(name, output)
            return hook

        def check(module, args, output):
            missing = [name for name in targets if name not in found]
            if missing:
                raise MASCError(f"layer(s) {', '.join(missing)} of {type(model).__name__} gave no "
                                f"output: forward does not run those modules")

        handles = [model.register_forward_pre_hook(lambda *_: found.clear())]
        handles += [modules[t].register_forward_hook(keep(name)) for name, t in targets.items()]
        handles.append(model.register_forward_hook(check))
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


def readable(model, x):
    """Every layer name ``model`` accepts, as ``[(name, how it is read, output shape)]`` for the
    example input ``x`` (eval mode, no grad); a shape is None where the output is no tensor and
    a string where a module runs more than once (a hook cannot tell its outputs apart)."""
    aliases = getattr(model, "taps", None) or {}
    nodes = graph_nodes(model)
    modules = _module_names(model, nodes)
    model.eval()
    with torch.no_grad():
        if nodes is not None:
            names = nodes + [m for m in modules if m not in set(nodes)]
            how = {n: "graph node" if n in set(nodes) else "module (its last node)" for n in names}
            values = _extractor(model, nodes)(x)
            shapes = {n: _shape(values[_node(n, nodes)]) for n in names}
        else:
            names, how, shapes = modules, dict.fromkeys(modules, "module (hook)"), {}
            calls = dict.fromkeys(modules, 0)
            found = dict(model.named_modules())

            def survey(name):
                def hook(module, args, output):
                    calls[name] += 1
                    once = calls[name] == 1
                    shapes[name] = _shape(output) if once else f"runs {calls[name]} times"
                return hook

            handles = [found[name].register_forward_hook(survey(name)) for name in modules]
            try:
                model(x)
            finally:
                for handle in handles:
                    handle.remove()
    rows = [(alias, f"the paper's name of {target}", shapes.get(target))
            for alias, target in aliases.items()]
    return rows + [(name, how[name], shapes.get(name)) for name in names if name in shapes]


def _shape(value):
    return tuple(value.shape[1:]) if isinstance(value, torch.Tensor) and value.dim() else None


def main(argv=None):
    from . import cli, data
    from .decode import build_model, model_args

    p = argparse.ArgumentParser(description="List the layers MASC can read out of a model, with "
                                            "their output shape and size D for one input.")
    p.add_argument("model", help="a paper model (CNN, MLP, AlexNet, ResNet18; with --dataset), a "
                                 "torchvision builder (torchvision.models.resnet18) or "
                                 "module.path:callable / file.py:callable")
    p.add_argument("--model-args", nargs="*", default=[], metavar="KEY=VALUE",
                   help="keyword arguments of the builder (num_classes=10)")
    p.add_argument("--dataset", choices=list(data.DATASETS),
                   help="the example input has this dataset's image shape")
    p.add_argument("--input-shape", nargs="+", type=cli.positive_int, metavar="N",
                   help="the example input's shape without the batch (C H W)")

    @cli.main
    def run(args):
        if (args.dataset is None) == (args.input_shape is None):
            raise MASCError("give the example input as --dataset NAME or --input-shape C H W "
                            "(one of them)")
        shape = data.info(args.dataset).shape if args.dataset else tuple(args.input_shape)
        net = build_model(args.model, model_args(args.model_args), dataset=args.dataset, seed=0)
        try:
            rows = readable(net, torch.randn(2, *shape))
        except MASCError:
            raise
        except Exception as e:
            raise MASCError(f"{args.model} does not run on inputs of shape {shape}: "
                            f"{str(e).strip().splitlines()[0][:200]}") from None
        print(f"{args.model} on a (2, {', '.join(map(str, shape))}) input; traced: "
              f"{'yes' if graph_nodes(net) is not None else 'no (module names, hooks)'}")
        width = max(len(name) for name, _, _ in rows)
        print(f"{'layer':{width}}  {'read as':28} {'shape':20} {'D':>10}")
        for name, how, shape in rows:
            size = f"{math.prod(shape):,}" if isinstance(shape, tuple) else ""
            text = str(shape) if shape is not None else "not a tensor"
            print(f"{name:{width}}  {how:28} {text:20} {size:>10}")

    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
