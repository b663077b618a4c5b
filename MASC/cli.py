"""The flags the scripts share, and how scripts report errors (one line, exit status 2).

Every flag value is checked when the command line is parsed (the ``type=`` functions below), so a
bad value ends the script with argparse's usage line and one ``error: argument FLAG: ...`` line,
before any data is loaded or any model is built."""
import argparse
import functools
import sys

import torch

from .data import DATASETS, DATA_ENV
from .errors import MASCError
from .models import MODELS

CORRUPTIONS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
RUNS = (1, 2, 3)


def str2bool(value):
    """The reference's True/False flag values (true/false, yes/no and 1/0 too)."""
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def _number(value, kind, what):
    try:
        return kind(str(value).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None


def positive_int(value):
    """A whole number >= 1 (sizes, counts, epochs, run indexes)."""
    n = _number(value, int, "a positive whole number (1, 2, ...)")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number (1, 2, ...), got {value}")
    return n


def corruption(value):
    """A corruption degree in [0, 1]."""
    p = _number(value, float, "a corruption degree in [0, 1]")
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"corruption degree must be in [0, 1], got {value}")
    return p


def share(value):
    """A share in [0, 1) (--holdout: the part of the training images kept out of training)."""
    p = _number(value, float, "a share in [0, 1)")
    if not 0.0 <= p < 1.0:
        raise argparse.ArgumentTypeError(f"must be a share in [0, 1) (e.g. 0.1), got {value}")
    return p


def threshold(value):
    """MASC's threshold, as MASC.masc.MASC accepts it: a share of each class's energy in (0, 1),
    or a whole number >= 1 of components (1 = one principal component)."""
    n = _number(value, float, "a share in (0, 1) or a whole number of components >= 1")
    if not (0 < n < 1 or (n >= 1 and n.is_integer())):
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1) or a whole number of "
                                         f"components >= 1 (e.g. 0.99 or 5), got {value}")
    return n


def _mps_available():
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def check_device(name):
    """A --device value that this machine has: auto, cpu, cuda, cuda:N or mps (returned as given,
    for MASC.training.pick_device)."""
    text = str(name).strip()
    if text == "auto":
        return text
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N "
                                         f"or mps") from None
    if device.type == "cpu":
        return text
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{name!r} was asked for but no CUDA GPU is visible; "
                                             f"use --device cpu (or auto)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{name!r} was asked for but this machine has {count} "
                                             f"CUDA GPU(s), cuda:0 to cuda:{count - 1}")
        return text
    if device.type == "mps":
        if not _mps_available():
            raise argparse.ArgumentTypeError(f"{name!r} was asked for but MPS (the Apple GPU) is not "
                                             f"available here; use --device cpu (or auto)")
        return text
    raise argparse.ArgumentTypeError(f"device type {device.type!r} is not supported; use auto, cpu, "
                                     f"cuda, cuda:N or mps")


def _or_all(kind):
    """A value of ``kind``, or the word "all" (for -corr / -run lists)."""
    def convert(value):
        return "all" if str(value).strip().lower() == "all" else kind(value)
    convert.__name__ = kind.__name__
    return convert


class _Values(argparse.Action):
    """-corr / -run lists: "all" alone or values, each value once (the first place kept)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if "all" in values and any(v != "all" for v in values):
            raise argparse.ArgumentError(self, "give 'all' alone or a list of values, not both")
        setattr(namespace, self.dest, list(dict.fromkeys(values)))


def expand(values, every, kind):
    """A list of flag values where the single value "all" means every one of ``every``; a value
    given twice counts once (the first place kept)."""
    if any(str(v).strip().lower() == "all" for v in values):
        if all(str(v).strip().lower() == "all" for v in values):
            return list(every)
        raise MASCError(f"'all' cannot be mixed with other values in {values}; give 'all' alone "
                        f"or list the values")
    try:
        converted = [kind(v) for v in values]
    except (ValueError, argparse.ArgumentTypeError) as e:
        raise MASCError(f"bad value in {values}: {e}; give values or 'all'") from None
    return list(dict.fromkeys(converted))


def parser(description, defaults, models=MODELS, many=False, readout=False):
    """An ArgumentParser with the reference flags (-corr -model -dataset -run) and ours.

    ``defaults`` is the calling script's dict of constants (DEVICE, DATA, OUT, SUBSET, ...);
    ``many`` lets -corr and -run take several values or "all" (for sweeps); ``readout`` adds the
    layer read-out flags (--layers, --per-sample-bn, --batch)."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if many:
        p.add_argument("-corr", nargs="+", required=True, type=_or_all(corruption), action=_Values,
                       help="corruption degree(s) in [0, 1], or 'all' for 0.0 0.2 ... 1.0")
        p.add_argument("-run", nargs="+", required=True, type=_or_all(positive_int), action=_Values,
                       help="run index(es) >= 1, or 'all' for 1 2 3")
    else:
        p.add_argument("-corr", type=corruption, required=True, help="corruption degree in [0, 1]")
        p.add_argument("-run", type=positive_int, required=True, help="run index (1, 2, 3, ...)")
    p.add_argument("-model", required=True, choices=models)
    p.add_argument("-dataset", required=True, choices=list(DATASETS))
    p.add_argument("--device", type=check_device, default=defaults.get("DEVICE", "auto"),
                   help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--data", default=defaults.get("DATA"),
                   help=f"data folder (default: ${DATA_ENV} or ./data)")
    p.add_argument("--out", default=defaults.get("OUT", "."),
                   help="results root (models/, angle_results/, results/ go under it)")
    p.add_argument("--subset", type=positive_int, default=defaults.get("SUBSET"),
                   help="use only the first N training samples (quick runs)")
    if readout:
        p.add_argument("--layers", nargs="+", default=defaults.get("LAYERS"),
                       help="layer short names (default: every probed layer)")
        p.add_argument("--per-sample-bn", action="store_true",
                       default=defaults.get("PER_SAMPLE_BN", True),
                       help="ResNet BatchNorm with each image's own statistics, as the paper read "
                            "it out (the default; no effect on models without BatchNorm)")
        p.add_argument("--eval-bn", dest="per_sample_bn", action="store_false",
                       help="ResNet BatchNorm in eval mode (its running statistics) instead")
        p.add_argument("--batch", type=positive_int, default=defaults.get("BATCH", 1000),
                       help="images per forward pass of the read-out")
        p.add_argument("--reference-labels", action="store_true",
                       help="for a checkpoint trained elsewhere (no labels.npz or progress.pt "
                            "beside it) on the whole training set with the reference's labels")
    return p


def add_shuffle(p, default):
    """--shuffle (a new seeded data order every epoch) and --no-shuffle (the reference's fixed
    order) for the scripts that train."""
    p.add_argument("--shuffle", action="store_true", default=default,
                   help="a new seeded data order every epoch (the reference: a fixed order)")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="the reference's fixed data order")


def main(function=None, *, resumes=False):
    """Run a script's main: a MASCError becomes one line on stderr and exit status 2; Ctrl-C one
    line too, saying whether a rerun resumes (``resumes``: the script saves progress)."""
    if function is None:
        return functools.partial(main, resumes=resumes)

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except MASCError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("\ninterrupted: " + ("saved progress is kept; run the same command again to "
                                       "resume" if resumes else "results written before this "
                                       "step are kept; run the same command again to redo it"),
                  file=sys.stderr)
            sys.exit(130)
    return wrapped
