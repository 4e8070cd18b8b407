"""Worker health: which worker this process is, whether an error means a peer was lost, and the
message that names the worker that died.

When a worker dies, the others see only their collectives break ("connection closed by peer",
a timeout). The worker that started the others on this machine (worker 0 under `--devices N`)
can tell which of them died and how, from their exit statuses; the message names those first,
as the cause, and the worker that noticed after them."""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from typing import Any

from sylvan.workers import process_rank


def planned_workers(setting: Any) -> int:
    """The processes a run of `setting` trains on: its `--devices` x `--num_nodes` where it has
    data-parallel options (`DataParallelOptions.world_size`), else 1."""
    return getattr(setting, "world_size", 1)


def worker_rank(setting: Any) -> int:
    """Which of the workers of a run of `setting` this process is (0 in a run of one process):
    a fact of the process, which the setting, a configuration, does not hold."""
    if planned_workers(setting) == 1 and not setting.data_parallel:
        return 0
    return process_rank()


def writes_run_folder(setting: Any) -> bool:
    """Whether this process writes the run's folder, results and logs: worker 0 (the others
    write their parts of the checkpoints only)."""
    return worker_rank(setting) == 0


def is_distributed_failure(error: BaseException) -> bool:
    """Errors raised by collectives when a peer disappears or times out."""
    names = {type(e).__name__ for e in (error, error.__cause__, error.__context__) if e is not None}
    text = str(error).lower()
    markers = ("connection", "timed out", "timeout", "peer", "gloo", "nccl", "socket")
    return bool(names & {"DistBackendError", "DistNetworkError", "DistError"}) or any(m in text for m in markers)


def exit_description(status: int) -> str:
    """How a worker process ended, from its exit status (negative: the signal that killed it)."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            return f"was killed by signal {-status}"
        return f"was killed by signal {-status} ({name})"
    return f"exited with status {status}"


def failure_report(error: BaseException, processes: Sequence[Any], exit_wait: float) -> list[str]:
    """What stopped the run, as sentences: the workers in `processes` (this process's children,
    ranks 1, 2, ... in order; each with `poll()`) that died, by their exit status or signal,
    first; then what this worker saw (`error`); then the other workers' states. The children
    are given `exit_wait` seconds to end first."""
    rank = process_rank()
    cause = str(error).splitlines()[0][:300]
    deadline = time.monotonic() + exit_wait
    while processes and any(p.poll() is None for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    states = {child_rank: process.poll() for child_rank, process in enumerate(processes, start=1)}
    dead = [child_rank for child_rank, status in states.items() if status not in (None, 0)]
    if dead:
        lines = [f"worker {child_rank} {exit_description(states[child_rank])}." for child_rank in dead]
        lines.append(f"worker {rank} lost contact with {'it' if len(dead) == 1 else 'them'} ({cause}).")
    else:
        lines = [f"worker {rank} lost contact with the other workers ({cause})."]
    lines += [f"worker {child_rank} {'is still running' if status is None else 'exited with status 0'}."
              for child_rank, status in states.items() if child_rank not in dead]
    return lines
