"""Sweeps on a cluster: train a (dataset, model) pair's runs and read them out with MASC as Slurm
jobs through submitit, and show a sweep's state from its files.

    python -m MASC.sweep submit -dataset MNIST -model CNN -corr all -run all --cluster slurm \\
        --partition gpu --time 240
    python -m MASC.sweep status --out .

Training is one array task per (dataset, model) pair with its runs stacked (--per-run: one task
per run); MASC (pytorch_MASC_all.py's exp1/exp2/exp3) is one array task per (p, run) that starts
once every training task succeeded (Slurm afterok). A task stopped by a time limit or preemption
saves its progress and is requeued by submitit; the rerun resumes from progress.pt. --cluster
local runs the same jobs as processes here (submitit's local executor); the default, here, runs
them in this process. The sweep's jobs and logs are recorded in OUT/sweeps/NAME/sweep.json.
"""
# Defaults: edit them here or override them on the command line.
EXPS = None               # MASC experiments; None: 1 and 2, and 3 when the sweep trains p = 0.0
# The others are the settings groups' (--help lists them): the cluster's (Cluster below), the
# training schedule (MASC/training.py, Schedule), the read-out (MASC/readout.py, Settings),
# MASC's THRESHOLD and DEVICE, DATA, OUT: every setting of pytorch_training.py and
# pytorch_MASC_all.py, passed whole to the jobs.

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import submitit  # noqa: E402
from submitit.core.utils import JobPaths  # noqa: E402

from . import cli, data, experiments, readout, results, runs, training  # noqa: E402
from .errors import MASCError  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]  # the repository, for the jobs' PYTHONPATH
_FAILED = ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
          "DEADLINE", "INTERRUPTED", "LOST")  # Slurm's end states other than COMPLETED


@dataclass(frozen=True)
class Cluster:
    """Where and with what a sweep's jobs run (the sweep's cluster settings group)."""

    cluster: str = "here"  # here (this process), local (submitit's local processes) or slurm
    partition: str = None  # Slurm partition (None: the cluster's default)
    account: str = None
    qos: str = None  # Slurm quality of service
    gpus_per_job: int = 1  # GPUs of each job (0: none)
    cpus_per_job: int = 4
    mem_gb: int = None  # memory of each job in GB (None: the cluster's default)
    time: int = 240  # minutes per job; a job stopped at its limit is requeued and resumes
    array_parallelism: int = 64  # array tasks running at once
    max_requeues: int = 50  # time-limit requeues of a job before it fails (submitit's: 3)


_CLUSTER = cli.defaults(Cluster)  # the cluster settings group


class Train(submitit.helpers.Checkpointable):
    """One training task: its runs, stacked; requeued, it resumes from their progress.pt."""

    def __call__(self, runs, out, root, device, schedule):
        done = training.train([training.Run(**run) for run in runs], out=out, root=root,
                              device=device, progress=False, log=print,
                              schedule=training.Schedule(**schedule))
        return {f"p={run.corrupt} run {run.run}": str(path) for run, path in done.items()}


class Masc(submitit.helpers.Checkpointable):
    """One MASC task: the experiments ``exps`` of one trained run (``run``: its RunKey's
    fields) on every row it trained on and the whole test set, read out with the sweep's
    ``readout`` settings and ``threshold`` (rerun: done again)."""

    def __call__(self, run, exps, root, readout_settings, threshold):
        trained = runs.load_run(results.RunKey(**run), root=root)
        table = experiments.masc_experiments(trained, exps, threshold=threshold,
                                             readout=readout.Settings(**readout_settings))
        return len(table)


def plan(args):
    """The sweep's stages: ``[(stage, callable, [task kwargs])]``, training first."""
    corrs = cli.expand(args.corr, cli.CORRUPTIONS, cli.corruption)
    run_ids = cli.expand(args.run, cli.RUNS, int)
    out, root = str(Path(args.out).resolve()), str(data.data_root(args.data).resolve())
    schedule = cli.build(training.Schedule, args)
    runs = [asdict(schedule.run(args.dataset, args.model, c, r)) for c in corrs for r in run_ids]
    groups = [[run] for run in runs] if args.per_run else [runs]
    stages = [("train", Train(), [dict(runs=g, out=out, root=root, device=args.device,
                                       schedule=asdict(schedule)) for g in groups])]
    exps = args.exps if args.exps is not None else [1, 2] + ([3] if 0.0 in corrs else [])
    if 3 in exps and 0.0 not in corrs and not all(
            results.RunKey(out, args.dataset, args.model, 0.0, r).final_checkpoint()
            for r in run_ids):
        raise MASCError("exp3 reads out the models trained at p = 0.0: add 0.0 to -corr (or "
                        "train them first), or leave 3 out of --exps")
    if exps:
        settings = dict(root=root, readout_settings=asdict(cli.readout_settings(args)),
                        threshold=args.threshold)
        stages.append(("masc", Masc(), [
            dict(run={"out": out, **results.RunKey(out, args.dataset, args.model, c, r).ids()},
                 exps=exps, **settings) for c in corrs for r in run_ids]))
    return stages


