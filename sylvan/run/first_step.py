"""A mark of when a process reaches its first training step, for start-up measurements.

Where the environment variable `SYLVAN_FIRST_STEP_FILE` names a file, the first training step
of the process appends the wall-clock time (`time.time()`) to it, once; elsewhere nothing
happens. `benchmarks/startup.py` reads it to tell how long a command takes from its start to
its first step, beside a plain PyTorch loop that writes the same mark."""

from __future__ import annotations

import os
import time

_PATH = os.environ.get("SYLVAN_FIRST_STEP_FILE")


def mark_first_step() -> None:
    """Append the time to `SYLVAN_FIRST_STEP_FILE`, the first time this is called in the process."""
    global _PATH
    if _PATH is None:
        return
    path, _PATH = _PATH, None
    with open(path, "a") as mark:
        mark.write(f"{time.time()!r}\n")
