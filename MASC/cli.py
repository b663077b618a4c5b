"""The flags the scripts share, and how scripts report errors (one line, exit status 2).

Every flag value is checked when the command line is parsed (the ``type=`` functions below), so a
bad value ends the script with argparse's usage line and one ``error: argument FLAG: ...`` line,
before any data is loaded or any model is built."""
import argparse
import dataclasses
import functools
import sys
from dataclasses import dataclass

import torch

from .corruption import LABELLINGS
from .data import DATASETS, DATA_ENV
from .devices import mps_available
from . import experiments, masc, readout, results, retrain, runs, training
from .errors import MASCError
from .models import INITS, MODELS
from .probes import PROBES
from .retrain import PROTOCOLS

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


def seed(value):
    """A NumPy seed: a whole number from 0 to 2**32 - 1 (--label-seed, --fold-seed)."""
    n = _number(value, int, "a whole number from 0 to 4294967295")
    if not 0 <= n < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 4294967295 (a NumPy "
                                         f"seed), got {value}")
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


def check_device(name):
    """A --device value that this machine has: auto, cpu, cuda, cuda:N or mps (returned as given,
    for MASC.devices.pick_device)."""
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
        if not mps_available():
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


@dataclass(frozen=True)
class Setting:
    """How a script constant becomes a command-line flag: the flag, its type (None: an on/off
    switch, with ``off`` the flag that turns it off), its help, and ``nargs``/``choices``."""

    flag: str
    type: object
    help: str
    off: str = None
    nargs: str = None
    choices: tuple = None