def executor(args, folder, name):
    """A submitit executor (local or Slurm) with the sweep's resources."""
    if args.cluster == "slurm" and shutil.which("sbatch") is None:
        raise MASCError("--cluster slurm: no Slurm here (sbatch not found); submit from the "
                        "cluster's login node, or use --cluster local")
    ex = submitit.AutoExecutor(folder=folder / "logs" / "%j", cluster=args.cluster,
                               slurm_max_num_timeout=args.max_requeues)
    setup = [f"export PYTHONPATH={_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"]  # the jobs import MASC
    params = dict(name=name, timeout_min=args.time, cpus_per_task=args.cpus_per_job,
                  slurm_array_parallelism=args.array_parallelism,
                  slurm_setup=setup, local_setup=setup,
                  slurm_additional_parameters=dict(args.slurm_option))
    if args.gpus_per_job:
        params["gpus_per_node"] = args.gpus_per_job
    if args.mem_gb:
        params["mem_gb"] = args.mem_gb
    for key in ("partition", "account", "qos"):
        if getattr(args, key):
            params[f"slurm_{key}"] = getattr(args, key)
    ex.update_parameters(**params)
    return ex


def submit(args, argv):
    """Submit (or, with --cluster here, run) every stage; returns the sweep's record. A sweep
    name already recorded under OUT is refused (its record holds that sweep's jobs and logs)."""
    stages = plan(args)
    name = args.name or f"{args.dataset}_{args.model}_{datetime.datetime.now():%Y%m%d-%H%M%S}"
    path = results.sweep_record(args.out, name)
    if path.exists():
        raise MASCError(f"a sweep named {name} is recorded at {path} (its jobs and logs); choose "
                        f"another --name, or move that folder away")
    settings = {"schedule": asdict(cli.build(training.Schedule, args)),
                "readout": asdict(cli.readout_settings(args)), "threshold": args.threshold,
                "cluster": asdict(cli.build(Cluster, args))}
    record = {"name": name, "cluster": args.cluster, "out": str(Path(args.out).resolve()),
              "command": "python -m MASC.sweep " + " ".join(argv), "settings": settings,
              "submitted": f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}", "stages": []}
    ex = executor(args, path.parent, name) if args.cluster != "here" else None
    previous, previous_stage = None, None
    for stage, function, tasks in stages:
        entry = {"stage": stage, "tasks": [{k: v for k, v in t.items() if k in _TASK_KEYS}
                                           for t in tasks]}
        record["stages"].append(entry)
        if ex is None:
            _write(path, record)
            for task, recorded in zip(tasks, entry["tasks"]):
                function(**task)
                recorded["done"] = True
                _write(path, record)
            continue
        if previous is not None and args.cluster == "slurm":
            ex.update_parameters(slurm_dependency=f"afterok:{previous[0].job_id.split('_')[0]}")
        elif previous is not None:  # local processes: no dependencies, so wait for the stage
            _wait(previous, previous_stage)
        with ex.batch():
            jobs = [ex.submit(function, **task) for task in tasks]
        for task, job in zip(entry["tasks"], jobs):
            task.update(job_id=job.job_id, folder=str(job.paths.folder),
                        stdout=str(job.paths.stdout), stderr=str(job.paths.stderr))
        _write(path, record)
        print(f"{stage}: {len(jobs)} job(s) {', '.join(j.job_id for j in jobs)}")
        previous, previous_stage = jobs, stage
    if args.cluster == "local":
        _wait(previous, previous_stage)
    print(f"sweep {name}: python -m MASC.sweep status --out {args.out} --name {name}")
    return record


_TASK_KEYS = ("runs", "run", "exps")  # what a task's record says it does


def _wait(jobs, stage):
    """Wait for local jobs; a failed one is a one-line error naming its log."""
    for job in jobs:
        try:
            job.result()
        except Exception:
            raise MASCError(f"{stage} job {job.job_id} failed; its log: {job.paths.stderr}") from None


def _write(path, record):
    with results.atomic(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))


def load(out, name=None):
    """The records of the sweeps under OUT/sweeps (only ``name`` if given)."""
    paths = [results.sweep_record(out, name)] if name else sorted(
        results.sweep_dir(out).glob(f"*/{results.sweep_record(out, 'x').name}"))
    if not paths or not paths[0].exists():
        where = paths[0] if paths else results.sweep_dir(out)
        raise MASCError(f"no sweep recorded at {where}; check --out (and --name), or submit one "
                        f"with python -m MASC.sweep submit")
    records = []
    for path in paths:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise MASCError(f"{path} is unreadable ({type(e).__name__}); it was not written by "
                            f"this tool, or it was damaged: move it away") from None
        if not (isinstance(record, dict) and {"name", "cluster", "out", "stages"} <= set(record)
                and isinstance(record["stages"], list)):
            raise MASCError(f"{path} is not a sweep record of this tool (JSON of another shape); "
                            f"move it away")
        records.append((path, record))
    return records


