"""How a run stops on a signal, in one place: Ctrl-C (SIGINT) and SIGTERM (a cluster's
scheduler ending or preempting the job) stop the run wherever it is with `StoppedBySignal`, a
`KeyboardInterrupt` that says which signal it was; the entry point (`run_to_the_end`) turns it
into a message saying what was kept and how to continue.

- `sigterm_stops_the_run`: the entry point's handler, for the whole run (training included);
- `interruption_behind`: the signal behind an error a worker raised while shutting down on it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sylvan.errors import StoppedBySignal


def raise_stopped_by_signal(signum: int, frame: Any) -> None:
    """A signal handler: stop the run where it is, as Ctrl-C does, saying which signal it was."""
    raise StoppedBySignal(signum)


@contextmanager
def sigterm_stops_the_run() -> Iterator[None]:
    """While the run trains, SIGTERM raises `StoppedBySignal`, as Ctrl-C raises
    KeyboardInterrupt, wherever the run is, rather than the process dying without a word. A handler someone else
    installed is left in place."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    signal.signal(signal.SIGTERM, raise_stopped_by_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def interruption_behind(error: BaseException) -> StoppedBySignal | None:
    """The signal that stopped this worker, where `error` was raised while the worker was
    shutting down on it: a signal reaches every worker at once, and one whose peers stop first
    sees their connections break as it tears its own training down."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, KeyboardInterrupt):
            return cause if isinstance(cause, StoppedBySignal) else StoppedBySignal(signal.SIGINT)
        cause = cause.__context__ or cause.__cause__
    return None


def stop_description(stop: KeyboardInterrupt) -> tuple[str, int]:
    """What stopped the run ("stopped by SIGTERM" or "interrupted") and the exit status a shell
    reports for it (128 + the signal's number)."""
    number = getattr(stop, "signal_number", signal.SIGINT)
    return ("stopped by SIGTERM" if number == signal.SIGTERM else "interrupted"), 128 + number
