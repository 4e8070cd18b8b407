"""The worker processes a run started end with it (`sylvan.parallel.worker_processes`); the
whole runs: tests/settings/test_distributed.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from sylvan.parallel import worker_processes


def test_the_worker_processes_a_process_started_end_with_it_even_if_they_ignore_sigterm():
    """`end_started_workers`: a moment to end on their own, then SIGTERM, then SIGKILL."""
    ignoring = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"],
                                stdout=subprocess.PIPE, text=True)
    ending = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    assert ignoring.stdout.readline().strip() == "ready"
    worker_processes.STARTED_WORKERS.extend([ignoring, ending])
    started = time.monotonic()
    worker_processes.end_started_workers(wait=1.0)
    assert ending.returncode == 0  # it ended on its own within the wait
    assert ignoring.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert worker_processes.STARTED_WORKERS == []
