"""MASC on any model: a user's network, checkpoint and data, read out layer by layer.

    python -m MASC.decode --model torchvision.models.resnet18 --model-args num_classes=10 \\
        --weights my_resnet.pt --train MNIST --channels 3 --layers layer1 layer2 layer3 layer4 \\
        --control random-init --out decoded

The model is a paper model (CNN, MLP, AlexNet, ResNet18), a torchvision builder
(``torchvision.models.resnet18``) or ``package.module:callable`` / ``path/to/file.py:callable``
from the user's own code, with keyword arguments (``--model-args num_classes=10``) and a
state_dict file (``--weights``; none: the builder's initialisation under ``--init-seed``). The
training and evaluation sets are each a dataset name (MNIST, FashionMNIST, CIFAR10, CIFAR100,
TinyImageNet; the evaluation set defaults to its test split), an image folder (torchvision's
``ImageFolder``: one sub-folder per class) or an ``.npz`` with ``images`` (uint8, N x C x H x W or
N x H x W) and ``labels``. ``--train-labels`` gives the labels the network was trained on when they
are not the training set's own (a run's labels.npz, or an .npy / .npz ``labels`` array): MASC is
then fitted on them (exp1) and on the set's own labels (exp2). Images are scaled to [0, 1], then
normalised with ``--mean`` / ``--std`` (default: the dataset's, else none).

Writes, like pytorch_MASC_all.py, results/masc/{name}_{model}/{p}/Run_{run}_exp{n}.csv (per layer:
k per class, accuracies, the network's own test accuracy; --control random-init adds the rows of
the same architecture untrained), the _per_class.csv, and the per-layer figure
Run_{run}_layers.png / .pdf beside them. Every row records, as the paper scripts' do, the read-out
settings and provenance (seed: the initial weights' seed where no --weights were given; label_seed,
subset, holdout of the labels; checkpoint_epoch 0 for initial weights, empty for a state_dict
trained elsewhere), changed_labels and the environment. ``read_out`` is the same as a library call.
"""
# Defaults are the settings groups' (--help lists them): the read-out (MASC/readout.py Settings:
# LAYERS = None, the paper's short names or the model's top-level modules; BATCH = 1000;
# ROWS_ON_DISK = False; SUBSET and TEST_SUBSET = None, every image), MASC's THRESHOLD = 0.99, the
# control (CONTROL = "none") and DEVICE, DATA, OUT. This command's own defaults:
INIT_SEED = 0          # the seed of the builder's initialisation (the control, or no --weights)
PER_SAMPLE_BN = False  # BatchNorm with running statistics (--per-sample-bn: the paper's quirk)

import ast  # noqa: E402
import difflib  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from . import data, experiments, masc, models, plots, results  # noqa: E402
from .corruption import RunLabels  # noqa: E402
from .errors import MASCError  # noqa: E402
from .readout import Settings, per_sample_batchnorm  # noqa: E402
from .results import RunKey  # noqa: E402
from .runs import TrainedRun  # noqa: E402


