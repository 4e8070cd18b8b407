"""Continual World's three metrics (Wołczyk et al., "Continual World: A Robotic Benchmark For
Continual Reinforcement Learning", NeurIPS 2021) of a run's success curve.

The curve is the success rate of every task's evaluation episodes at evaluation points along the
stream (`--eval_every` steps; at each task's end where it is not given): `steps[p]` and
`success[p][j]`, task j's success at point p. Task j trains on the stream's steps
`spans[j] = (start, end]`; the points within it are those with start < step <= end.

- **performance**: the mean over tasks of each task's success at the end of the stream (the end of
  the last task's training);
- **forgetting**: the mean over tasks of (success at the end of the task's training minus
  success at the end of the stream);
- **forward transfer**: the mean over tasks of (AUC - AUC_ref) / (1 - AUC_ref), where AUC is the
  mean success of the task over the points of its training (the area under its training curve,
  normalized), and AUC_ref that of a reference run trained on the task alone (`traditional_rl`,
  `sylvan.run.references`). A task whose reference succeeds at every point (AUC_ref = 1) has none.

"At the end" of a task's training is the mean over the last tenth of the points of its span (at
least one), and the end of the stream the same number of points at the end of the curve (of the
whole curve where the stream has no task spans: multi-task training). Continual World evaluates
every 20,000 steps of 1M-step tasks and averages the last 5 points, which is that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

END_FRACTION = 0.1  # the share of a span's points averaged as its end


def _points(steps: np.ndarray, span: Sequence[int]) -> np.ndarray:
    start, end = span
    return np.flatnonzero((steps > start) & (steps <= end))


def _window(points: int) -> int:
    """How many of a span's `points` its end averages: the last tenth, at least one."""
    return max(1, int(round(END_FRACTION * points)))


def _end(values: np.ndarray) -> float:
    return float(np.mean(values[-_window(len(values)):]))


def success_at_end(steps: Sequence[int], success: Sequence[Sequence[float]],
                   spans: Sequence[Sequence[int]] | None = None) -> list[float]:
    """Each task's success at the end of the stream: the mean over as many of the curve's last
    points as the end of the last task's span takes (a tenth of the curve without spans)."""
    curve = np.asarray(success, dtype=float)
    points = len(_points(np.asarray(steps), spans[-1])) if spans else len(curve)
    window = _window(points) if points else 1
    return [float(np.mean(curve[-window:, j])) for j in range(curve.shape[1])]


def success_at_task_end(steps: Sequence[int], success: Sequence[Sequence[float]],
                        spans: Sequence[Sequence[int]]) -> list[float | None]:
    """Each task's success at the end of its own training (the last tenth of its span's points);
    None for a task with no point in its span."""
    at, curve = np.asarray(steps), np.asarray(success, dtype=float)
    ends: list[float | None] = []
    for j, span in enumerate(spans):
        points = _points(at, span)
        ends.append(_end(curve[points, j]) if len(points) else None)
    return ends


def training_auc(steps: Sequence[int], success: Sequence[Sequence[float]],
                 spans: Sequence[Sequence[int]]) -> list[float | None]:
    """Each task's mean success over the points of its training span (None without a point)."""
    at, curve = np.asarray(steps), np.asarray(success, dtype=float)
    return [float(curve[points, j].mean()) if len(points := _points(at, span)) else None
            for j, span in enumerate(spans)]


def forward_transfer_per_task(auc: Sequence[float | None],
                              reference_auc: Sequence[float | None]) -> list[float | None]:
    """(AUC - AUC_ref) / (1 - AUC_ref) per task; None where either is missing or AUC_ref is 1."""
    return [None if a is None or r is None or r >= 1.0 else (a - r) / (1.0 - r)
            for a, r in zip(auc, reference_auc)]


def _mean(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return float(np.mean(known)) if known else None


def continual_world_metrics(steps: Sequence[int], success: Sequence[Sequence[float]],
                            spans: Sequence[Sequence[int]] | None,
                            reference_auc: Sequence[float | None] | None = None) -> dict[str, Any]:
    """Performance, forgetting and forward transfer (None where the run cannot have them: a
    stream without task spans, multi-task training, has no forgetting or transfer; a run without
    references has no transfer), with their values per task."""
    final = success_at_end(steps, success, spans)
    found: dict[str, Any] = {"cw_performance": float(np.mean(final)), "cw_forgetting": None,
                             "cw_forward_transfer": None}
    if spans is None:
        return found
    task_end = success_at_task_end(steps, success, spans)
    per_task_forgetting = [None if end is None else end - last for end, last in zip(task_end, final)]
    auc = training_auc(steps, success, spans)
    found.update(cw_forgetting=_mean(per_task_forgetting), cw_forgetting_per_task=per_task_forgetting,
                 cw_training_auc=auc)
    if reference_auc is not None:
        transfer = forward_transfer_per_task(auc, reference_auc)
        found.update(cw_forward_transfer=_mean(transfer), cw_forward_transfer_per_task=transfer,
                     cw_reference_auc=list(reference_auc))
    return found
