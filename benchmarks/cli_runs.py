"""Running sylvan's command line from a benchmark: one run in a subprocess, its results folder in
a temporary directory (no checkpoints), and what the run wrote (`results.json`, `runtime.json`)
read back. Shared by `distributed_rehearsal.py`, `regression_set.py` and `gpu_check.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Finished:
    """A finished command: its exit status (124: killed at its time limit), its output (stdout,
    then stderr: whole, or what it printed before it was killed) and its wall time."""

    status: int
    stdout: str
    stderr: str
    seconds: float


def run_command(command: list[str], timeout: float | None = None, env: dict[str, str] | None = None) -> Finished:
    """Run `command` in the repository's root with `env` added to the environment."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        status, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        status = 124
        stdout, stderr = (part.decode(errors="replace") if isinstance(part, bytes) else (part or "")
                          for part in (expired.stdout, expired.stderr))
        stderr += f"\n[killed after {timeout:.0f} s]\n"
    return Finished(status, stdout, stderr, time.perf_counter() - start)


@dataclass
class CliRun(Finished):
    """A run of the command line, and what it wrote (empty where it wrote nothing)."""

    command: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)


def run_cli(options: list[str], timeout: float | None = None, env: dict[str, str] | None = None) -> CliRun:
    """`cli.py OPTIONS`, its results in a temporary folder, checkpoints off."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, str(REPO / "cli.py"), *options, "--results_dir", folder, "--run_name", "run",
                   "--save_checkpoints", "false"]
        finished = run_command(command, timeout, env)
        run_dir = Path(folder) / "run"
        written = {name: json.loads((run_dir / f"{name}.json").read_text())
                   for name in ("results", "runtime") if (run_dir / f"{name}.json").exists()}
    return CliRun(finished.status, finished.stdout, finished.stderr, finished.seconds, command,
                  written.get("results", {}), written.get("runtime", {}))
