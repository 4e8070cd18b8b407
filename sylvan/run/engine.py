"""The training engine: sylvan's own loop over minibatches, on Lightning Fabric.

Fabric brings what a research framework should not write itself: accelerators, precision
(`32-true`, `bf16-mixed`, `16-mixed` with its loss scaling), the data-parallel strategies (DDP,
and `ddp_rehearsal`: `sylvan.parallel.rehearsal_ddp`) and cluster environments (torchrun,
SLURM). The loop is sylvan's: per minibatch, in the order a supervised method's hooks expect,

    callbacks' minibatch_started -> the method's loss -> zero grad -> backward
    -> (unscale) -> the method's after_backward -> optimizer step -> callbacks' minibatch_ended
    -> the method's after_step -> a per-step learning-rate schedule's step

and per epoch a per-epoch schedule's step. One `Engine` serves a whole run (every fit of every
stage); the run context makes it when a method first trains, so that a data-parallel run starts
its workers then (`sylvan.parallel.launcher`), with the replay channel its method asked for.

A loop a method owns (an agent acting and learning, a meta-learner's inner and outer loops)
runs on the same trigger points through `Engine.loop`: each of its steps, declared with
`MethodLoop.step(kind)`, reaches the callbacks, the training log, the progress bar and the FLOP
count as a minibatch of a fit does.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import nn

from sylvan.run.callbacks import Callback, Fit
from sylvan.run.training_log import ProgressBar, TrainingLog


def step_overflowed(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> bool:
    """Whether `scaler` will skip `optimizer`'s step, its gradients having overflowed under the
    loss scale (the scaler then lowers the scale): False, without a check, where there is no
    scaler. A method's hooks around the step must then record nothing of it: its gradients are not
    the loss's, and the weights do not move.

    Called after `scaler.unscale_(optimizer)`, which has found the overflow already (one fused
    check over every gradient): this reads its finding, a wait for the device that the scaler's
    own step then makes anyway, instead of checking each parameter's gradient again."""
    if scaler is None:
        return False
    found = scaler._found_inf_per_device(optimizer)  # torch.amp.GradScaler's record of unscale_
    if not found:
        raise RuntimeError("step_overflowed(optimizer, scaler) needs scaler.unscale_(optimizer) first")
    return bool(sum(float(flag) for flag in found.values()))


COMPILE_OPTIONS: dict[str, Any] = {}  # what `compile_in_place` hands `torch.compile` (its defaults)
COMPILED: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # the modules `compile_in_place` compiled


def compile_in_place(network: nn.Module) -> None:
    """`torch.compile` `network`'s feature layers (`network.features`), where its compute is and
    which methods also call directly, or its whole forward where it has none: in place
    (`nn.Module.compile`), so that the network, its parameters, its state dict and every caller
    stay as they are. Once per module: compiling it again changes nothing."""
    features = getattr(network, "features", None)
    target = features if isinstance(features, nn.Module) else network
    if target not in COMPILED:
        target.compile(**COMPILE_OPTIONS)
        COMPILED.add(target)


class HeldBatch:
    """A minibatch handed through Fabric's module wrapper as the loader served it. The wrapper
    converts the floating-point tensors of what it is given to the precision's input dtype
    (bfloat16 under `bf16-mixed`), and would do so only with several workers, where the loss goes
    through DDP's forward: a minibatch kept in an object the wrapper does not look into reaches
    the method alike in one process and under DDP, its inputs cast by autocast alone."""

    __slots__ = ("batch",)

    def __init__(self, batch: Any) -> None:
        self.batch = batch


def planned_steps(loader: Any, epochs: int) -> float:
    """The optimizer steps of a fit of `epochs` over `loader` (inf where it has no length)."""
    try:
        return len(loader) * epochs
    except TypeError:
        return math.inf


