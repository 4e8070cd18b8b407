"""What every run loop records when a training stage ends: its times, memory and method statistics."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from sylvan.analysis.metrics import Results


def with_task_hooks(setting: Any, method: Any, stage: int, train: Callable[[], None]) -> None:
    """Train one stage (`train()`), told to the method as a task where the setting's boundaries
    are known: `on_task_start` and `on_task_end` around it, with the stage's task label where
    the setting gives task labels at training (`Setting.stage_task_label`), else None. Every
    run loop trains its stages through here: the hooks are called in this one place."""
    if not setting.task_boundaries_known:
        train()
        return
    task_id = setting.stage_task_label(stage)
    method.on_task_start(task_id)
    train()
    method.on_task_end(task_id)


def record_stage_end(results: Results, method: Any, stage_start: float, run_start: float) -> None:
    """After a training stage and its evaluation (whose row is in `results`): the stage's and
    the run's wall time (`time.perf_counter()` values at their starts), the peak memory and the
    method's runtime statistics. The run is not complete yet, its last stage included: what the
    setting does after the stream, and the final results, plots and logs, come after
    (`Setting.apply`, `Tracker.finish`)."""
    now = time.perf_counter()
    results.task_wall_time.append(now - stage_start)
    results.total_wall_time = now - run_start
    results.peak_memory_mb = peak_memory_mb()
    results.method_runtime = method.runtime_stats()
    results.complete = False


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and peak CUDA allocation, when used), in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return float(peak)


def record_training_episodes(results: Results, returns: list[float]) -> None:
    """Add a stage's training episodes to the results: their count, and the mean return of every
    episode trained on so far (`online_return`, the reward collected while learning)."""
    before = sum(results.episodes_seen)
    results.episodes_seen.append(len(returns))
    if returns:
        total = (results.online_accuracy or 0.0) * before + sum(returns)
        results.online_accuracy = total / (before + len(returns))
