"""The training log and the progress bar of the engine's fits and of a method's own loops.

The log hands the loss of every `LOG_EVERY`-th step to the run's loggers. Reading a loss that is
still being computed on a GPU makes the host wait for the device, a stall in the middle of the
step that the step itself never needs: in the engine's fits the log instead starts the loss's
copy to host memory (`HostCopy`: no wait) and writes each row once its copy has landed, at a
later logged step or, at the latest, when the fit ends. The rows, their steps and their values
are the same as an immediate read's; they reach the loggers a little later. A method's own loop
(an agent's interaction, a meta-learner's updates) writes each row at once: its rows interleave
with what else it logs at its step count (an agent's episodes), and such a loop waits for the
device at every action anyway.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch

from sylvan.run.callbacks import Callback, Fit

LOG_EVERY = 10  # the training log gets the loss of every 10th optimizer step of a fit


def loss_value(loss: Any) -> float:
    """A step's loss (a tensor, or a number a method's loop reported) as a number."""
    return float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)


class HostCopy:
    """A scalar tensor's value, on its way to host memory: from a CUDA device, copied without the
    host waiting for the device (into pinned memory, behind the work already queued, an event
    recorded after it); from anywhere else, the tensor itself."""

    __slots__ = ("value", "landed")

    def __init__(self, tensor: torch.Tensor) -> None:
        tensor = tensor.detach()
        if tensor.device.type == "cuda":
            self.value = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self.value.copy_(tensor, non_blocking=True)  # into page-locked memory: queued, not waited for
            self.landed: Any = torch.cuda.Event()
            self.landed.record()
        else:
            self.value, self.landed = tensor, None

    def ready(self) -> bool:
        """Whether reading the value now makes the host wait for nothing."""
        return self.landed is None or self.landed.query()

    def __float__(self) -> float:
        if self.landed is not None:
            self.landed.synchronize()
        return float(self.value)


class TrainingLog(Callback):
    """Hands the loss of every `LOG_EVERY`-th step with a loss of a fit (counted from 1; in the
    engine's fits every step has one), and where a schedule moves it the learning rate, to the
    run's loggers, at the fit's step count: in a method's own loop at once, in the engine's fits
    once the loss's copy to the host has landed (at the fit's end, whatever is still on its way)."""

    def __init__(self, loggers: Sequence[Any]) -> None:
        self.loggers = list(loggers)
        self.schedule: Any = None  # the fit's learning-rate schedule, if any
        self.losses = 0  # steps of the fit under way that had a loss
        self.latest: float | None = None  # the loss of the latest row written
        self.rows = 0  # rows written, over the run
        self.on_the_way: deque[tuple[int, dict[str, Any], HostCopy]] = deque()  # (step, metrics, loss)

    def fit_started(self, fit: Fit) -> None:
        self.losses = 0
        self.latest = None
        self.on_the_way.clear()  # rows of a fit that ended in an error, which never wrote them
        if fit.first_step is not None:  # a loop that continues the run's step count where it says
            for logger in self.loggers:
                logger.continue_at(fit.first_step)

    def minibatch_ended(self, fit: Fit) -> None:
        if fit.loss is None:
            return
        self.losses += 1
        if self.losses % LOG_EVERY:
            return
        metrics: dict[str, Any] = {}
        if self.schedule is not None:
            metrics["train/lr"] = fit.optimizer.param_groups[0]["lr"]
        metrics["epoch"] = fit.epoch
        if fit.method_loop or not isinstance(fit.loss, torch.Tensor):
            self.write(fit.step, metrics, loss_value(fit.loss))
            return
        self.on_the_way.append((fit.step, metrics, HostCopy(fit.loss)))
        self.write_landed(wait=False)

    def fit_ended(self, fit: Fit) -> None:
        self.write_landed(wait=True)

    def write_landed(self, wait: bool) -> None:
        """Write the rows whose loss has reached the host, in their order (`wait`: all of them)."""
        while self.on_the_way and (wait or self.on_the_way[0][2].ready()):
            step, metrics, loss = self.on_the_way.popleft()
            self.write(step, metrics, float(loss))

    def write(self, step: int, metrics: dict[str, Any], loss: float) -> None:
        self.latest, self.rows = loss, self.rows + 1
        row = {"train/loss": loss, **metrics}
        for logger in self.loggers:
            logger.log_metrics(row, step=step)


class ProgressBar(Callback):
    """A bar per fit on a terminal: its steps and the latest loss the training log wrote (read
    from it: the bar makes the host wait for the device no more than the log does)."""

    def __init__(self, log: TrainingLog) -> None:
        self.log = log
        self.shown = 0  # the log's rows when the bar last showed its latest loss

    def fit_started(self, fit: Fit) -> None:
        from tqdm import tqdm

        total = None if math.isinf(fit.planned_steps) else int(fit.planned_steps)
        self.bar = tqdm(total=total, unit="step", leave=False, dynamic_ncols=True, file=sys.stdout)
        self.shown = self.log.rows

    def minibatch_ended(self, fit: Fit) -> None:
        if fit.kind == fit.unit:  # a loop of its own advances by the steps its plan counts
            self.bar.update(fit.units)
        if self.log.rows != self.shown and self.log.latest is not None:
            self.shown = self.log.rows
            postfix = {"loss": f"{self.log.latest:.3f}"}
            self.bar.set_postfix(postfix if fit.method_loop else {**postfix, "epoch": fit.epoch}, refresh=False)

    def fit_ended(self, fit: Fit) -> None:
        self.bar.close()
