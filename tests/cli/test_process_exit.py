"""The command's exit status, as Python would give it (the exit itself: tests/cli/test_cli.py)."""

from __future__ import annotations

import subprocess
import sys

from sylvan.cli.process_exit import exit_status
from tests.conftest import REPO


def test_exit_status_is_the_one_python_gives_system_exit(capsys):
    assert exit_status(None) == 0 and exit_status(0) == 0
    assert exit_status(2) == 2 and exit_status(143) == 143
    assert exit_status("sylvan: stopped") == 1
    assert capsys.readouterr().err == "sylvan: stopped\n"



def test_a_process_left_with_a_thread_pool_still_open_exits_as_python_would():
    """A library's `ThreadPoolExecutor` (torch.compile's compile pool, say) left open: Python's exit
    tells its idle workers to stop before it waits for them; leaving the process does too."""
    code = ("import atexit, concurrent.futures\n"
            "from sylvan.cli.process_exit import exit_process\n"
            "pool = concurrent.futures.ThreadPoolExecutor(2)\n"
            "pool.submit(print, 'ran')\n"
            "atexit.register(print, 'handlers ran')\n"
            "exit_process(3)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 3 and done.stdout == "ran\nhandlers ran\n"