class Engine:
    """The devices, precision and strategy of one run, and the loop that trains on them.

    `accelerator`, `precision`: as `--accelerator` and `--precision` say; `parallel`: the run's
    data-parallel part (`sylvan.parallel.data_parallel.DataParallel`), or None in one process;
    `loggers`: where each fit's training log goes; `progress_bar`: a bar per fit; `compile`: the
    networks of the fits compiled (`compile_in_place`)."""

    def __init__(self, accelerator: str, precision: str, parallel: Any = None, loggers: Sequence[Any] = (),
                 progress_bar: bool = False, compile: bool = False) -> None:
        from sylvan.parallel.fabric_package import fabric

        Fabric = fabric().Fabric
        self.parallel = parallel
        accelerator = "gpu" if accelerator == "cuda" else accelerator
        if parallel is None:
            self.fabric = Fabric(accelerator=accelerator, devices=1, precision=precision)
        else:
            self.fabric = Fabric(accelerator="gpu" if parallel.on_cuda else "cpu", devices=parallel.devices,
                                 num_nodes=parallel.num_nodes, precision=precision, strategy=parallel.strategy())
        # what `Fabric.autocast` enters (autocast under mixed precision), without its wrapping
        self.forward_context = self.fabric.strategy.precision.forward_context
        self.log = TrainingLog(loggers)
        self.progress = ProgressBar(self.log) if progress_bar and (parallel is None or parallel.rank == 0) else None
        self.launched = False
        self.compile = compile
        self.current_fit: Fit | None = None  # the fit under way (None between fits)
        self.current_loop: MethodLoop | None = None  # the loop of a method's own under way, if any
        # the learners set up on the run's strategy: id -> (learner, its parameters then, as wrapped)
        self.set_up: dict[int, tuple[nn.Module, tuple[Any, ...], Any]] = {}

    # ----- set-up -----------------------------------------------------------------------

    def launch(self) -> None:
        """Join (and, where this process starts them, start) the run's workers; once."""
        if self.launched:
            return
        if self.parallel is not None:
            self.parallel.start_workers(self.fabric.strategy.cluster_environment)
        self.fabric.launch()
        if self.parallel is not None:
            self.parallel.workers_joined()
        self.launched = True

    @property
    def device(self) -> torch.device:
        """Where this worker trains."""
        return self.fabric.device

    @property
    def optimizer(self) -> Any:
        """The optimizer of the fit under way; None between fits."""
        return None if self.current_fit is None else self.current_fit.optimizer

    @property
    def loss_scaler(self) -> torch.amp.GradScaler | None:
        """The gradient scaler of float16 mixed precision (`16-mixed`); None under the others."""
        scaler = getattr(self.fabric.strategy.precision, "scaler", None)
        return scaler if scaler is not None and scaler.is_enabled() else None

    def setup(self, module: nn.Module, *optimizers: torch.optim.Optimizer) -> Any:
        """`module` (and its optimizers) set up on this run's device, precision and strategy,
        for a method that trains a network in a loop of its own (an expert, a candidate, fast
        weights, an agent's networks): what `Fabric.setup` gives (in one process, the module's
        wrapper without the per-call check, `sylvan.parallel.one_process`)."""
        self.launch()
        set_up = self.fabric.setup(module, *optimizers)
        if self.parallel is None:  # one process: the forward pass without Fabric's per-call check
            from sylvan.parallel.one_process import lighten

            lighten(set_up[0] if optimizers else set_up)
        return set_up

    def setup_optimizers(self, *optimizers: torch.optim.Optimizer) -> Any:
        """Optimizers of parameters outside any network set up, wrapped as `Fabric.setup_optimizers`
        wraps them (their step at the run's precision)."""
        self.launch()
        return self.fabric.setup_optimizers(*optimizers)

    def backward(self, loss: torch.Tensor) -> None:
        """`loss.backward()` under the run's precision (scaled under `16-mixed`) and strategy."""
        self.fabric.backward(loss)

    def clip_gradients(self, module: Any, optimizer: Any, max_norm: float) -> Any:
        """`Fabric.clip_gradients` to a total norm of `max_norm` (unscaled first under `16-mixed`);
        non-finite gradients are clipped as torch clips them, not refused."""
        return self.fabric.clip_gradients(module, optimizer, max_norm=max_norm, error_if_nonfinite=False)

    # ----- the loop ---------------------------------------------------------------------

    def fit(self, learner: nn.Module, loader: Any, epochs: int, optimizer_of: Callable[[Any, float], Any],
            callbacks: Sequence[Callback] = (), local: bool = False) -> None:
        """Train `learner` (a `sylvan.methods.core.learner.Learner`) for `epochs` over `loader`,
        with the optimizer (and schedule) `optimizer_of(parameters, planned_steps)` gives: a
        torch optimizer, or a dict of it and {"scheduler", "interval": "step" or "epoch"}.
        `local`: this worker alone trains `learner`, on the whole of `loader`, with no gradient
        exchanged (an expert or a candidate of its own, among several that workers share out)."""
        self.launch()
        data_parallel = self.parallel is not None and not local
        shard = self.parallel.shard(loader) if data_parallel else loader
        fit = Fit(loader=shard, epochs=epochs, planned_steps=planned_steps(shard, epochs))
        # no minibatch asked for past the loader's length: a shuffling sampler draws its next
        # order when asked past its end, from a generator that may be the loader's own across fits
        per_epoch = None if math.isinf(fit.planned_steps) else len(shard)
        # the batches on the run's device (on the CPU they are already there), through the
        # strategy's wrapping (the replay exchange of `ddp_rehearsal`), each epoch's sampler told its epoch
        loader = self.fabric.setup_dataloaders(shard, use_distributed_sampler=False,
                                               move_to_device=self.device.type != "cpu")
        learner.to(self.device)
        optimizer, schedule, interval = _optimizer_and_schedule(optimizer_of(learner.model.parameters(),
                                                                             fit.planned_steps))
        if data_parallel or self.parallel is None:
            module, optimizer = self.learner_set_up(learner), self.fabric.setup_optimizers(optimizer)
        else:  # not wrapped by DDP: its gradients stay this worker's
            module, optimizer = learner, self.fabric.setup_optimizers(optimizer)
        fit.optimizer = optimizer
        self.current_fit = fit
        self.log.schedule = schedule
        callbacks = [*callbacks, self.log, *([self.progress] if self.progress else [])]
        step = self._step_parts(learner, module, optimizer, callbacks, data_parallel)
        learner.zero_grad()
        for callback in callbacks:
            callback.fit_started(fit)
        try:
            for fit.epoch in range(epochs):
                for callback in callbacks:
                    callback.epoch_started(fit)
                for batch in itertools.islice(loader, per_epoch):
                    self.train_on(step, batch, fit)
                    if schedule is not None and interval == "step":
                        schedule.step()
                    fit.step += 1
                if schedule is not None and interval == "epoch":
                    schedule.step()
            learner.fit_ended()
            for callback in callbacks:
                callback.fit_ended(fit)
        finally:
            self.current_fit = None

    @contextmanager
    def loop(self, planned_steps: float, unit: str, callbacks: Sequence[Callback] = (),
             first_step: int | None = None) -> Iterator[MethodLoop]:
        """A loop of a method's own, on the engine's trigger points: `callbacks` (the run's:
        `RunContext.fit_callbacks`), then the training log and the progress bar, told it starts,
        of each step the method declares (`MethodLoop.step`), and that it ended. `planned_steps`
        counts its steps of kind `unit` (environment steps, say), which the progress bar shows and
        `Fit.step` counts; the training log is written at that count, from `first_step` on where
        given (an agent's: the stream's environment steps before the loop)."""
        if self.current_loop is not None:
            raise RuntimeError("a method's loop is already under way: declare its steps on it (MethodLoop.step)")
        self.launch()
        fit = Fit(loader=None, epochs=1, planned_steps=planned_steps, unit=unit, first_step=first_step)
        callbacks = [*callbacks, self.log, *([self.progress] if self.progress else [])]
        loop = MethodLoop(fit, _overriding(callbacks, "minibatch_started"), _overriding(callbacks, "minibatch_ended"))
        for callback in callbacks:
            callback.fit_started(fit)
        self.current_loop = loop
        try:
            yield loop
        finally:
            self.current_loop = None
        for callback in callbacks:
            callback.fit_ended(fit)

    def learner_set_up(self, learner: nn.Module) -> Any:
        """`learner` as the run's strategy wraps it (`Fabric.setup_module`: DDP with several
        workers), set up once per run and again only where its parameters changed since (a part
        grown or frozen: DDP reduces the gradients of the parameters it was made with)."""
        parameters = tuple((id(p), p.requires_grad) for p in learner.parameters())
        held = self.set_up.get(id(learner))
        if held is None or held[0] is not learner or held[1] != parameters:
            if self.compile:
                compile_in_place(learner.model)
            held = (learner, parameters, self.fabric.setup_module(learner))
            self.set_up[id(learner)] = held
        return held[2]

    def _step_parts(self, learner: Any, module: Any, optimizer: Any, callbacks: Sequence[Callback],
                    data_parallel: bool) -> StepParts:
        """What each step of a fit calls. With several workers the method's loss goes through
        DDP's forward, which DDP must see to reduce the gradients, and the backward pass through
        `Fabric.backward`, which the wrapped forward checks. In one process the learner's loss is
        called as it is, with what Fabric's module wrapper adds there (the precision's conversion
        of the loss) and without its per-call bookkeeping (a hook on every loss that checks that
        the backward pass goes through Fabric), and the backward pass through the strategy's, as
        `Fabric.backward` calls it (so too a worker's fit of its own, `local`)."""
        if data_parallel:
            module.mark_forward_method("held_batch_loss")
            held_batch_loss = module.held_batch_loss  # looked up once for the fit

            def loss_of(batch: Any) -> torch.Tensor:
                return held_batch_loss(HeldBatch(batch))
            backward = self.fabric.backward
            optimizer_step = optimizer.step
        else:
            strategy = self.fabric.strategy
            convert_output = strategy.precision.convert_output
            minibatch_loss = learner.minibatch_loss

            def loss_of(batch: Any) -> torch.Tensor:
                return convert_output(minibatch_loss(batch))
            strategy_backward, strategy_step, wrapped = strategy.backward, strategy.optimizer_step, optimizer.optimizer

            def backward(loss: torch.Tensor) -> None:
                strategy_backward(loss, None)

            def optimizer_step() -> None:  # what Fabric's optimizer wrapper calls (it has no callbacks here)
                strategy_step(wrapped)
        return StepParts(learner, loss_of, backward, optimizer, optimizer_step, self.loss_scaler,
                         _overriding(callbacks, "minibatch_started"), _overriding(callbacks, "minibatch_ended"))

    def train_on(self, step: StepParts, batch: Any, fit: Fit) -> None:
        """One optimizer step on `batch`, with the callbacks and the method's hooks around it."""
        fit.batch_size = len(batch[1]) if isinstance(batch, (list, tuple)) and len(batch) > 1 else 1
        for started in step.started:
            started(fit, batch)
        with self.forward_context():
            loss = step.loss_of(batch)
        optimizer = step.optimizer
        optimizer.optimizer.zero_grad()  # the optimizer's own: Fabric's wrapper forwards it, attribute by attribute
        step.backward(loss)
        if step.scaler is not None:  # the method's hooks see the gradients at their true size
            step.scaler.unscale_(optimizer.optimizer)
        skipped = step_overflowed(optimizer.optimizer, step.scaler)
        step.learner.gradients_ready(skipped)
        step.optimizer_step()
        fit.loss = loss
        for ended in step.ended:
            ended(fit)
        step.learner.minibatch_trained(skipped)


