"""Errors a user can cause. The command line turns them into a short message and exit status 2."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any


class SylvanError(Exception):
    """Base class of the mistakes a user can make: the message says what to do instead."""


class ConfigurationError(SylvanError, ValueError):
    """An option has an invalid value, or two options contradict each other."""


class UnknownNameError(SylvanError, KeyError):
    """A setting, method, dataset, backbone or policy name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InapplicableMethodError(SylvanError):
    """The method's target setting is not an ancestor of (or equal to) the chosen setting."""


class DataUnavailableError(SylvanError):
    """A dataset is neither on disk nor downloadable."""


class RunFailedError(SylvanError):
    """A run stopped because something failed while it ran (a data-parallel worker died or
    raised). Not a usage mistake: the command line exits with status 1."""


class TrainingDivergedError(RunFailedError):
    """Training made the network's weights NaN or infinite (a learning rate or a penalty too
    strong for the loss): every later result would be chance, so the run stops there."""


class OutputNotWritten(RunFailedError):
    """A file of the run's folder could not be written (a full disk, a file-size limit, a folder
    removed under the run); `path` names it."""

    def __init__(self, path: Any, reason: str, kept: str = "") -> None:
        self.path, self.reason = path, reason
        super().__init__(f"could not write {path} ({reason}); is the disk full?" + (f" {kept}" if kept else ""))


class StoppedBySignal(KeyboardInterrupt):
    """Training was stopped by a signal: SIGINT (Ctrl-C) or SIGTERM (a cluster's scheduler
    ending or preempting the job). Raised by the command line's SIGTERM handler wherever the
    run is (`sylvan.run.signals`)."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


class RunInterrupted(Exception):
    """A run was stopped by a signal; the message says what was kept and how to go on. The
    command line exits with `exit_status`, 128 + the signal's number, as a shell reports it."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


@contextmanager
def writing(path: Any) -> Iterator[None]:
    """Around the writing of `path`: a failure to write (`OSError`, or the `RuntimeError` of
    torch's file writer, `PytorchStreamWriter` in `inline_container.cc`) becomes `OutputNotWritten`
    naming the file."""
    try:
        yield
    except OSError as error:
        raise OutputNotWritten(path, error.strerror or str(error)) from error
    except RuntimeError as error:
        if not any(marker in str(error) for marker in ("inline_container", "PytorchStreamWriter", "write")):
            raise
        raise OutputNotWritten(path, "torch's writer could not write it to its end") from error


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...], listed: str | None = None
                 ) -> UnknownNameError:
    """Build the error for an unknown `kind` called `name`: the closest valid names (a typo, a
    name in other case) and the valid names, or `listed`, what to say of them instead."""
    kinds = f"{kind[:-1]}ies" if kind.endswith("y") else f"{kind}s"  # "buffer policy": "buffer policies"
    close = did_you_mean(str(name), valid)
    listing = listed if listed is not None else f"valid {kinds}: {', '.join(sorted(valid))}"
    return UnknownNameError(f"unknown {kind} {name!r}{close}; {listing}")


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the valid names closest to `name` (the same in other case first,
    then those difflib finds similar), or "" where none is."""
    valid = list(valid)
    same = [candidate for candidate in valid if candidate.lower() == name.lower()]
    close = same or difflib.get_close_matches(name.lower(), valid, n=1, cutoff=0.75)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def require_finite_numbers(options: Any) -> None:
    """Raise `ConfigurationError`, naming the flag, for the first float field of the dataclass
    `options` that is NaN or infinite. Such a value passes every range check (a comparison with
    NaN is always false) and would train on NaN weights, or overflow a timeout, instead of being
    refused; no option of a setting or method means anything by it."""
    for field in dataclasses.fields(options):
        value = getattr(options, field.name, None)
        if not field.init:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigurationError(f"--{field.name} must be a finite number, got {value}")
        if isinstance(value, (list, tuple)) and any(isinstance(v, float) and not math.isfinite(v) for v in value):
            raise ConfigurationError(f"--{field.name} must hold finite numbers, got {' '.join(map(str, value))}")


def require_at_least(options: Any, minimum: float, *names: str, strict: bool = False) -> None:
    """Raise `ConfigurationError`, naming the flag, for the first of the fields `names` of
    `options` below `minimum` (at or below it with `strict`)."""
    for name in names:
        value = getattr(options, name)
        if value < minimum or (strict and value == minimum):
            raise ConfigurationError(f"--{name} must be {'>' if strict else '>='} {minimum}, got {value}")


def require_in(
    options: Any, low: float, high: float, *names: str, low_open: bool = False, high_open: bool = False
) -> None:
    """Raise `ConfigurationError`, naming the flag and the interval, for the first of the fields
    `names` of `options` outside [low, high]; `low_open` / `high_open` leave that end out."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    for name in names:
        value = getattr(options, name)
        above_low = value > low if low_open else value >= low
        below_high = value < high if high_open else value <= high
        if not (above_low and below_high):
            raise ConfigurationError(f"--{name} must be in {interval}, got {value}")


def refuse_if_given(options: Any, name: str, why_unused: str) -> None:
    """Raise `ConfigurationError` when the field `name` of the dataclass `options` is not at its
    default: called where the option has no effect (`why_unused` says why), so that a value
    given for it is refused instead of silently ignored. The default passes, since a run's
    config.yaml records every option, the ones that do not apply included."""
    field = next(field for field in dataclasses.fields(options) if field.name == name)
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    value = getattr(options, name)
    if value != default:
        raise ConfigurationError(f"--{name} {value} has no effect: {why_unused}")
