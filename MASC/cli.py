"""The flags the scripts share, and how scripts report errors (one line, exit status 2)."""
import argparse
import functools
import sys

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


def corruption(value):
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"corruption degree must be in [0, 1], got {value}")
    return p


def expand(values, every, kind):
    """A list of flag values where the single value "all" means every one of ``every``."""
    if values == ["all"]:
        return list(every)
    try:
        return [kind(v) for v in values]
    except (ValueError, argparse.ArgumentTypeError) as e:
        raise MASCError(f"bad value in {values}: {e}; give values or 'all'") from None


def parser(description, defaults, models=MODELS, many=False, readout=False):
    """An ArgumentParser with the reference flags (-corr -model -dataset -run) and ours.

    ``defaults`` is the calling script's dict of constants (DEVICE, DATA, OUT, SUBSET, ...);
    ``many`` lets -corr and -run take several values or "all" (for sweeps); ``readout`` adds the
    layer read-out flags (--layers, --per-sample-bn, --batch)."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if many:
        p.add_argument("-corr", nargs="+", required=True,
                       help="corruption degree(s) in [0, 1], or 'all' for 0.0 0.2 ... 1.0")
        p.add_argument("-run", nargs="+", required=True, help="run index(es), or 'all' for 1 2 3")
    else:
        p.add_argument("-corr", type=corruption, required=True, help="corruption degree in [0, 1]")
        p.add_argument("-run", type=int, required=True, help="run index (1, 2, 3, ...)")
    p.add_argument("-model", required=True, choices=models)
    p.add_argument("-dataset", required=True, choices=list(DATASETS))
    p.add_argument("--device", default=defaults.get("DEVICE", "auto"),
                   help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--data", default=defaults.get("DATA"),
                   help=f"data folder (default: ${DATA_ENV} or ./data)")
    p.add_argument("--out", default=defaults.get("OUT", "."),
                   help="results root (models/, angle_results/, results/ go under it)")
    p.add_argument("--subset", type=int, default=defaults.get("SUBSET"),
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
        p.add_argument("--batch", type=int, default=defaults.get("BATCH", 1000),
                       help="images per forward pass of the read-out")
    return p


def add_shuffle(p, default):
    """--shuffle (a new seeded data order every epoch) and --no-shuffle (the reference's fixed
    order) for the scripts that train."""
    p.add_argument("--shuffle", action="store_true", default=default,
                   help="a new seeded data order every epoch (the reference: a fixed order)")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="the reference's fixed data order")


def main(function):
    """Run a script's main: a MASCError becomes one line on stderr and exit status 2."""
    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except MASCError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("\ninterrupted: saved progress is kept; run the same command again to resume",
                  file=sys.stderr)
            sys.exit(130)
    return wrapped
