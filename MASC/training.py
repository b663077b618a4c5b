"""Training: K runs of one (model, dataset) at once, as stacked parameters and one grouped step.

A single run is a stack of one. Each run has its own corrupted labels (degree p), its own seed
(initial weights and data order) and its own stop: once its running train accuracy reaches the
dataset's target, or the epoch cap, its checkpoint and CSV are written exactly as a lone run would
write them, and it leaves the stack. The optimiser is the reference's (Adam or SGD with momentum,
docs/protocol.md, 'Training and stop rules') over the stacked tensors: both update every element
independently, so each model
gets exactly its own optimiser's update. On CUDA the whole step (gather, forward, backward,
optimiser) is captured as a CUDA graph; on CPU it runs eagerly. :mod:`MASC.stacking` runs the K
models as one.
"""
import contextlib
import math
import time
from dataclasses import asdict, dataclass, replace
from itertools import groupby

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import data, models, results, stopping
from .devices import pick_device
from .corruption import REFERENCE_SEED, RunLabels, holdout_rows
from .errors import MASCError
from .stacking import Stack

EVAL_BATCH = 2000


@dataclass(frozen=True)
class Run:
    """One training run: a (dataset, model) at corruption degree p, run index and seed."""

    dataset: str
    model: str
    corrupt: float
    run: int
    seed: int
    label_seed: int = REFERENCE_SEED

    def key(self, out):
        """The run's :class:`~MASC.results.RunKey` under the results root ``out``."""
        return results.RunKey(out, self.dataset, self.model, self.corrupt, self.run)


