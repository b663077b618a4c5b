"""Bad flag values end every script with exit status 2 and one error line naming the flag, before
any data is loaded or any model is built; -corr / -run lists count each value once."""
import argparse
import importlib

import pytest
import torch

from conftest import ROOT
from conftest import script as load_script
from MASC import cli, data, experiments, retrain, runs, training
from MASC.errors import MASCError

SCRIPTS = {
    "training": "pytorch_training.py",
    "masc_all": "pytorch_MASC_all.py",
    "retrain": "pytorch_retrain_early.py",
    "probe_layers": "Compare_experiments/stronger_baselines/probe_layers.py",
    "sensitivity": "Compare_experiments/sensitivity_ablation_studies/sensitivity.py",
    "masc_resnet18": "Compare_experiments/Modern_backbones/masc_resnet18.py",
    "train_resnet18": "Compare_experiments/Modern_backbones/train_resnet18.py",
}
GOOD = {  # a valid command line of each script, the bad flag goes after it
    "training": ["-corr", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run", "1"],
    "masc_all": ["-corr", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run", "1", "-exp1", "True"],
    "retrain": ["-corr", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run", "1"],
    "probe_layers": ["-corr", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run", "1"],
    "sensitivity": ["-corr", "0.8", "-model", "CNN", "-dataset", "MNIST", "-run", "1"],
    "masc_resnet18": ["-corr", "0.8", "-run", "1"],
    "train_resnet18": ["-corr", "0.8", "-run", "1"],
}
ALL = list(SCRIPTS)
READOUT = ["masc_all", "retrain", "probe_layers", "sensitivity", "masc_resnet18"]
THRESHOLD = ["masc_all", "retrain", "probe_layers", "masc_resnet18"]
TEST_SUBSET = ["training", "probe_layers", "sensitivity"]
MANY = ["training", "probe_layers", "sensitivity", "masc_resnet18", "train_resnet18"]
MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())

# (scripts, flag named in the error, the bad arguments)
BAD = [
    (ALL, "--subset", ["--subset", "-5"]),
    (ALL, "--subset", ["--subset", "0"]),
    (ALL, "--subset", ["--subset", "1.5"]),
    (ALL, "--device", ["--device", "nonsense"]),
    (ALL, "--device", ["--device", "cuda:99"]),  # no CUDA, or not 100 GPUs
    (ALL, "--device", ["--device", "meta"]),
    (["training", "masc_all"], "-run", ["-run", "0"]),
    (["retrain", "probe_layers"], "-run", ["-run", "-2"]),
    (["sensitivity", "masc_resnet18"], "-run", ["-run", "x"]),
    (["masc_all", "training"], "-corr", ["-corr", "1.5"]),
    (MANY, "-corr", ["-corr", "all", "0.2"]),
    (MANY, "-run", ["-run", "1", "all"]),
    (["training", "train_resnet18"], "--epochs", ["--epochs", "0"]),
    (["training"], "--epochs", ["--epochs", "-3"]),
    (["training"], "--save-every", ["--save-every", "0"]),
    (TEST_SUBSET, "--test-subset", ["--test-subset", "0"]),
    (["training"], "--holdout", ["--holdout", "1"]),
    (["training"], "--holdout", ["--holdout", "-0.1"]),
    (["training"], "--holdout", ["--holdout", "nan"]),
    (READOUT, "--batch", ["--batch", "0"]),
    (READOUT, "--batch", ["--batch", "-5"]),
    (THRESHOLD, "--threshold", ["--threshold", "0"]),
    (THRESHOLD, "--threshold", ["--threshold", "1.5"]),
    (["masc_all"], "--threshold", ["--threshold", "-0.5"]),
    (["retrain"], "--threshold", ["--threshold", "nan"]),
    (["sensitivity"], "--thresholds", ["--thresholds", "0.5", "2.5"]),
    (["retrain"], "--max-epochs", ["--max-epochs", "0"]),
    (["retrain"], "--patience", ["--patience", "0"]),
    (["training"], "--label-seed", ["--label-seed", "-1"]),  # was a traceback from NumPy
    (["training"], "--label-seed", ["--label-seed", str(2 ** 32)]),
]
if not MPS:
    BAD.append((ALL, "--device", ["--device", "mps"]))
CASES = [pytest.param(s, flag, bad, id=f"{s}{''.join(bad)}") for scripts, flag, bad in BAD
         for s in scripts]


def script(name):
    """A script's module (its main takes argv)."""
    return script_module(SCRIPTS[name])


def script_module(path):
    """The module of a script, by its path under the repository (the top-level scripts as
    importable modules, so that patching MASC.cli reaches them)."""
    return importlib.import_module(path[:-3]) if "/" not in path else load_script(path)


@pytest.fixture
def no_work(monkeypatch):
    """Anything past the flag checks (data, training, read-outs) fails the test loudly."""
    def reached(*args, **kwargs):
        raise AssertionError("the script went past the flag checks")
    for module, name in ((data, "load"), (training, "train"), (experiments, "masc_experiments"),
                         (retrain, "retrain"), (runs, "load_run")):
        monkeypatch.setattr(module, name, reached)


@pytest.mark.parametrize("name,flag,bad", CASES)
def test_bad_flag_is_one_error_line_naming_it(name, flag, bad, no_work, capsys):
    with pytest.raises(SystemExit) as stop:
        script(name).main(GOOD[name] + bad)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert stop.value.code == 2, err
    assert len(errors) == 1 and f"argument {flag}:" in errors[0], err
    assert "Traceback" not in err


def test_good_flags_reach_the_work(monkeypatch):
    """The checks let valid values through, converted (the same command lines as above)."""
    seen = {}
    monkeypatch.setattr(training, "train", lambda runs, **kw: seen.update(kw, runs=runs) or {})
    script("training").main(GOOD["training"] + [
        "--subset", "100", "--test-subset", "50", "--epochs", "2", "--save-every", "1",
        "--holdout", "0.1", "--device", "cpu", "--seed", "5", "--label-seed", "7"])
    s = seen["schedule"]
    assert (s.subset, s.test_subset, s.epochs, s.save_every, s.holdout) == (100, 50, 2, 1, 0.1)
    assert seen["device"] == "cpu" and seen["runs"] == [training.Run("MNIST", "CNN", 0.8, 1, 6, 7)]
    p = cli.parser("x", {"DEVICE": "cpu"}, (cli.READOUT, cli.MASC), readout=True)
    args = p.parse_args(GOOD["retrain"] + ["--threshold", "5", "--batch", "7", "--device", "auto"])
    assert (args.threshold, args.batch, args.device, args.corr, args.run) == (5.0, 7, "auto", 0.8, 1)


def test_repeated_corr_and_run_count_once(monkeypatch):
    seen = []
    monkeypatch.setattr(training, "train", lambda runs, **kw: seen.extend(runs) or {})
    script("training").main(["-corr", "0.8", "0.2", "0.80", "-model", "CNN", "-dataset", "MNIST",
                             "-run", "2", "1", "2", "2", "--device", "cpu"])
    assert [(r.corrupt, r.run) for r in seen] == [(0.8, 2), (0.8, 1), (0.2, 2), (0.2, 1)]
    seen.clear()
    script("training").main(["-corr", "all", "all", "-model", "CNN", "-dataset", "MNIST",
                             "-run", "3", "--device", "cpu"])
    assert [r.corrupt for r in seen] == list(cli.CORRUPTIONS)


@pytest.mark.parametrize("values,kind,expected", [
    (["1", "1", "3", "1"], int, [1, 3]),
    ([3, 1, 3], int, [3, 1]),
    (["all"], int, list(cli.RUNS)),
    (["all", "all"], int, list(cli.RUNS)),
    (["0.8", "0.2", "0.8"], cli.corruption, [0.8, 0.2]),
    (["0.8", "0.80"], cli.corruption, [0.8]),
])
def test_expand_keeps_order_and_drops_repeats(values, kind, expected):
    assert cli.expand(values, cli.RUNS if kind is int else cli.CORRUPTIONS, kind) == expected


@pytest.mark.parametrize("values", [["all", "1"], ["x"], ["1.5"]])
def test_expand_bad_values(values):
    with pytest.raises(MASCError):
        cli.expand(values, cli.CORRUPTIONS, cli.corruption)


@pytest.mark.parametrize("kind,good,bad", [
    (cli.positive_int, {"1": 1, " 7 ": 7, "60000": 60000}, ["0", "-1", "1.5", "1e3", "", "x"]),
    (cli.share, {"0": 0.0, "0.1": 0.1, "0.999": 0.999}, ["1", "1.0", "-0.1", "nan", "inf", "x"]),
    (cli.corruption, {"0": 0.0, "1": 1.0, "0.8": 0.8}, ["1.01", "-0.2", "nan", "x"]),
    (cli.threshold, {"0.99": 0.99, "1": 1.0, "5": 5.0, "0.5": 0.5},
     ["0", "-0.5", "1.5", "2.5", "nan", "inf", "x"]),
])
def test_flag_types(kind, good, bad):
    for text, value in good.items():
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)


def test_threshold_type_matches_masc():
    """Whatever the flag lets through, MASC accepts, and the other way round."""
    from MASC.masc import MinimumAngleSubspaceClassifier as MASC

    for n in (0.01, 0.5, 0.99, 1.0, 2.0, 7.0, 0.0, -1.0, 1.5, 2.25, float("nan"), float("inf")):
        try:
            cli.threshold(str(n))
            flag_ok = True
        except argparse.ArgumentTypeError:
            flag_ok = False
        try:
            MASC(threshold=n)._check_params()
            masc_ok = True
        except MASCError:
            masc_ok = False
        assert flag_ok == masc_ok, n


def test_check_device():
    assert cli.check_device("auto") == "auto" and cli.check_device("cpu") == "cpu"
    for name in ("nonsense", "cuda:99", "meta", "cpu cpu"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.check_device(name)
    if torch.cuda.is_available():
        assert cli.check_device("cuda:0") == "cuda:0"
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="no CUDA GPU"):
            cli.check_device("cuda")
    if not MPS:
        with pytest.raises(argparse.ArgumentTypeError, match="MPS"):
            cli.check_device("mps")


def parser_of(name, monkeypatch):
    """The ArgumentParser a script builds (its main stopped at --help), and the settings groups
    it asked for."""
    made, real = {}, cli.parser

    def spy(description, defaults, groups=(), **kwargs):
        made.update(parser=real(description, defaults, groups, **kwargs), groups=groups)
        return made["parser"]

    monkeypatch.setattr(cli, "parser", spy)
    with pytest.raises(SystemExit):
        script(name).main([*GOOD[name], "--help"])
    return made["parser"], made["groups"]


def flags(parser):
    return {o for a in parser._actions for o in a.option_strings}


@pytest.mark.parametrize("name", ALL + ["make_plots"])
def test_every_script_constant_is_a_known_setting_with_its_flag(name):
    """Each constant at the top of a script is declared once in cli.SETTINGS and becomes its
    flag, with the constant as the default."""
    path = SCRIPTS.get(name, "Compare_experiments/plotting/make_plots.py")
    constants = cli.constants(vars(script_module(path)))
    assert set(constants) <= set(cli.SETTINGS), path
    p = argparse.ArgumentParser()
    cli.add_settings(p, constants)
    defaults = vars(p.parse_args([]))
    assert {k.upper(): v for k, v in defaults.items()} == constants


def library_defaults():
    """{setting constant: [(where, its keyword default)]} of the library's functions that take a
    setting."""
    import inspect

    from MASC import masc, noise, probes, readout

    places = {"THRESHOLD": [(masc.MinimumAngleSubspaceClassifier, "threshold"),
                            (masc.fit_labellings, "threshold"), (masc.iter_labellings, "threshold"),
                            (experiments.masc_experiments, "threshold"),
                            (retrain.retrain, "threshold"), (retrain.masc_layers, "threshold"),
                            (noise.detect, "threshold"), (probes.make, "threshold"),
                            (readout.Reader.masc_by_layer, "threshold")],
              "PER_SAMPLE_BN": [(readout.Reader, "per_sample_bn")],
              "BATCH": [(readout.Reader, "batch_size")], "LAYERS": [(readout.Reader, "layers")],
              "DEVICE": [(readout.Reader, "device"), (training.train, "device")],
              "ROWS_ON_DISK": [(readout.Reader, "rows_on_disk")],
              "MAX_EPOCHS": [(retrain.retrain, "max_epochs"), (retrain.fine_tune, "max_epochs"),
                             (noise.retrain_variant, "max_epochs")],
              "PATIENCE": [(retrain.retrain, "patience"), (retrain.fine_tune, "patience"),
                           (noise.retrain_variant, "patience")],
              "OUT": [(training.train, "out")]}
    return {name: [(f"{getattr(f, '__qualname__', f)}({param}=)",
                    inspect.signature(f).parameters[param].default) for f, param in found]
            for name, found in places.items()}


def test_one_default_per_setting(monkeypatch):
    """Every setting has one default: the settings groups agree where they share one, the
    library's keyword defaults are the groups' (break: Reader(per_sample_bn=False), as before),
    and a script constant that one of its groups declares overrides it (never restates it)."""
    from MASC import sweep

    groups = {"COMMON": cli.COMMON, "TRAINING": cli.TRAINING, "READOUT": cli.READOUT,
              "MASC": cli.MASC, "FINE_TUNING": cli.FINE_TUNING, "CLUSTER": sweep._CLUSTER}
    default = {}
    for group in groups.values():
        for name, value in group.items():
            assert default.setdefault(name, value) == value, (name, value, default[name])
    for name, found in library_defaults().items():
        for where, value in found:
            assert value == default[name], f"{where} defaults to {value!r}, {name} to {default[name]!r}"
    for name in ALL:
        if name == "train_resnet18":
            continue
        _, used = parser_of(name, monkeypatch)
        declared = {k: v for group in used for k, v in group.items()}
        constants = cli.constants(vars(script(name)))
        restated = {k for k, v in constants.items() if k in declared and v == declared[k]}
        assert not restated, f"{SCRIPTS[name]} restates the default of {restated}"


def test_a_sweep_accepts_every_flag_the_training_and_masc_scripts_accept(monkeypatch):
    """python -m MASC.sweep submit offers every setting of pytorch_training.py and
    pytorch_MASC_all.py (their -exp1/2/3 are its --exps; it reads out the runs it trained, so
    --reference-labels has no use there)."""
    from MASC import sweep

    offered = flags(sweep._submit_parser())
    training_flags = flags(parser_of("training", monkeypatch)[0])
    masc_flags = flags(parser_of("masc_all", monkeypatch)[0]) - {
        "-exp1", "-exp2", "-exp3", "--reference-labels"}
    assert training_flags <= offered and masc_flags <= offered, (
        (training_flags | masc_flags) - offered)


def test_a_misspelt_constant_fails_loudly():
    """A typo at the top of a script (EPOCH for EPOCHS) is an error naming it, not a silent
    fallback to the default (break: skip unknown constants in add_settings)."""
    with pytest.raises(MASCError, match="unknown setting.*EPOCH\\b"):
        cli.parser("x", {"EPOCH": 5, "OUT": "."})
    p = cli.parser("x", {"SHUFFLE": False, "PER_SAMPLE_BN": True})
    args = p.parse_args(GOOD["training"] + ["--shuffle", "--eval-bn"])
    assert (args.shuffle, args.per_sample_bn) == (True, False)


def test_no_script_edits_sys_path():
    """The package is installed (pip install -e .), so no script or benchmark inserts into
    sys.path to import it."""
    scripts = [*ROOT.glob("*.py"), *ROOT.glob("Compare_experiments/**/*.py"),
               *ROOT.glob("benchmarks/*.py"), *ROOT.glob("paper/*.py")]
    assert scripts
    offenders = [str(p.relative_to(ROOT)) for p in scripts if "sys.path.insert" in p.read_text()]
    assert not offenders


def test_no_file_name_of_a_run_is_spelled_outside_the_run_key():
    """Every file name of a run (checkpoints, progress, labels, the tidy and reference CSVs, the
    sweeps' records) is made or matched in MASC/results.py only (its RunKey and finders): no
    string literal elsewhere in the code spells one (prose in messages and docstrings may name
    them)."""
    import ast
    import re

    name = re.compile(r"\S*(Run_|\.pth\b|progress\.pt|labels\.npz|Accuracy_results|"
                      r"angle_results|sweep\.json)\S*")
    code = [*ROOT.glob("MASC/*.py"), *ROOT.glob("*.py"), *ROOT.glob("Compare_experiments/**/*.py"),
            *ROOT.glob("paper/*.py")]
    spelt = []
    for path in code:
        if path == ROOT / "MASC" / "results.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        spelt += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
                  for node in ast.walk(tree) if isinstance(node, ast.Constant)
                  and isinstance(node.value, str) and id(node) not in docstrings
                  and name.fullmatch(node.value)]
    assert len(code) > 20 and not spelt, spelt