# Every constant at the top of a script is one of these (declared once for all scripts); the
# constant gives the default, this table the flag, type and help.
SETTINGS = {
    "DEVICE": Setting("--device", check_device,
                      "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ..."),
    "DATA": Setting("--data", str, f"data folder (default: ${DATA_ENV} or ./data)"),
    "OUT": Setting("--out", str, "results root (models/, angle_results/, results/ go under it)"),
    "SUBSET": Setting("--subset", positive_int, "use only the first N training samples"),
    "TEST_SUBSET": Setting("--test-subset", positive_int, "use only the first N test images"),
    "EPOCHS": Setting("--epochs", positive_int, "epoch cap"),
    "SEED": Setting("--seed", int, "run r uses seed SEED + r (initial weights and data order)"),
    "LABEL_SEED": Setting("--label-seed", seed, "corruption seed (42: the reference's labels)"),
    "SHUFFLE": Setting("--shuffle", None, "a new seeded data order every epoch (the reference: a "
                       "fixed order)", off="--no-shuffle"),
    "SAVE_EVERY": Setting("--save-every", positive_int, "epochs between progress saves"),
    "HOLDOUT": Setting("--holdout", share, "share of the training images kept out of training, "
                       "as a validation set for pytorch_retrain_early.py --protocol clean"),
    "BF16": Setting("--bf16", None, "bf16 autocast", off="--no-bf16"),
    "TF32": Setting("--tf32", None, "TF32 matmuls on CUDA (faster, less precise; the reference: "
                    "off)", off="--no-tf32"),
    "TRAIN_BATCH": Setting("--train-batch", positive_int, "training images per step (default: "
                           "the reference's for the model and dataset)"),
    "INIT": Setting("--init", str, "initial weights: pytorch (PyTorch's defaults, the reference's) "
                    "or glorot (Keras's: Glorot-uniform weights, zero biases)", choices=INITS),
    "SCALING": Setting("--scaling", str, "input pixels: reference (the reference transform) or "
                       "unit ([0, 1] only)", choices=("reference", "unit")),
    "STOP_ON": Setting("--stop-on", str, "train accuracy the stop rule reads: post-epoch (a pass "
                       "over the training set after the epoch) or running (the epoch's own steps); "
                       "default: the reference's (MLP post-epoch, others running)",
                       choices=("post-epoch", "running")),
    "LAYERS": Setting("--layers", str, "layer names: the paper's short names, module or "
                      "graph node names (python -m MASC.layers MODEL lists them; default: the "
                      "paper's layers, or a model's top-level modules)", nargs="+"),
    "CONTROL": Setting("--control", str, "random-init: also read out the same architecture "
                       "with its initial (untrained) weights, as extra rows (network = "
                       "random-init) of the exp1/exp2 CSVs", choices=experiments.CONTROLS),
    "INIT_SEED": Setting("--init-seed", int, "seed of the initial weights for --control "
                         "random-init (the paper's runs: default the run's training seed)"),
    "PER_SAMPLE_BN": Setting("--per-sample-bn", None, "ResNet BatchNorm with each image's own "
                             "statistics, as the paper read it out (no effect on models without "
                             "BatchNorm); --eval-bn: its running statistics", off="--eval-bn"),
    "BATCH": Setting("--batch", positive_int, "images per forward pass of the read-out"),
    "ROWS_ON_DISK": Setting("--rows-on-disk", None, "MASC keeps each layer's activations in "
                            "temporary files ($TMPDIR) instead of memory: same results, for "
                            "layers too big for RAM (ResNet-18 on CIFAR)", off="--rows-in-memory"),
    "THRESHOLD": Setting("--threshold", threshold, "MASC: share of each class's energy kept, or "
                         "a whole number of components"),
    "THRESHOLDS": Setting("--thresholds", threshold, "MASC thresholds: shares in (0, 1) and/or "
                          "whole numbers of components (1 = '1 PC')", nargs="+"),
    "PROTOCOL": Setting("--protocol", str, "reference: test20 selects, test80 reports; clean: a "
                        "noisy training hold-out selects, the full test set reports",
                        choices=PROTOCOLS),
    "SUBSPACES": Setting("--subspaces", str, "labels the MASC subspaces are built from",
                         choices=(*LABELLINGS, "both")),
    "LABELS": Setting("--labels", str, "which training labels the probes are fitted on",
                      nargs="+", choices=LABELLINGS),
    "PROBES": Setting("--probes", str, "probes to fit", nargs="+",
                      choices=tuple(PROBES)),
    "MAX_EPOCHS": Setting("--max-epochs", positive_int, "fine-tuning epoch cap"),
    "PATIENCE": Setting("--patience", positive_int, "stop after this many epochs without a "
                        "better validation accuracy"),
    "PLOTS": Setting("--plots", str, "folder for the figures and tables"),
    "EXPS": Setting("--exps", int, "MASC experiments after training (none: give --exps alone)",
                    nargs="*", choices=(1, 2, 3)),
    # finding label issues (python -m MASC.find_label_issues) and the label-noise study
    # (Compare_experiments/label_noise)
    "FOLDS": Setting("--folds", positive_int, "K of the stratified K-fold cross-fitting (MASC's, "
                     "and the study's probe)"),
    "FOLD_SEED": Setting("--fold-seed", seed, "seed of the folds' shuffle"),
    "IN_SAMPLE": Setting("--in-sample", None, "judge each sample by subspaces fitted on every "
                         "sample, itself included (default: by the other folds')",
                         off="--cross-fitted"),
    "REPORT": Setting("--report", str, "folder for the per-sample CSV, the per-class table and "
                      "the image grid"),
    "TOP": Setting("--top", positive_int, "most suspicious flagged images in the grid"),
    "FEATURES": Setting("--features", str, "whose layers give the features: own (the memorised "
                        "network) or clean (the p = 0.0 network of the same run number, trained "
                        "on the same rows)", choices=("own", "clean")),
    "VARIANTS": Setting("--variants", str, "retraining variants (none: detection only)",
                        nargs="*"),
    # sweeps (python -m MASC.sweep)
    "CLUSTER": Setting("--cluster", str, "here: in this process; local: submitit's local "
                       "processes; slurm", choices=("here", "local", "slurm")),
    "PARTITION": Setting("--partition", str, "Slurm partition"),
    "ACCOUNT": Setting("--account", str, "Slurm account"),
    "QOS": Setting("--qos", str, "Slurm quality of service"),
    "GPUS_PER_JOB": Setting("--gpus-per-job", int, "GPUs of each job (0: none)"),
    "CPUS_PER_JOB": Setting("--cpus-per-job", positive_int, "CPU cores of each job"),
    "MEM_GB": Setting("--mem-gb", positive_int, "memory of each job in GB"),
    "TIME": Setting("--time", positive_int, "minutes per job (a job stopped at its limit is "
                    "requeued and resumes)"),
    "ARRAY_PARALLELISM": Setting("--array-parallelism", positive_int, "array tasks running at "
                                 "once"),
    "MAX_REQUEUES": Setting("--max-requeues", int, "time-limit requeues of a job before it "
                            "fails (preemptions do not count)"),
}


def constants(namespace):
    """A script's settings: its upper-case globals (helpers' constants start with _)."""
    return {k: v for k, v in namespace.items() if k.isupper() and not k.startswith("_")}


