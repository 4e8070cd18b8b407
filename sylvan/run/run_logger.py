"""The training log of a run: each fit's logged steps into the run's `logs/train.csv` (and W&B),
on one step count across the run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sylvan.run.tracking import Tracker


class RunLogger:
    """Appends logged metrics to `logs/train.csv` (and to W&B), with a step counter that keeps
    growing across the fits of one run (each counts its own steps from 0)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._offset = 0
        self._last_step = -1

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = 0 if step is None else step
        # a new fit (next task) restarted its step counter; one fit logs a step once, so the
        # same step again is a new fit's too (each task's fit logging its step 0 alone)
        if step <= self._last_step:
            self._offset += self._last_step + 1
        self._last_step = step
        self.tracker.log_step(self._offset + step, dict(metrics))

    @property
    def next_step(self) -> int:
        """The run-wide step the next fit's first logged step counts from."""
        return self._offset + self._last_step + 1

    def continue_at(self, step: int) -> None:
        """Resuming: count the next fit's steps from `step` (a saved `next_step`)."""
        self._offset, self._last_step = step, -1