def job_state(cluster, task):
    """A task's job state: Slurm's (through submitit and sacct), or for local processes one read
    from submitit's result file and the process table ("-": a task run in the submitting
    process)."""
    if "job_id" not in task:
        return "-"
    if cluster == "slurm":
        return submitit.SlurmJob(folder=task["folder"], job_id=task["job_id"]).state
    paths = JobPaths(task["folder"], job_id=task["job_id"], task_id=0)
    if paths.result_pickle.exists():
        outcome = submitit.core.utils.pickle_load(paths.result_pickle)[0]
        return "COMPLETED" if outcome == "success" else "FAILED"
    try:
        os.kill(int(task["job_id"]), 0)
        return "RUNNING"
    except (OSError, ValueError):
        return "INTERRUPTED"


def _run_state(job, finished):
    """finished, running, pending or failed, from the outputs and the job's state ("-": run in
    the submitting process, which is gone unless the run finished)."""
    if finished:
        return "finished"
    if job == "RUNNING":
        return "running"
    if job != "-" and (job.split()[0] in _FAILED or job == "COMPLETED"):
        return "failed"
    return "pending"


def status(record, path="the sweep record"):
    """One row per (stage, task, run) of a sweep: job, job state, run state, epoch, log. A MASC
    task is finished when this sweep's job completed (or its task, run here, returned) and its
    CSVs are there: a CSV of an earlier sweep does not count."""
    try:
        return _status(record)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MASCError(f"{path} is not a sweep record of this tool ({type(e).__name__}: "
                        f"{e}); move it away") from None


def _status(record):
    rows, out = [], record["out"]
    epochs = record["settings"]["schedule"]["epochs"] if "settings" in record else record["epochs"]
    for entry in record["stages"]:
        for task in entry["tasks"]:
            job = job_state(record["cluster"], task)
            base = {"stage": entry["stage"], "job": task.get("job_id", "-"), "job_state": job}
            if entry["stage"] == "train":
                for run in task["runs"]:
                    key = results.RunKey(out, run["dataset"], run["model"], run["corrupt"],
                                         run["run"])
                    state = key.load_progress()
                    epoch = state["epoch"] if state else 0
                    finished = bool(state) and (state["reached_target"] or epoch >= epochs)
                    held = results.lock_holder(key.folder)
                    rows.append({**base, "dataset": key.dataset, "model": key.model,
                                 "p": key.corrupt, "run": key.run, "epoch": epoch,
                                 "state": "running" if held and not finished else
                                 _run_state(job, finished),
                                 "log": task.get("stderr", "-")})
            else:
                run = task["run"] if isinstance(task["run"], dict) else {  # older records
                    "dataset": task["dataset"], "model": task["model"], "corrupt": task["p"],
                    "run": task["run"]}
                key = results.RunKey(out, run["dataset"], run["model"], run["corrupt"], run["run"])
                done = job == "COMPLETED" or (job == "-" and task.get("done", False))
                finished = done and all(key.masc_csv(exp).exists() for exp in task["exps"])
                rows.append({**base, "dataset": key.dataset, "model": key.model,
                             "p": key.corrupt, "run": key.run, "epoch": "-",
                             "state": _run_state(job, finished),
                             "log": task.get("stderr", "-")})
    return pd.DataFrame(rows)


def _submit_parser():
    p = cli.parser("Submit a sweep: training, then MASC on every run.", globals(),
                   (_CLUSTER, cli.TRAINING, cli.READOUT, cli.MASC, cli.COMMON), many=True)
    p.prog = "python -m MASC.sweep submit"
    p.add_argument("--name", help="the sweep's name (default: DATASET_MODEL_TIME)")
    p.add_argument("--per-run", action="store_true", help="one training task per run, not "
                   "one per (dataset, model) pair with its runs stacked")
    p.add_argument("--slurm-option", nargs="+", default=[], type=_option, metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. constraint=a100")
    return p


def _option(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


@cli.main(resumes=True)
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("submit", "status"):
        print("usage: python -m MASC.sweep {submit,status} ... (-h after either for its flags)",
              file=sys.stderr)
        sys.exit(2)
    if argv[0] == "submit":
        return submit(_submit_parser().parse_args(argv[1:]), argv)
    p = argparse.ArgumentParser(prog="python -m MASC.sweep status",
                                description="Jobs and runs of the sweeps under OUT/sweeps.")
    p.add_argument("--out", default=cli.COMMON["OUT"], help="results root the sweep was "
                   "submitted with")
    p.add_argument("--name", help="one sweep (default: every sweep under OUT/sweeps)")
    p.add_argument("--csv", help="also write the table to this CSV")
    args = p.parse_args(argv[1:])
    tables = []
    for path, record in load(args.out, args.name):
        table = status(record, path)
        counts = table.state.value_counts().to_dict() if len(table) else {}
        print(f"sweep {record['name']} ({record['cluster']}, submitted "
              f"{record.get('submitted', '?')}): "
              + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        print(table.to_string(index=False))
        tables.append(table.assign(sweep=record["name"]))
    if args.csv:
        results.write_csv(pd.concat(tables, ignore_index=True), args.csv)
    return tables


if __name__ == "__main__":
    main()