class StepRecord:
    """What a step of a method's loop reports: its loss (a tensor or a number), if it has one."""

    __slots__ = ("loss",)

    def __init__(self) -> None:
        self.loss: Any = None


class MethodLoop:
    """A loop a method owns, under way (`Engine.loop`): its steps go through the trigger points."""

    def __init__(self, fit: Fit, started: tuple[Callable[..., None], ...], ended: tuple[Callable[..., None], ...]):
        self.fit, self.started, self.ended = fit, started, ended
        self.in_step = False

    def step(self, kind: str, batch: Any = None, batch_size: int = 1, units: int = 1) -> LoopStep:
        """One step of kind `kind` (the work inside the `with`), on `batch` where it trains on one
        of the stream's minibatches (`batch_size` samples): the callbacks' `minibatch_started`
        before it, their `minibatch_ended` after it, with the loss the step reported (none where
        the work raised). A step of the loop's unit counts `units` of it (an action in each of n
        environments stepped together: n environment steps)."""
        return LoopStep(self, kind, batch, batch_size, units)


class LoopStep:
    """The context of one `MethodLoop.step` (a class, not a generator: an agent enters two a step)."""

    __slots__ = ("loop", "kind", "batch", "batch_size", "units", "record")

    def __init__(self, loop: MethodLoop, kind: str, batch: Any, batch_size: int, units: int) -> None:
        self.loop, self.kind, self.batch, self.batch_size, self.units = loop, kind, batch, batch_size, units

    def __enter__(self) -> StepRecord:
        loop, kind = self.loop, self.kind
        if loop.in_step:
            raise RuntimeError(f"a {kind!r} step started inside a {loop.fit.kind!r} step: "
                               "a loop's steps follow each other")
        fit = loop.fit
        fit.kind, fit.batch_size, fit.loss, fit.units = kind, self.batch_size, None, self.units
        self.record = StepRecord()
        loop.in_step = True
        try:
            for started in loop.started:
                started(fit, self.batch)
        except BaseException:
            loop.in_step = False
            raise
        return self.record

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        loop = self.loop
        loop.in_step = False
        if error is not None:
            return
        fit = loop.fit
        fit.loss = self.record.loss
        for ended in loop.ended:
            ended(fit)
        if self.kind == fit.unit:
            fit.step += self.units


