"""What every run loop does around its training stages: resuming from a checkpoint, and
recording a finished stage's times, memory and method statistics."""

from __future__ import annotations

import resource
import time
from typing import TYPE_CHECKING, Any

import torch

from sylvan.errors import ConfigurationError

if TYPE_CHECKING:
    from sylvan.checkpoints import RunCheckpoint
    from sylvan.metrics import Results


def restore_run(
    setting: Any, method: Any, tracker: Any, resume: RunCheckpoint, nb_stages: int, nb_tasks: int
) -> tuple[Results, int]:
    """Resuming: check that the checkpoint `resume` belongs to this run (`nb_stages` training
    stages over `nb_tasks` tasks), put the method, the global random generators and the
    tracker's logs back as they were after its stage; return the results so far and that stage."""
    from sylvan.checkpoints import nothing_to_resume, restore_rng_states

    setting.check_resumable()
    method.check_resumable()
    if resume.stage >= nb_stages - 1:
        raise nothing_to_resume(nb_stages)
    if (resume.results.setting, resume.results.method) != (setting.name, method.name):
        raise ConfigurationError(
            f"--resume: the checkpoint is of {resume.results.method} on {resume.results.setting}, "
            f"not {method.name} on {setting.name}"
        )
    mismatch = ConfigurationError(
        "--resume: the checkpoint does not fit the run's configuration (was its config.yaml edited "
        "after the run started?)"
    )
    if resume.results.nb_tasks != nb_tasks or len(resume.results.accuracy_matrix) != resume.stage + 1:
        raise mismatch
    try:
        method.load_state_dict(resume.method_state)
    except (KeyError, ValueError, RuntimeError) as error:  # shapes, capacities, missing entries
        raise mismatch from error
    restore_rng_states(resume.rng)
    if tracker is not None and resume.tracker_state is not None:
        tracker.restore(resume.tracker_state)
    results = resume.results
    results.complete = False
    return results, resume.stage

def record_stage_end(results: Results, method: Any, stage_start: float, run_start: float, nb_stages: int) -> None:
    """After a training stage and its evaluation (whose row is in `results`): the stage's and
    the run's wall time (`time.perf_counter()` values at their starts), the peak memory, the
    method's runtime statistics, and whether the run is complete."""
    now = time.perf_counter()
    results.task_wall_time.append(now - stage_start)
    results.total_wall_time = now - run_start
    results.peak_memory_mb = peak_memory_mb()
    results.method_runtime = method.runtime_stats()
    results.complete = len(results.accuracy_matrix) == nb_stages


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and peak CUDA allocation, when used), in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return float(peak)
