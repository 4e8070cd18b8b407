"""Ending the command's process without tearing the interpreter down.

Once a run has ended, every result is on disk. With torch, Lightning and continuum loaded,
Python's own finalization (clearing module by module, with full garbage collections over
millions of objects) then takes 1.5 to 2 seconds of every `sylvan` command, and of every worker
process of a distributed run, and it computes nothing. `exit_process` does what a normal exit
does that a user can observe (stops idle thread pools and waits for non-daemon threads, runs the
`atexit` handlers that wandb, logging, multiprocessing and `weakref.finalize` registered, flushes
the standard streams) and then leaves with `os._exit`.

Only the command-line entry points use it: code that calls `sylvan.cli.main` from Python (a
notebook, a test) gets an ordinary `SystemExit`.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_status(code: object) -> int:
    """The process exit status Python gives `SystemExit(code)`: None is 0, an integer is itself,
    anything else is printed to stderr and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_process(code: object = 0) -> NoReturn:
    """Leave the process with `exit_status(code)`, after what a normal exit does first."""
    status = exit_status(code)
    # what the interpreter's exit calls first: the handlers registered with threading (a thread
    # pool's, which tells its idle workers to stop), then a wait for every non-daemon thread
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()
    else:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()  # the handlers, in reverse order of registration, as at a normal exit
    leave_now(status)


def leave_now(status: int) -> NoReturn:
    """Flush the standard streams and leave with `status` at once: no thread waits, no handlers
    (also for a run whose broken process group could hang or abort in them)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(status)