class StepParts(NamedTuple):
    """What each step of one fit calls (`Engine.train_on`), looked up once per fit."""

    learner: Any
    loss_of: Callable[[Any], torch.Tensor]  # the method's loss of a minibatch
    backward: Callable[[torch.Tensor], None]
    optimizer: Any  # Fabric's wrapper of the fit's optimizer
    optimizer_step: Callable[[], None]  # its step, as Fabric's strategy takes it
    scaler: Any  # the loss scaler of 16-mixed, or None
    started: tuple[Callable[..., None], ...]  # the callbacks' `minibatch_started` that do something
    ended: tuple[Callable[..., None], ...]  # and their `minibatch_ended`


def _overriding(callbacks: Sequence[Callback], trigger: str) -> tuple[Callable[..., None], ...]:
    """The callbacks' methods for `trigger`, leaving out those that do nothing (`Callback`'s)."""
    does_nothing = getattr(Callback, trigger)
    methods = (getattr(callback, trigger) for callback in callbacks)
    return tuple(method for method in methods if getattr(method, "__func__", None) is not does_nothing)


def _optimizer_and_schedule(configured: Any) -> tuple[Any, Any, str]:
    """The optimizer, schedule (or None) and its interval, from what a method configured."""
    if isinstance(configured, dict):
        schedule = configured.get("lr_scheduler")
        if isinstance(schedule, dict):
            return configured["optimizer"], schedule["scheduler"], schedule.get("interval", "epoch")
        return configured["optimizer"], schedule, "epoch"
    return configured, None, "epoch"