def epoch_order(seed, epoch, n, shuffle=True):
    """The sample order of one epoch: a permutation fixed by (seed, epoch), made on the CPU so that
    every device sees the same order (``shuffle=False`` gives the reference's fixed order)."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


POST_EPOCH_TARGET = 99.99  # % of the training set, scored after the epoch (the reference's MLPs)
STOP_RULES = ("post-epoch", "running")
INITS = ("pytorch", "glorot")


def stop_rule(model, dataset, stop_on=None):
    """``(rule, target %)``: how a run's train accuracy is measured and where it stops.

    The model's record says which (:data:`MASC.models.REGISTRY`). "post-epoch" (the MLPs): a
    full evaluation of the training set after each epoch against the corrupted labels, >= 99.99%
    (the reference's MLP results came from such a script). "running" (every other model): the
    accuracy of the epoch's own training steps, >= the dataset's target. ``stop_on``
    ("post-epoch" or "running") overrides the rule; an MLP keeps its 99.99% target."""
    reference = models.record(model).stop_rule
    rule = stop_on or reference
    if rule not in STOP_RULES:
        raise MASCError(f"unknown stop rule {rule!r}; choose one of {', '.join(STOP_RULES)}")
    target = POST_EPOCH_TARGET if reference == "post-epoch" else data.info(dataset).stop_accuracy
    return rule, (POST_EPOCH_TARGET if rule == "post-epoch" else target)


def glorot_init(net):
    """Keras's default initialisation, in place: Glorot-uniform weights and zero biases for every
    Linear and Conv2d layer (the torch RNG must be seeded by the caller)."""
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def set_precision(device, tf32=False):
    """CUDA math for training: TF32 matmuls only with ``tf32`` (off is PyTorch's default and the
    reference's); cuDNN convolutions keep PyTorch's setting unless ``tf32``; cuDNN autotuning."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        if tf32:
            torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def _optimiser_state(optimiser, names, k):
    """Model k's slice of a stacked optimiser's state, keyed by parameter name."""
    state = {}
    for name, p in zip(names, optimiser.param_groups[0]["params"]):
        state[name] = {key: (v.detach().cpu().clone() if v.dim() == 0 else v[k].detach().cpu().clone())
                       for key, v in optimiser.state.get(p, {}).items()}
    return state


def _load_optimiser_state(optimiser, names, states):
    """Stack per-model optimiser states (from :func:`_optimiser_state`) into ``optimiser``."""
    if not states[0] or not states[0][names[0]]:
        return
    stacked = {}
    for i, name in enumerate(names):
        stacked[i] = {key: (value if value.dim() == 0 else torch.stack([s[name][key] for s in states]))
                      for key, value in states[0][name].items()}
    optimiser.load_state_dict({"state": stacked, "param_groups": optimiser.state_dict()["param_groups"]})


class Trainer:
    """K models of one (dataset, model) trained together as one stack: ``runs`` (seeds: data
    order), ``nets`` (their weights copied into the stack), ``labels`` (K, N) for the N images of
    ``train_split``; ``states``: each run's saved progress (progress.pt) whose optimiser state
    it resumes from, or None;
    ``graphs``: capture the step as a CUDA graph; ``bf16``: bf16 autocast; ``batch``: images per
    step (None: the reference's); ``scaling``: the input scaling (:func:`MASC.data.normalise`)."""

    def __init__(self, runs, nets, labels, train_split, *, states=None, graphs=False, bf16=False,
                 channels_last=True, batch=None, scaling="reference"):
        states = states or [None] * len(runs)
        self.runs, self.labels, self.split = runs, labels, train_split
        self.device = train_split.images.device
        self.model = runs[0].model
        self.dataset = runs[0].dataset
        self.batch = batch or models.batch_size(self.model, self.dataset)
        self.scaling = scaling
        self.use_graphs, self.bf16 = graphs, bf16
        self.stack = Stack(nets, channels_last)
        self._new_optimiser([s["optimiser"] if s else {} for s in states])

    def _new_optimiser(self, states):
        self.names = list(self.stack.params)
        self.optimiser = models.make_optimiser(self.model, list(self.stack.params.values()),
                                               graph_safe=self.device.type == "cuda")
        _load_optimiser_state(self.optimiser, self.names, states)
        self.correct = torch.zeros(self.stack.size, dtype=torch.long, device=self.device)
        self.graphs = {}

    def keep(self, indices):
        """Continue with the runs at ``indices`` only."""
        states = [_optimiser_state(self.optimiser, self.names, k) for k in indices]
        self.runs = [self.runs[k] for k in indices]
        self.labels = self.labels[indices]
        self.stack = self.stack.select(indices)
        self._new_optimiser(states)

    def optimiser_state(self, k):
        return _optimiser_state(self.optimiser, self.names, k)

    def _step(self, idx):
        """One optimiser step of every model on its own batch ``idx`` (K, B)."""
        K, B = idx.shape
        x = data.normalise(self.split.images[idx.reshape(-1)], self.dataset, self.scaling)
        x = x.view(K, B, *x.shape[1:])
        y = self.labels.gather(1, idx)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16,
                            cache_enabled=False):  # no weight-cast cache inside CUDA graphs
            logits = self.stack(x)
        loss = F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none").mean(1).sum()
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.correct += (logits.argmax(-1) == y).sum(1)

    def _graph(self, B):
        """A CUDA graph of ``_step`` for batches of B (captured once per batch size and stack)."""
        if B not in self.graphs:
            idx = torch.zeros(self.stack.size, B, dtype=torch.long, device=self.device)
            fresh = not self.optimiser.state
            saved = [t.detach().clone() for t in self._state_tensors()]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._step(idx)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._step(idx)
            # Undo the warm-up steps. A zero optimiser state acts exactly like a fresh one
            # (Adam: step 0 and zero moments; SGD: a zero momentum buffer gives buf = grad).
            with torch.no_grad():
                for t, s in zip(self._state_tensors(), saved):
                    t.copy_(s)
                if fresh:
                    for t in self._state_tensors()[len(saved):]:
                        t.zero_()
            self.graphs[B] = (graph, idx)
        return self.graphs[B]

    def _state_tensors(self):
        """Everything a training step changes; the optimiser's state comes last."""
        opt = [v for p in self.optimiser.param_groups[0]["params"]
               for v in self.optimiser.state.get(p, {}).values()]
        return [*self.stack.params.values(), *self.stack.buffers.values(), self.correct, *opt]

    def train_epoch(self, epoch, shuffle):
        """One epoch of every model; returns the running train accuracies (%)."""
        n = len(self.split)
        order = torch.stack([epoch_order(r.seed, epoch, n, shuffle) for r in self.runs]).to(self.device)
        self.stack.train(True)
        self.correct.zero_()
        for start in range(0, n, self.batch):
            idx = order[:, start:start + self.batch]
            if self.use_graphs:
                graph, static_idx = self._graph(idx.shape[1])
                static_idx.copy_(idx)
                graph.replay()
            else:
                self._step(idx)
        return [100 * c / n for c in self.correct.tolist()]

    @torch.no_grad()
    def predict(self, split):
        """Predicted classes (K, N) of every model on ``split``, eval mode, in large batches."""
        self.stack.train(False)
        predictions = []
        for start in range(0, len(split), EVAL_BATCH):
            x = data.normalise(split.images[start:start + EVAL_BATCH], self.dataset, self.scaling)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                predictions.append(self.stack(x, shared=True).argmax(-1))
        return torch.cat(predictions, dim=1)

    def evaluate(self, split):
        """Accuracies (%) of every model on ``split`` against its labels."""
        return percent_correct(self.predict(split), split.labels)


def train_net(net, split, run, epochs, *, shuffle=False):
    """Train one model on ``split`` (images and labels) for ``epochs`` epochs with the engine,
    in place; returns ``net`` (for tests, benchmarks and examples)."""
    trainer = Trainer([run], [net], split.labels[None], split)
    for epoch in range(epochs):
        trainer.train_epoch(epoch, shuffle)
    net.load_state_dict(trainer.stack.state_dict(0))
    return net


def percent_correct(predicted, labels):
    """Accuracy (%) of each row of ``predicted`` (K, N) against ``labels`` ((K, N) or (N,))."""
    return [100 * c / predicted.shape[1] for c in (predicted == labels).sum(1).tolist()]


@dataclass(frozen=True)
class Schedule:
    """How runs train (the training scripts' settings group): epoch cap, data used, sample
    order, progress saving, precision and seeds. Saved whole in every run's progress."""

    epochs: int = 500
    subset: int = None  # first N training images only
    test_subset: int = None  # first N test images in the per-epoch evaluation only
    holdout: float = 0.0  # share of those images kept out of training (a validation set)
    shuffle: bool = False  # the reference's fixed order; True: a new seeded order every epoch
    save_every: int = 10  # epochs between progress saves
    bf16: bool = False
    tf32: bool = False  # TF32 matmuls on CUDA (PyTorch's default, and the reference's: off)
    train_batch: int = None  # images per step; None: the reference's for the model and dataset
    init: str = "pytorch"  # or "glorot": Keras's Glorot-uniform weights and zero biases
    scaling: str = "reference"  # input scaling (data.normalise); "unit": pixels in [0, 1] only
    stop_on: str = None  # "post-epoch" or "running"; None: the reference's rule for the model
    seed: int = 0  # run r trains with seed seed + r (initial weights and data order)
    label_seed: int = REFERENCE_SEED  # the corruption's seed (42: the reference's labels)

    def run(self, dataset, model, corrupt, run):
        """The :class:`Run` of run index ``run`` at degree ``corrupt`` under this schedule."""
        return Run(dataset, model, corrupt, run, self.seed + run, self.label_seed)

    def config(self, run):
        """What a saved progress must match to be resumed (everything that changes the run)."""
        return {**asdict(run), "subset": self.subset, "test_subset": self.test_subset,
                "holdout": self.holdout, "shuffle": self.shuffle, "bf16": self.bf16,
                "tf32": self.tf32, "stop_rule": stop_rule(run.model, run.dataset, self.stop_on)[0],
                "batch": self.train_batch or models.batch_size(run.model, run.dataset),
                "init": self.init, "scaling": self.scaling}


def saved_config(config, run):
    """A saved progress's config with the settings added since it was written filled in with the
    values every run had before them (the reference's batch, PyTorch's initialisation, the
    reference's scaling)."""
    earlier = {"batch": models.batch_size(run.model, run.dataset), "init": "pytorch",
               "scaling": "reference"}
    return {**earlier, **config}


@dataclass
class _Session:
    """What one training call shares: where results go, the schedule, the data on the device."""

    out: object
    schedule: Schedule
    train_split: data.Split
    test_split: data.Split
    n_images: int  # training images of the runs (hold-out included)
    graphs: bool
    progress: bool
    log: object

    def folder(self, run):
        return run.key(self.out).folder

    def rule(self, run):
        return stop_rule(run.model, run.dataset, self.schedule.stop_on)[0]

    def load_progress(self, run):
        path = run.key(self.out).progress
        state = results.load_progress(path)
        if state is None:
            return None
        saved, wanted = saved_config(state.get("config", {}), run), self.schedule.config(run)
        if saved != wanted:
            diff = ", ".join(f"{k} {saved.get(k)!r} (now {v!r})" for k, v in wanted.items()
                             if saved.get(k) != v)
            raise MASCError(f"{path} belongs to a run with other settings: {diff}; delete it to "
                            f"restart, or pass the same settings to resume")
        return state

    def save(self, group, k, epoch, history, final, reached_target):
        """Progress of model k (atomic: its settings whole, the resume key ``config``, epoch,
        history, weights and optimiser); with ``final`` also its checkpoint (an older final
        checkpoint of a shorter cap is removed), whose path it then returns."""
        run = group.runs[k]
        key = run.key(self.out)
        key.folder.mkdir(parents=True, exist_ok=True)
        weights = group.stack.state_dict(k)
        state = {"config": self.schedule.config(run), "schedule": asdict(self.schedule),
                 "epoch": epoch, "history": history, "reached_target": reached_target,
                 "model": weights, "optimiser": group.optimiser_state(k)}
        results.save_torch(state, key.progress)
        checkpoint = results.save_checkpoint(weights, key.folder, epoch) if final else None
        self.write_history(run, history, finished=final)
        return checkpoint

    def write_history(self, run, history, finished):
        """The reference CSV (%, 1-based epochs) and our tidy CSV (fractions, the run's id and
        settings columns; ``finished``: the run has stopped, by its rule or the cap, not just
        saved its progress).

        History rows are (epoch, train %, test %, post-epoch train % vs the true labels, running
        train %, post-epoch train % vs the corrupted labels): train % is the stop rule's
        measure; the running accuracy of the epoch's own steps is always there (NaN in rows
        saved before it was recorded); the post-epoch pass only under the post-epoch rule or for
        MLPs (NaN where not measured; the true-label score is then not in the reference CSV)."""
        key = run.key(self.out)
        columns = ["epoch", "Train_accuracy", "Test_accuracy", "Train_accuracy_original",
                   "Train_accuracy_running", "Train_accuracy_post_epoch"]
        frame = pd.DataFrame([tuple(row) + (math.nan,) * (len(columns) - len(row))
                              for row in history], columns=columns)
        reference = frame.drop(columns=columns[4:] if frame.Train_accuracy_original.notna().any()
                               else columns[3:])
        results.write_csv(reference, key.accuracy_csv, index=True)
        s, config = self.schedule, self.schedule.config(run)
        tidy = pd.DataFrame({**key.ids(), "seed": run.seed, "epoch": frame.epoch,
                             "train_acc_vs_corrupted": frame.Train_accuracy / 100,
                             "train_acc_vs_true": frame.Train_accuracy_original / 100,
                             "test_acc": frame.Test_accuracy / 100,
                             "train_acc_rule": self.rule(run), "finished": finished,
                             "train_acc_running": frame.Train_accuracy_running / 100,
                             "train_acc_post_epoch": frame.Train_accuracy_post_epoch / 100,
                             "label_seed": run.label_seed, "subset": self.n_images,
                             "holdout": s.holdout, "n_test": len(self.test_split),
                             "shuffle": s.shuffle, "bf16": s.bf16, "tf32": s.tf32,
                             "batch": config["batch"], "init": s.init, "scaling": s.scaling,
                             "epoch_cap": s.epochs, "epochs_trained": len(frame)})
        results.write_csv(tidy, key.training_csv)


def _finished(session, run, state):
    """A run already trained to its stop: make sure its checkpoint loads and its CSVs hold the
    whole history (a process killed after the last progress save may have left either short),
    writing them again from the saved progress where they do not; returns the checkpoint."""
    key = run.key(session.out)
    final = key.checkpoint(state["epoch"])
    try:
        torch.load(final, map_location="cpu", weights_only=True)
    except Exception:  # missing or corrupt: written again from the saved progress
        results.save_checkpoint(state["model"], key.folder, state["epoch"])
    if (_rows(key.accuracy_csv) != len(state["history"])
            or _rows(key.training_csv, finished=True) != len(state["history"])):
        session.write_history(run, state["history"], finished=True)
    return final


def _rows(path, finished=False):
    """Rows of a CSV (with ``finished``: only if it says the run finished), else -1."""
    try:
        frame = pd.read_csv(path)
    except Exception:  # missing, truncated or garbage: to be written again
        return -1
    if finished and not ("finished" in frame and frame.finished.eq(True).all()):
        return -1
    return len(frame)


def train(runs, *, out=".", root=None, device="auto", graphs=None, stack=None, progress=True,
          log=tqdm.write, schedule=None, **fields):
    """Train ``runs`` (one dataset and model, any corruption degrees and seeds) to the reference
    stop rule, resuming from saved progress; returns ``{run: final checkpoint path}``.

    ``schedule``: a :class:`Schedule` (default: the defaults), with ``fields`` of it replaced
    (epochs, subset, test_subset, shuffle, ...);
    ``graphs``: capture the step as a CUDA graph; ``stack``: train the runs together as one stack
    (both default to on with CUDA; on a CPU, stacking saves nothing and runs go one by one)."""
    if not runs:
        return {}
    if len({(r.dataset, r.model) for r in runs}) != 1:
        raise MASCError("one training call takes one dataset and one model")
    schedule = replace(schedule or Schedule(), **fields)
    dataset, model = runs[0].dataset, runs[0].model
    spec = data.info(dataset)
    models.check_name(model)
    device = pick_device(device)
    set_precision(device, schedule.tf32)
    train_split = data.load(dataset, root, train=True)
    if schedule.subset is not None and not 0 < schedule.subset <= len(train_split):
        raise MASCError(f"--subset must be between 1 and {len(train_split)}, got {schedule.subset}")
    if not 0 <= schedule.holdout < 1:
        raise MASCError(f"--holdout must be a share in [0, 1), got {schedule.holdout}")
    true_labels = train_split.labels.numpy()
    train_split = train_split.first(schedule.subset)
    n = len(train_split)
    holdout = holdout_rows(n, schedule.holdout)
    kept = np.setdiff1d(np.arange(n), holdout)
    if not len(kept):
        raise MASCError(f"--holdout {schedule.holdout} of {n} training images leaves none to "
                        f"train on; use a smaller share")
    test_split = data.load(dataset, root, train=False).first(schedule.test_subset)
    session = _Session(out, schedule, train_split.take(kept).to(device), test_split.to(device),
                       n, device.type == "cuda" if graphs is None else graphs, progress, log)
    done, todo = {}, []
    with contextlib.ExitStack() as locks:
        locks.enter_context(stopping.deferred())  # SIGTERM/USR2/INT: save at the epoch's end
        for run in runs:  # one process per run folder at a time
            locks.enter_context(results.lock(session.folder(run), wait=False, what="trained"))
        for run in runs:
            state = session.load_progress(run)
            labels = RunLabels.of_run(true_labels, run.corrupt, spec.num_classes, run.label_seed,
                                      schedule.subset, schedule.holdout)
            labels.save(run.key(out).labels)
            if state and (state["reached_target"] or state["epoch"] >= schedule.epochs):
                done[run] = _finished(session, run, state)
                log(f"{dataset} {model} p={run.corrupt} run {run.run}: already trained "
                    f"({state['epoch']} epochs), checkpoint {done[run]}")
            else:
                todo.append((run, state, torch.as_tensor(labels.corrupted[kept])))

        def start_epoch(member):
            return member[1]["epoch"] if member[1] else 0

        stack = device.type == "cuda" if stack is None else stack
        for start, members in groupby(sorted(todo, key=start_epoch), key=start_epoch):
            members = list(members)
            for group in [members] if stack else [[m] for m in members]:
                done.update(_train_group(group, start, session))
    return done


def _save_and_stop(session, group, histories, epoch, start):
    """A stop signal arrived: save the progress of every run still training, then stop."""
    if epoch > start:  # else nothing was trained since the progress was loaded
        for k, run in enumerate(group.runs):
            session.save(group, k, epoch, histories[run], False, False)
    session.log(f"{stopping.requested()}: progress saved after {epoch} epochs; run the same "
                f"command again to resume")
    stopping.stop()


def _train_group(members, start, session):
    """Train runs that resume from the same epoch together, each until its own stop."""
    schedule, device = session.schedule, session.train_split.images.device
    runs, nets = [m[0] for m in members], []
    for run, state, _ in members:
        torch.manual_seed(run.seed)
        net = models.build(run.model, run.dataset)
        if schedule.init == "glorot":
            glorot_init(net)
        if state:
            net.load_state_dict(state["model"])
        nets.append(net.to(device))
    labels = torch.stack([m[2] for m in members]).to(device)
    group = Trainer(runs, nets, labels, session.train_split, states=[m[1] for m in members],
                    graphs=session.graphs, bf16=schedule.bf16, batch=schedule.train_batch,
                    scaling=schedule.scaling)
    histories = {run: list(state["history"]) if state else [] for run, state, _ in members}
    rule, target = stop_rule(runs[0].model, runs[0].dataset, schedule.stop_on)
    # the post-epoch pass runs under that rule and for every model whose reference rule it is
    post_epoch = "post-epoch" in (rule, stop_rule(runs[0].model, runs[0].dataset)[0])
    finished = {}
    what = f"{runs[0].dataset} {runs[0].model}" + (
        f" p={runs[0].corrupt} run {runs[0].run}" if len(runs) == 1 else f" x{len(runs)} runs")
    bar = tqdm(desc=what, unit="epoch", disable=not session.progress, initial=start,
               total=schedule.epochs)
    for epoch in range(start, schedule.epochs):
        if stopping.requested():
            _save_and_stop(session, group, histories, epoch, start)
        tic = time.perf_counter()
        running = group.train_epoch(epoch, schedule.shuffle)
        post = train_true = [math.nan] * len(group.runs)
        if post_epoch:  # one pass over the training set, scored against both labellings
            predicted = group.predict(session.train_split)
            post = percent_correct(predicted, group.labels)
            train_true = percent_correct(predicted, session.train_split.labels)
        train_acc = post if rule == "post-epoch" else running
        test_acc = group.evaluate(session.test_split)
        seconds = time.perf_counter() - tic
        stopped = []
        for k, run in enumerate(group.runs):
            histories[run].append((epoch + 1, train_acc[k], test_acc[k], train_true[k], running[k],
                                   post[k]))
            reached = train_acc[k] >= target
            if reached or epoch + 1 == schedule.epochs:
                stopped.append(k)
                finished[run] = session.save(group, k, epoch + 1, histories[run], True, reached)
            elif (epoch + 1) % schedule.save_every == 0:
                session.save(group, k, epoch + 1, histories[run], False, False)
        if len(group.runs) == 1:
            bar.set_postfix(train=f"{train_acc[0]:.2f}", test=f"{test_acc[0]:.2f}")
        else:
            images = (len(session.train_split) + len(session.test_split)) * len(group.runs)
            bar.set_postfix(active=len(group.runs), best_test=f"{max(test_acc):.1f}",
                            img_s=f"{images / seconds:,.0f}")
        bar.update()
        for k in stopped:
            run = group.runs[k]
            session.log(f"{run.dataset} {run.model} p={run.corrupt} run {run.run}: stopped after "
                        f"{epoch + 1} epochs (train {train_acc[k]:.2f}%, test {test_acc[k]:.2f}%)")
        if stopped:
            keep = [k for k in range(len(group.runs)) if k not in stopped]
            if not keep:
                break
            group.keep(keep)
    bar.close()
    return finished
