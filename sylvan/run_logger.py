"""The Lightning logger of a run: step metrics into the run's `logs/train.csv` (and W&B)."""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

if TYPE_CHECKING:
    from sylvan.tracking import Tracker


class RunLogger(Logger):
    """Lightning logger that appends step metrics to `logs/train.csv` (and to W&B), with a step
    counter that keeps growing across the per-task `Trainer`s of one run."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker
        self._offset = 0
        self._last_step = -1

    @property
    def name(self) -> str:
        return "sylvan"

    @property
    def version(self) -> str:
        return self.tracker.run_dir.name

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """The configuration is saved by the tracker itself."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = 0 if step is None else step
        # a new Trainer (next task) restarted its step counter; one Trainer logs a step once, so
        # the same step again is a new Trainer's too (each task's Trainer logging its step 0 alone)
        if step <= self._last_step:
            self._offset += self._last_step + 1
        self._last_step = step
        self.tracker.log_step(self._offset + step, dict(metrics))

    @property
    def next_step(self) -> int:
        """The run-wide step the next `Trainer`'s first logged step counts from."""
        return self._offset + self._last_step + 1

    def continue_at(self, step: int) -> None:
        """Resuming: count the next `Trainer`'s steps from `step` (a saved `next_step`)."""
        self._offset, self._last_step = step, -1
