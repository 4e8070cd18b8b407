"""What a run costs, measured as it goes: training and inference FLOPs, and the bytes a method
keeps.

Compute (`ComputeAccount`): FLOPs are counted by torch's formulas (matrix products,
convolutions and attention: the operations `torch.utils.flop_counter` has formulas for;
`sylvan.run.flop_count`). Counting every operation would slow a run several times over (a
counted step of the digits MLP takes about three times an uncounted one), so inside each fit
only sampled training steps are counted: one in `SAMPLE_EVERY`, from the fit's second step (the
first of a stream finds the buffer empty), and every step whose batch is smaller than the fit's
first (an epoch's last), each whole: the forward and backward passes of every network the step
runs (the method's, a teacher's, candidates'), the replay's and the buffer's work. A fit's FLOPs
are its smaller steps' plus the sampled full steps' mean times the full steps. What a stage
computes outside fits (where a task ends: Fisher information, herding, bias correction; a
method's own training loop) is counted whole. The online accuracy meter's predictions are not training and are left out.
Inference FLOPs per sample are counted by the evaluation after each stage, on the first batch
of every task's test set (a method may run more for some tasks: a column per task, experts).
A method's own loop of many small steps (reinforcement learning's acting and learning, a
meta-learner's adaptations and meta-updates: `Engine.loop`) has its steps counted by kind, in
strata: the first step of a kind is counted, then one in `SAMPLE_EVERY`, the gap doubling after
every `CALLS_PER_GAP` counted steps (a run of 50,000 environment steps counts 66 of its
actions, not 1,000: a counted step of a small network costs tens of uncounted ones), and each
counted step stands for the steps up to the next counted one, so that FLOPs that change along
the stream (epsilon-greedy acting, a network that grows) are weighted by how long they held
(where the stage counts what it computes whole, the steps fall in that count); inference FLOPs
per observation are counted on the evaluation's first step of every task.
The environment variable `SYLVAN_COUNT_FLOPS=0` turns the training count off (its figures are
then 0), for measuring what counting costs (`benchmarks/cost_overhead.py`).

Memory (`memory_account`): the bytes of every tensor a method holds, each storage once: the
network it predicts with (`method.model`), and everything it keeps beyond it (stored samples at
their stored dtype, logits, features, teacher copies, importance, anchors, projection bases,
masks, other networks, optimizer moments it keeps between tasks). Random generators' states and
the run's data are not counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from sylvan.run.callbacks import Callback, Fit
from sylvan.run.flop_count import FlopCount

SAMPLE_EVERY = 50  # one full step in this many is counted
CALLS_PER_GAP = 10  # counted steps of a method's loop, of one kind, between doublings of the gap


class CallStrata:
    """The sampled steps of one kind in a method's loop: step `due` starts a stratum and is
    counted; the gap to the next is `SAMPLE_EVERY`, doubled after every `CALLS_PER_GAP` counted
    steps; the kind's FLOPs are each counted step's times the steps of its stratum (exact where
    the steps of a stratum cost the same)."""

    __slots__ = ("made", "due", "strata", "flops", "last")

    def __init__(self) -> None:
        self.made = 0  # steps started
        self.due = 0  # the index of the next step to count
        self.strata = 0  # counted steps
        self.flops = 0.0  # the FLOPs of the strata closed so far
        self.last: tuple[int, float] | None = None  # (index, FLOPs) of the last counted step: its stratum is open

    def started(self) -> bool:
        """A step starts; whether it is to be counted."""
        index, self.made = self.made, self.made + 1
        return index >= self.due

    def counted(self, flops: float) -> None:
        """The step just started was counted: `flops`. It closes the open stratum, opens its own."""
        index = self.made - 1
        if self.last is not None:
            self.flops += self.last[1] * (index - self.last[0])
        self.last = (index, flops)
        self.due = index + SAMPLE_EVERY * 2 ** (self.strata // CALLS_PER_GAP)
        self.strata += 1

    def estimate(self) -> float:
        """The FLOPs of every step so far: the open stratum reaches to the last step."""
        if self.last is None:
            return self.flops
        return self.flops + self.last[1] * (self.made - self.last[0])


class ComputeAccount:
    """The FLOPs of a run, stage by stage (see the module's docstring). The run loop calls
    `start_stage` and `end_stage` around each training stage; every Trainer of the run carries
    `callback()`, which counts sampled steps and pauses the whole-stage count during fits."""

    def __init__(self) -> None:
        self.active = False  # inside a training stage of the run (not a fit outside one: a script's, a test's)
        self.outside: FlopCount | None = None  # the count of what a stage computes outside fits
        self.step: FlopCount | None = None  # the count of a sampled step
        self.stage_outside = 0
        self.fit_steps = 0  # full steps of the current fit
        self.fit_sampled = (0, 0)  # (steps, FLOPs) of the full steps counted in the current fit
        self.fit_smaller = 0  # FLOPs of the current fit's steps on smaller batches, all counted
        self.fit_batch = 0  # the batch size of the current fit's first step
        self.step_is_smaller = False
        self.stage_fits = 0.0  # the stage's fits, estimated from their sampled steps
        self.calls: dict[str, CallStrata] = {}  # kind of call -> its sampled strata
        self.call_count: FlopCount | None = None  # the count of the sampled call under way

    def start_stage(self, whole: bool = True) -> None:
        """A training stage starts. `whole`: count what it computes outside fits and
        `call`s whole (supervised runs); else only its sampled steps and calls (a method's own
        loop of many small steps, reinforcement learning's)."""
        self.stage_outside, self.stage_fits, self.calls = 0, 0.0, {}
        self.active = os.environ.get("SYLVAN_COUNT_FLOPS", "1") != "0"
        if not self.active or not whole:
            return
        self.outside = FlopCount()

    def end_stage(self) -> float:
        """The stage's training FLOPs."""
        if self.outside is not None:
            self.stage_outside += self.outside.stop()
            self.outside = None
        self.active = False
        calls = sum(strata.estimate() for strata in self.calls.values())
        return float(self.stage_outside + self.stage_fits + calls)

    def call_started(self, kind: str) -> None:
        """One of a stage's many steps of `kind` (an action chosen, a gradient step) starts in a
        method's own loop: counted where its stratum starts (`CallStrata`). Outside a counted
        stage, nothing."""
        if not self.active:
            return
        strata = self.calls.get(kind)
        if strata is None:
            strata = self.calls[kind] = CallStrata()
        if strata.started() and self.outside is None and self.step is None:  # else counted whole
            self.call_count = FlopCount()

    def call_ended(self, kind: str) -> None:
        """The step of `kind` that `call_started` began has ended."""
        if self.call_count is None:
            return
        flops, self.call_count = self.call_count.stop(), None
        self.calls[kind].counted(flops)

    def abandon(self) -> None:
        """Leave any count open (a stage that raised)."""
        for counting in (self.step, self.outside, self.call_count):
            if counting is not None:
                counting.stop()
        self.step = self.outside = self.call_count = None
        self.active = False

    # ----- inside a fit (the callback) -----------------------------------------------------

    def fit_started(self) -> None:
        if not self.active:
            return
        if self.outside is not None:
            self.stage_outside += self.outside.stop()
            self.outside = None
        self.fit_steps, self.fit_sampled, self.fit_smaller, self.fit_batch = 0, (0, 0), 0, 0

    def fit_ended(self) -> None:
        if not self.active:
            return
        steps, flops = self.fit_sampled
        self.stage_fits += self.fit_smaller + (flops * self.fit_steps / steps if steps else 0)
        self.outside = FlopCount()

    def step_started(self, batch_size: int, planned_steps: float) -> None:
        """A training step on `batch_size` samples starts, of a fit of `planned_steps` (inf
        where unknown)."""
        if not self.active:
            return
        self.fit_batch = self.fit_batch or batch_size
        self.step_is_smaller = batch_size < self.fit_batch
        first = 1 if planned_steps > 1 else 0
        index = self.fit_steps
        if self.step_is_smaller or (index >= first and (index - first) % SAMPLE_EVERY == 0):
            self.step = FlopCount()

    def step_ended(self) -> None:
        if not self.active:
            return
        flops = None if self.step is None else self.step.stop()
        self.step = None
        if self.step_is_smaller:
            self.fit_smaller += flops or 0
            return
        self.fit_steps += 1
        if flops is not None:
            steps, counted = self.fit_sampled
            self.fit_sampled = (steps + 1, counted + flops)

    def callback(self) -> Any:
        """The training loop's callback that tells this account of fits and steps; it is the
        last of a fit's callbacks, so that the others' work before a step (the online meter's
        predictions) falls outside the step's count."""
        return CountCompute(self)


class CountCompute(Callback):
    """Counts a run's training FLOPs on sampled steps (`ComputeAccount`)."""

    def __init__(self, account: ComputeAccount) -> None:
        self.account = account

    def fit_started(self, fit: Fit) -> None:
        if not fit.method_loop:  # a method's loop leaves the stage's whole count running, if any
            self.account.fit_started()

    def fit_ended(self, fit: Fit) -> None:
        if not fit.method_loop:
            self.account.fit_ended()

    def minibatch_started(self, fit: Fit, batch: Any) -> None:
        if fit.method_loop:
            self.account.call_started(fit.kind)
        else:
            self.account.step_started(fit.batch_size, fit.planned_steps)

    def minibatch_ended(self, fit: Fit) -> None:
        if fit.method_loop:
            self.account.call_ended(fit.kind)
        else:
            self.account.step_ended()


# ----- memory ------------------------------------------------------------------------------

# where the walk of a method's attributes stops: the run and what it reaches (the setting, its
# data, the tracker), and objects that hold no state of the method's
_NOT_KEPT = ("sylvan.run.", "sylvan.settings.", "sylvan.parallel.")


def held_tensors(root: Any) -> Iterator[torch.Tensor]:
    """Every tensor `root` holds: tensors, the parameters and buffers of networks, an optimizer's
    state, and what containers and the objects of methods' own code (sylvan's methods, parts and
    buffers; the classes of the package that defines `root`'s class or one of its bases, a
    plugin's) hold in their public attributes (a name starting with "_" marks scratch space and
    caches, which a resumed run rebuilds as it needs them); not the run context and what it
    reaches, not random generators, not other libraries' objects."""
    packages = {"sylvan", *(_package(cls.__module__) for cls in type(root).__mro__)} - {"builtins"}
    seen: set[int] = set()
    pending = [root]
    while pending:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, nn.Module):
            yield from value.parameters()
            yield from value.buffers()
        elif isinstance(value, torch.optim.Optimizer):
            pending.extend(value.state.values())
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            pending.extend(value)
        elif _is_methods_object(value, packages):  # its public attributes, and a method's parts; "_" marks scratch
            pending.extend(v for name, v in vars(value).items() if not name.startswith("_") or name == "_parts")


def _package(module: str) -> str:
    return module.split(".", 1)[0]


def _is_methods_object(value: Any, packages: set[str]) -> bool:
    """Whether `value` is an object of methods' code: of a class defined in `packages` (sylvan's,
    or a plugin's), not the run's and what it reaches."""
    module = type(value).__module__
    return _package(module) in packages and not module.startswith(_NOT_KEPT) and hasattr(value, "__dict__")


def storage_bytes(tensors: Iterator[torch.Tensor], counted: set[int] | None = None) -> int:
    """The bytes of the storages behind `tensors`, each storage once (views share theirs);
    `counted` collects the storages seen, across calls."""
    counted = set() if counted is None else counted
    total = 0
    for tensor in tensors:
        storage = tensor.untyped_storage()
        key = storage.data_ptr() if storage.data_ptr() else id(storage)
        if key in counted or storage.nbytes() == 0:
            continue
        counted.add(key)
        total += storage.nbytes()
    return total


def memory_account(method: Any) -> dict[str, int]:
    """What `method` holds now, in bytes: "network", the network it predicts with
    (`method.model`: parameters and buffers such as batch-norm statistics), "kept", everything
    else it holds (see the module's docstring), and "parameters", the network's parameter count."""
    counted: set[int] = set()
    network = getattr(method, "model", None)
    network_bytes = storage_bytes(held_tensors(network), counted) if isinstance(network, nn.Module) else 0
    kept = storage_bytes(held_tensors(method), counted)
    parameters = sum(p.numel() for p in network.parameters()) if isinstance(network, nn.Module) else 0
    return {"network": network_bytes, "kept": kept, "parameters": parameters}


class TrainedParameters:
    """How many of the network's parameters a stage changed: a copy of them is taken when the
    stage starts and compared when it ends."""

    def __init__(self) -> None:
        self.before: list[torch.Tensor] | None = None

    def start(self, method: Any) -> None:
        network = getattr(method, "model", None)
        self.before = None if not isinstance(network, nn.Module) else [
            p.detach().clone() for p in network.parameters()]

    def count(self, method: Any) -> int | None:
        network = getattr(method, "model", None)
        if self.before is None or not isinstance(network, nn.Module):
            return None
        after = list(network.parameters())
        changed = sum(int((p.detach().to(b.device) != b).sum()) if p.shape == b.shape else p.numel()
                      for p, b in zip(after, self.before))
        grown = sum(p.numel() for p in after[len(self.before):])  # a network that grew: its new parameters
        self.before = None
        return changed + grown


def record_cost(results: Any, run: Any, method: Any, training_flops: float, inference_flops_per_sample: float | None,
                trained_parameters: int | None) -> None:
    """After a training stage: add its cost to `results` (`Results.cost`): the stage's training
    FLOPs (summed over the workers of a data-parallel run), the inference FLOPs per sample
    that the evaluation after it counted (`sylvan.run.evaluation`), what the method holds, and
    the parameters the stage changed."""
    if run.workers.connected:
        training_flops = float(run.workers.sum_to_cpu(torch.tensor([training_flops], dtype=torch.float64)))
    memory = memory_account(method)
    results.training_flops.append(training_flops)
    results.inference_flops_per_sample.append(inference_flops_per_sample or 0.0)
    results.network_bytes.append(memory["network"])
    results.kept_bytes.append(memory["kept"])
    results.parameters.append(memory["parameters"])
    results.trained_parameters.append(trained_parameters)
