"""The worker processes a data-parallel run started on this machine end with it.

Every way the process that started the workers ends (success, an error, a signal, a timeout),
it ends them first (`end_started_workers`, from the command's entry point, and at the
interpreter's exit for a run started from Python): it gives them a moment to end on their own,
then SIGTERM, then SIGKILL. Were it killed itself (SIGKILL, out of memory), the kernel ends them:
each worker it started asks to be killed when its parent dies (`die_with_launcher`, Linux's
`PR_SET_PDEATHSIG`). Without this, a failed run's workers lived on, waiting for collectives
that would never come, each holding its share of the machine's memory.

This module imports nothing heavy: the entry point uses it on every command.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

LAUNCHER_VARIABLE = "SYLVAN_LAUNCHED_BY"  # the process id of the worker that started this one
STARTED_WORKERS: list[subprocess.Popen] = []  # the worker processes this process started
FINISHING_WAIT = 10.0  # seconds the workers of a finished run get to end on their own
STOPPING_WAIT = 1.0  # and those of a run that failed or was stopped (they stop on their own too)


def end_started_workers(wait: float) -> None:
    """End every worker process this one started: give them `wait` seconds to end on their own
    (after a finished run, they are writing their last part), then SIGTERM, then SIGKILL two
    seconds later, and reap them."""
    running = [process for process in STARTED_WORKERS if process.poll() is None]
    for stop, grace in ((None, wait), (signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        if stop is not None:
            for process in running:
                try:
                    process.send_signal(stop)
                except OSError:  # ended meanwhile
                    pass
        deadline = time.monotonic() + grace
        while running and time.monotonic() < deadline:
            time.sleep(0.05)
            running = [process for process in running if process.poll() is None]
        if not running:
            break
    STARTED_WORKERS.clear()


def die_with_launcher() -> None:
    """In a worker started by another's `WorkerLauncher`: be killed when that process dies,
    however it dies, rather than live on waiting for it (Linux; elsewhere the launcher's
    `end_started_workers` alone ends the workers). A launcher already gone ends this one now."""
    launcher = os.environ.get(LAUNCHER_VARIABLE)
    if launcher is None or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != launcher:  # it died before the request took effect
        os._exit(1)
