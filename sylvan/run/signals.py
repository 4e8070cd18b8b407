"""How a run stops on a signal, in one place: Ctrl-C (SIGINT) and SIGTERM (a cluster's
scheduler ending or preempting the job) stop the run wherever it is with `StoppedBySignal`, a
`KeyboardInterrupt` that says which signal it was; the entry point (`run_to_the_end`) turns it
into a message saying what was kept and how to continue.

- `sigterm_stops_the_run`: the entry point's handler, for the whole run (between tasks too);
- `sigterm_callback`: a Trainer callback that puts it back once Lightning has installed its own;
- `fit_until_stopped`: `Trainer.fit`, with Lightning's shutdown on a signal raised as `StoppedBySignal`;
- `interruption_behind`: the signal behind an error a worker raised while shutting down on it.
"""

from __future__ import annotations

import functools
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
    KeyboardInterrupt, wherever the run is: between tasks too, where no Lightning handler is
    installed and the process would otherwise die without a word. A handler someone else
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


@functools.cache
def _sigterm_callback_class() -> type:
    import lightning as L

    class SigtermStopsTraining(L.Callback):
        """Once the `Trainer` has installed its signal handlers, make SIGTERM stop training the
        way Ctrl-C does (a `StoppedBySignal`, which Lightning shuts down on like a
        KeyboardInterrupt).

        Lightning's own SIGTERM handler broadcasts a tensor from inside the handler when
        training is data-parallel. A scheduler signals every worker at once, and each runs that
        broadcast wherever its step happens to be, against the other workers' unrelated
        collectives: the workers then wait on one another until the process group times out.
        The `Trainer` puts back the handler that was there before (the entry point's) when the
        fit ends."""

        def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, raise_stopped_by_signal)

    return SigtermStopsTraining


def sigterm_callback() -> Any:
    """The callback every Trainer of a run carries (`RunContext.trainer_kwargs`): SIGTERM stops
    training as Ctrl-C does, with sylvan's handler rather than Lightning's. Lightning is
    imported here, when a run first builds a Trainer."""
    return _sigterm_callback_class()()


def fit_until_stopped(trainer: Any, module: Any, **fit_arguments: Any) -> None:
    """`trainer.fit(module, **fit_arguments)`; where Lightning shut the Trainer down on a signal
    (a KeyboardInterrupt: Ctrl-C, or the `StoppedBySignal` of sylvan's SIGTERM handler; or
    Lightning's own SIGTERM handling) and called `sys.exit(1)`, raise `StoppedBySignal` naming
    the signal instead, so that the entry point says what was kept."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        trainer.fit(module, **fit_arguments)
    except SystemExit as stop:
        if not trainer.interrupted:
            raise
        if isinstance(stop.__context__, StoppedBySignal):
            raise stop.__context__ from None
        raise StoppedBySignal(signal.SIGTERM if isinstance(stop, SIGTERMException) else signal.SIGINT) from None


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