def defaults(cls):
    """``{CONSTANT: default}`` of a settings dataclass (a field's constant is its upper-case name
    unless its metadata names another)."""
    return {f.metadata.get("constant", f.name.upper()): f.default for f in dataclasses.fields(cls)}


def without(group, *names):
    """A settings group less some of its constants (settings a script has no use for)."""
    return {name: value for name, value in group.items() if name not in names}


def build(cls, args, **given):
    """A settings dataclass from parsed flags (each field from its constant's flag, where the
    parser has it; ``given`` overrides)."""
    values = {f.name: getattr(args, f.metadata.get("constant", f.name.upper()).lower())
              for f in dataclasses.fields(cls)
              if hasattr(args, f.metadata.get("constant", f.name.upper()).lower())}
    return cls(**{**values, **given})


# The settings groups: each setting's one default, declared in the class or module that uses it.
# A script takes the groups it needs (cli.parser's ``groups``); a constant at its top overrides
# a group's default for that script.
COMMON = {"DEVICE": readout.Settings.device, "DATA": None, "OUT": "."}
TRAINING = defaults(training.Schedule)                      # how runs train
READOUT = {**defaults(readout.Settings), "SUBSET": training.Schedule.subset,
           "TEST_SUBSET": training.Schedule.test_subset}    # how a trained network is read out
MASC = {"THRESHOLD": masc.THRESHOLD}                        # MASC's settings
CONTROL = {"CONTROL": experiments.CONTROL, "INIT_SEED": experiments.INIT_SEED}  # the untrained net
FINE_TUNING = {"MAX_EPOCHS": retrain.MAX_EPOCHS, "PATIENCE": retrain.PATIENCE,
               "SEED": training.Schedule.seed, "SHUFFLE": training.Schedule.shuffle}


def add_settings(p, constants):
    """Add a flag for every setting among a script's ``constants``, defaulting to the
    constant's value; an unknown constant (a typo) is an error."""
    unknown = sorted(name for name in constants if name not in SETTINGS)
    if unknown:
        raise MASCError(f"unknown setting(s) {', '.join(unknown)} at the top of the script; the "
                        f"known ones are {', '.join(SETTINGS)}")
    for name, value in constants.items():
        s, dest = SETTINGS[name], name.lower()
        if s.type is None:
            p.add_argument(s.flag, dest=dest, action="store_true", default=value, help=s.help)
            p.add_argument(s.off, dest=dest, action="store_false", help=f"the opposite of {s.flag}")
        else:
            p.add_argument(s.flag, dest=dest, type=s.type, default=value, help=s.help,
                           nargs=s.nargs, choices=s.choices)


def parser(description, defaults, groups=(), models=MODELS, many=False, readout=False):
    """An ArgumentParser with the reference flags (-corr -model -dataset -run) and a flag for
    each setting of the script's ``groups`` (dicts such as :data:`TRAINING`) and of its own
    constants (``defaults``: its globals(), which also override a group's defaults; see
    :data:`SETTINGS`).

    ``many`` lets -corr and -run take several values or "all" (for sweeps); ``readout`` adds
    --reference-labels (for checkpoints trained elsewhere)."""
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
    settings = {}
    for group in groups:
        settings.update(group)
    add_settings(p, {**settings, **constants(defaults)})
    if readout:
        p.add_argument("--reference-labels", action="store_true",
                       help="for a checkpoint trained elsewhere (no labels.npz or progress.pt "
                            "beside it) on the whole training set with the reference's labels")
    return p


def readout_settings(args):
    """The :class:`MASC.readout.Settings` that a script's read-out flags give."""
    return build(readout.Settings, args)


def trained_runs(args):
    """The :class:`MASC.runs.TrainedRun` of every run a script's flags name (-corr / -run: one
    value, a list or "all"), loaded one at a time; each run is locked against training (shared:
    other read-outs may read it too) while the script works on it."""
    many = isinstance(args.corr, list)
    corrs = expand(args.corr, CORRUPTIONS, corruption) if many else [args.corr]
    run_ids = expand(args.run, RUNS, int) if many else [args.run]
    for p in corrs:
        for run in run_ids:
            key = results.RunKey(args.out, args.dataset, args.model, p, run)
            with results.lock(key.folder, wait=False, what="trained", shared=True):
                yield runs.load_run(key, root=args.data, subset=args.subset,
                                    test_subset=getattr(args, "test_subset", None),
                                    reference_labels=args.reference_labels)


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