def model_args(pairs):
    """``["num_classes=10", "weights=None"]`` -> keyword arguments (values as Python literals,
    else strings)."""
    found = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise MASCError(f"--model-args takes KEY=VALUE pairs (num_classes=10), not {pair!r}")
        try:
            found[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            found[key] = value
    return found


def builder(spec):
    """The callable that ``spec`` names: ``torchvision.models.resnet18``,
    ``package.module:callable`` or ``path/to/file.py:callable`` (a callable is returned as is)."""
    if callable(spec):
        return spec
    where, sep, name = spec.rpartition(":") if ":" in spec else spec.rpartition(".")
    if not where:
        raise MASCError(f"model {spec!r} is neither a paper model ({', '.join(models.MODELS)}) nor "
                        f"module.callable, module:callable or file.py:callable")
    try:
        if where.endswith(".py"):
            found = importlib.util.spec_from_file_location(Path(where).stem, where)
            module = importlib.util.module_from_spec(found)
            found.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except (ImportError, OSError) as e:
        raise MASCError(f"cannot import {where} for model {spec!r} ({e}); check the name, or "
                        f"run from the folder of your code") from None
    make = getattr(module, name, None)
    if not callable(make):
        near = difflib.get_close_matches(name, [n for n in dir(module) if not n.startswith("_")],
                                         n=3)
        raise MASCError(f"{where} has no callable {name!r}"
                        + (f"; nearest: {', '.join(near)}" if near else ""))
    return make


def model_name(spec):
    """The model's name in the results: a paper model's, else its builder's (``resnet18``)."""
    if isinstance(spec, str):
        return spec if spec in models.MODELS else spec.replace(":", ".").split(".")[-1]
    return getattr(spec, "__name__", type(spec).__name__)


def build_model(spec, kwargs=None, dataset=None, seed=None):
    """A freshly initialised model: a paper model for ``dataset``, or ``spec``'s builder called
    with ``kwargs``; ``seed``: ``torch.manual_seed(seed)`` first (the initial weights)."""
    kwargs = kwargs or {}
    if spec in models.MODELS:
        if kwargs:
            raise MASCError(f"the paper's {spec} takes no --model-args (its dataset sets it up)")
        if dataset is None:
            raise MASCError(f"the paper's {spec} needs a dataset (--dataset, or --train NAME)")
        return models.build(spec, dataset, seed=seed)
    make = builder(spec)
    if seed is not None:
        torch.manual_seed(seed)
    call = f"{model_name(spec)}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    try:
        net = make(**kwargs)
    except Exception as e:  # the user's code: any error, reported in one line
        raise MASCError(f"building {call} failed: {type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0][:200]}") from None
    if not isinstance(net, nn.Module):
        raise MASCError(f"{call} returned a {type(net).__name__}, not a torch nn.Module")
    return net


def _some(keys, n=3):
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load_weights(net, path, what):
    """Load a state_dict file (or a checkpoint dict holding one under ``state_dict`` or
    ``model``) into ``net``; a file that does not fit is one error naming the keys briefly."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MASCError(f"no weights file {path}") from None
    except Exception as e:
        raise MASCError(f"cannot read the weights {path} ({type(e).__name__}): not a state_dict "
                        f"saved with torch.save") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MASCError(f"{path} holds no state_dict (a dict of tensors); save one with "
                        f"torch.save(model.state_dict(), path)")
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} for {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    problems = ([f"missing {len(missing)} key(s) ({_some(missing)})"] if missing else []) + \
        ([f"{len(unexpected)} unexpected ({_some(unexpected)})"] if unexpected else []) + \
        ([f"other shapes: {_some(shapes, 2)}"] if shapes else [])
    if problems:
        raise MASCError(f"the weights {path} do not fit {what}: {'; '.join(problems)}; build the "
                        f"model they were saved from (--model, --model-args)")
    net.load_state_dict(state)
    return net


@dataclass
class Source:
    """A labelled image set: uint8 images and int64 labels, its name, its classes (a dataset's
    name or an image folder's class names; None for arrays), its number of classes and its
    normalisation (a dataset's; else none)."""

    split: data.Split
    name: str
    classes: object
    num_classes: int
    mean: tuple = ()
    std: tuple = ()


def load_source(source, train=True, root=None):
    """A :class:`Source` from a dataset name (its training or test split), an image folder, an
    ``.npz`` of ``images`` and ``labels``, or a :class:`~MASC.data.Split`."""
    if isinstance(source, data.Split):
        return _checked(source, "the given split", None)
    if str(source) in data.DATASETS:
        spec = data.info(str(source))
        return Source(data.load(spec.name, root, train), spec.name, spec.name, spec.num_classes,
                      spec.mean, spec.std)
    path = Path(source)
    if path.is_dir():
        return _image_folder(path)
    if path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in f.files}
        except Exception as e:
            raise MASCError(f"{path} is unreadable ({type(e).__name__}); give an .npz saved with "
                            f"numpy.savez(path, images=..., labels=...)") from None
        missing = [k for k in ("images", "labels") if k not in arrays]
        if missing:
            raise MASCError(f"{path} lacks {' and '.join(missing)} (it holds "
                            f"{', '.join(arrays) or 'nothing'}); save images (uint8) and labels")
        images = arrays["images"]
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise MASCError(f"{path}: images must be uint8 of shape N x C x H x W or N x H x W, "
                            f"not {images.dtype} {images.shape}")
        images = torch.from_numpy(images if images.ndim == 4 else images[:, None])
        return _checked(data.Split(images, _labels(arrays["labels"], path)), path.stem, None)
    raise MASCError(f"{source} is neither a dataset ({', '.join(data.DATASETS)}), an image folder "
                    f"nor an .npz file")


def _labels(values, where):
    values = np.asarray(values)
    if values.ndim != 1 or not (np.issubdtype(values.dtype, np.integer) or values.dtype == bool):
        raise MASCError(f"{where}: labels must be one whole number per image, not "
                        f"{values.dtype} of shape {values.shape}")
    if len(values) and values.min() < 0:
        raise MASCError(f"{where}: label {values.min()} is negative; classes are 0, 1, ...")
    return torch.from_numpy(values.astype(np.int64))


def _checked(split, name, classes):
    if len(split.images) != len(split.labels):
        raise MASCError(f"{name}: {len(split.images)} images but {len(split.labels)} labels")
    if not len(split):
        raise MASCError(f"{name} holds no images")
    return Source(split, name, classes, int(split.labels.max()) + 1)


def _image_folder(path):
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import PILToTensor

    try:
        folder = ImageFolder(str(path), transform=PILToTensor())
    except (FileNotFoundError, RuntimeError) as e:
        raise MASCError(f"{path} is not an image folder ({str(e).splitlines()[0]}); give one "
                        f"sub-folder of images per class") from None
    images = [folder[i][0] for i in range(len(folder))]
    shapes = sorted({tuple(x.shape) for x in images})
    if len(shapes) > 1:
        raise MASCError(f"the images of {path} have different sizes ({_some(shapes, 2)}); resize "
                        f"them to one size first")
    split = data.Split(torch.stack(images), torch.tensor(folder.targets, dtype=torch.long))
    return Source(split, path.name, tuple(folder.classes), len(folder.classes))


def _given_labels(path, true):
    """The labels the network was trained on, from ``path`` (a run's labels.npz, or an .npy /
    .npz ``labels`` array), as :class:`RunLabels` against the training set's own ``true``."""
    path = Path(path)
    if path.suffix == ".npz":
        try:
            with np.load(path) as f:
                keys = set(f.files)
        except Exception as e:
            raise MASCError(f"{path} is unreadable ({type(e).__name__})") from None
        if {"corrupted", "true"} <= keys:
            saved = RunLabels.load(path)
            n = len(saved.true)
            if n > len(true) or not np.array_equal(saved.true, true[:n]):
                raise MASCError(f"{path}: its true labels are not those of the training set; "
                                f"give the labels of this data")
            _labels(saved.corrupted, path)
            return saved
        if "labels" not in keys:
            raise MASCError(f"{path} holds neither a run's labels (corrupted, true) nor labels")
        with np.load(path) as f:
            given = f["labels"]
    else:
        try:
            given = np.load(path)
        except Exception as e:
            raise MASCError(f"cannot read the labels {path} ({type(e).__name__}); give an .npy "
                            f"or .npz") from None
    given = _labels(given, path).numpy()
    if len(given) != len(true):
        raise MASCError(f"{path} has {len(given)} labels for {len(true)} training images")
    return RunLabels(given, true)


def _check_classes(train, test, fitted, outputs, spec):
    """An evaluation set of the training set's classes, every class in each fitted labelling
    (``{name: labels}``, within 0..C-1), and a network with an output per class."""
    C = spec.num_classes
    if train.classes is not None and test.classes is not None and train.classes != test.classes:
        raise MASCError(f"the evaluation set {test.name} has other classes than the training set "
                        f"{train.name}; evaluate on the same classes")
    for name, values in fitted.items():
        values = np.asarray(values)
        bad = np.flatnonzero(values >= C)
        if len(bad):
            raise MASCError(f"{name} training label {values[bad[0]]} (row {bad[0]}) is outside "
                            f"0..{C - 1}, the {C} classes of {spec.name}; check the labels")
        lacking = sorted(set(range(C)) - set(values.tolist()))
        if lacking:
            raise MASCError(f"the {name} training labels have no image of class {lacking[0]} (of "
                            f"0..{C - 1}); MASC needs every class: give more training images")
    bad = np.flatnonzero(test.split.labels.numpy() >= C)
    if len(bad):
        raise MASCError(f"the evaluation set {test.name} has class {int(test.split.labels[bad[0]])}"
                        f" (row {bad[0]}), outside the training classes 0..{C - 1}; evaluate on "
                        f"the same classes")
    if outputs < C:
        raise MASCError(f"the network gives {outputs} outputs for {C} classes; build it with one "
                        f"per class (--model-args num_classes={C})")


def _probe(net, images, spec, what):
    """The network's output width on two images, or a clear error that it cannot run on them."""
    net.eval()
    try:
        with torch.no_grad():
            out = net(data.normalise(images[:2], spec))
    except Exception as e:  # the user's model: any error, reported in one line
        hint = "; --channels 3 repeats grey images" if spec.shape[0] == 1 else ""
        raise MASCError(f"{what} cannot run on {spec.name}'s images of shape {spec.shape}: "
                        f"{str(e).strip().splitlines()[0][:200]}{hint}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise MASCError(f"{what} returns {type(out).__name__}"
                        f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}, not "
                        f"logits (batch, classes)")
    return out.shape[1]


def read_out(model, train, test=None, *, model_args=None, weights=None, train_labels=None,
             corrupt=None, mean=None, std=None, channels=None, name=None, run=1,
             control=experiments.CONTROL, init_seed=INIT_SEED, layers=None,
             threshold=masc.THRESHOLD,
             readout=Settings(per_sample_bn=PER_SAMPLE_BN), subset=None, test_subset=None,
             root=None, out=".", figure=True, log=print):
    """Read ``model`` (a paper model's name, a builder spec or a callable, see :func:`builder`)
    out with MASC on the user's data, as the command does (its flags are these arguments);
    returns the tidy table (rows: exp x network x layer) and writes the files the module doc
    lists."""
    if test is None and str(train) not in data.DATASETS:
        raise MASCError("give the evaluation set (--test): only a dataset name has a test split "
                        "of its own")
    train_set = load_source(train, True, root)
    test_set = load_source(train if test is None else test, False, root)
    if (mean is None) != (std is None):
        raise MASCError("give --mean and --std together (one value, or one per channel)")
    mean, std = (train_set.mean, train_set.std) if mean is None else (tuple(mean), tuple(std))
    for source in (train_set, test_set):
        channels_now = source.split.images.shape[1]
        if channels and channels_now != channels:
            if channels_now != 1:
                raise MASCError(f"--channels {channels} repeats one-channel images; "
                                f"{source.name}'s have {channels_now}")
            source.split = data.Split(source.split.images.expand(-1, channels, -1, -1)
                                      .contiguous(), source.split.labels)
    shape = tuple(train_set.split.images.shape[1:])
    if tuple(test_set.split.images.shape[1:]) != shape:
        raise MASCError(f"the evaluation images are {tuple(test_set.split.images.shape[1:])}, the "
                        f"training images {shape}; give both sets in one size")
    true = train_set.split.labels.numpy()
    labels = RunLabels(true, true) if train_labels is None else _given_labels(train_labels, true)
    second = train_labels is not None
    p = corrupt if corrupt is not None else labels.corrupt if labels.corrupt is not None else \
        None if second else 0.0
    if p is None:
        raise MASCError("give --corrupt P, the corruption degree of --train-labels (it names the "
                        "results folder)")
    n = min(subset or len(labels.true), len(labels.true))
    labels = RunLabels(labels.corrupted[:n], labels.true[:n], labels.holdout[labels.holdout < n],
                       float(p), labels.label_seed)
    spec = data.DatasetInfo(name or train_set.name, train_set.num_classes, shape, mean, std,
                            float("nan"), n, len(test_set.split.first(test_subset)))
    dataset = train_set.name if train_set.name in data.DATASETS else None
    what = model_name(model)
    make = model if model in models.MODELS else builder(model)
    net = build_model(make, model_args, dataset, seed=init_seed)
    if weights is not None:
        load_weights(net, weights, what)
    else:
        log(f"no weights given: {what} is read out with its initial weights (seed {init_seed})")
    _, corrupted, true = labels.training(train_set.split.first(n))
    fitted = {"given": corrupted, **({"true": true} if second else {})}
    probed = per_sample_batchnorm(net) if readout.per_sample_bn else net
    _check_classes(train_set, test_set, fitted, _probe(probed, train_set.split.images, spec, what),
                   spec)
    untrained = build_model(make, model_args, dataset, seed=init_seed) \
        if control == "random-init" else None
    provenance = {"seed": init_seed if weights is None else float("nan"),
                  "label_seed": float("nan") if labels.label_seed is None else labels.label_seed,
                  "subset": n, "holdout": len(labels.holdout) / n,
                  "checkpoint_epoch": 0 if weights is None else float("nan")}
    key = RunKey(out, spec.name, what, p, run)
    trained = TrainedRun(key, net, labels, train_set.split.first(n),
                         test_set.split.first(test_subset), provenance, spec)
    layers = None if layers is None or list(layers) == ["all"] else tuple(layers)
    table = experiments.masc_experiments(
        trained, [1, 2] if second else [1], threshold=threshold, control=untrained,
        init_seed=init_seed, readout=replace(readout, layers=layers), reference_files=False,
        log=log)
    if figure:
        csvs = [key.masc_csv(e) for e in (1, 2)]
        rows = plots.masc_rows(pd.concat([results.read_csv(c) for c in csvs if c.exists()]))
        stem = key.masc_figure
        plots.save(plots.accuracy_figure(rows, spec.name, what), stem)
        log(f"figure: {stem}.png")
    return table


def main(argv=None):
    import argparse

    from . import cli

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="CNN, MLP, AlexNet, ResNet18, a torchvision "
                   "builder (torchvision.models.resnet18) or module:callable / file.py:callable")
    p.add_argument("--model-args", nargs="*", default=[], metavar="KEY=VALUE",
                   help="keyword arguments of the builder (num_classes=10)")
    p.add_argument("--weights", help="state_dict file (none: the builder's initialisation under "
                   "--init-seed)")
    p.add_argument("--train", required=True, help="training set: a dataset name, an image folder "
                   "or an .npz of images and labels")
    p.add_argument("--test", help="evaluation set (none: the dataset's test split)")
    p.add_argument("--train-labels", help="the labels the network was trained on, when not the "
                   "training set's own: a run's labels.npz, or an .npy / .npz of labels")
    p.add_argument("--corrupt", type=cli.corruption, help="their corruption degree p (none: "
                   "labels.npz's; 0 without --train-labels)")
    p.add_argument("--mean", nargs="+", type=float, help="normalisation mean(s) after scaling to "
                   "[0, 1] (none: the dataset's, else none)")
    p.add_argument("--std", nargs="+", type=float, help="normalisation standard deviation(s)")
    p.add_argument("--channels", type=cli.positive_int, help="repeat one-channel images to this "
                   "many channels (3 for torchvision's models)")
    p.add_argument("--name", help="the data's name in the results (none: the training set's)")
    p.add_argument("--run", type=cli.positive_int, default=1, help="run index in the results")
    cli.add_settings(p, {**cli.READOUT, **cli.MASC, **cli.CONTROL, **cli.COMMON,
                         **cli.constants(globals())})

    @cli.main
    def run(args):
        table = read_out(
            args.model, args.train, args.test, model_args=model_args(args.model_args),
            weights=args.weights, train_labels=args.train_labels, corrupt=args.corrupt,
            mean=args.mean, std=args.std, channels=args.channels, name=args.name, run=args.run,
            control=args.control, init_seed=args.init_seed, layers=args.layers,
            threshold=args.threshold, readout=cli.readout_settings(args), subset=args.subset,
            test_subset=args.test_subset, root=args.data, out=args.out)
        print(table[["exp", "network", "subspaces_from", "layer", "dim", "k_mean",
                     "train_acc_vs_corrupted", "test_acc", "model_test_acc"]]
              .to_string(index=False))
        first = table.iloc[0]
        key = RunKey(args.out, first.dataset, first.model, first.corrupt, args.run)
        print(f"results: {key.masc_csv(1).parent}")

    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
