"""sylvan: continual learning as a tree of settings, with rehearsal that scales out.

`import sylvan` imports none of the methods, settings or Lightning: the names below are imported
when first used (`sylvan.METHODS`, `sylvan.Setting`, ...), so that a part of sylvan (its buffers,
its analysis of results folders) can be used without loading the rest.

The package's folders: `settings` (the tree of assumptions and the data), `methods` (registered
methods; `core`, their bases; `parts`, what they hold), `buffers`, `models`, `parallel` (workers,
the `ddp_rehearsal` strategies), `run` (the engine, the run loop, context, checkpoints, tracking
and loggers), `analysis` (metrics, summaries, Pareto fronts, plots) and `cli` (the command line).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "METHODS": "sylvan.methods",
    "Method": "sylvan.methods",
    "SupervisedMethod": "sylvan.methods",
    "SETTINGS": "sylvan.settings",
    "Setting": "sylvan.settings",
    "Results": "sylvan.analysis.metrics",
    "RunOptions": "sylvan.run.experiment",
    "run_experiment": "sylvan.run.experiment",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'sylvan' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
