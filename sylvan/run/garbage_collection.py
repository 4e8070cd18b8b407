"""Python's cyclic garbage collector while a command starts up.

Starting a run imports torch, Lightning Fabric and the rest: about 580,000 objects tracked by
the collector, nearly all of which live as long as the process. Python's collector scans every
one of them again in each full collection it starts on its own, six during the imports of the
Seq-MNIST ER-200 command and one more when the plots import matplotlib at its end: about 0.5 s
of one CPU core, for a run whose training takes about 4 s.

The command-line entry points (`sylvan`, `python cli.py`, `python -m sylvan`) therefore pause
automatic collection before they import anything (`pause_for_start_up`). When the run starts
training (`sylvan.run.loop.run_stages`), `resume_after_start_up` collects once, moves every
object still alive into the permanent generation (`gc.freeze`), which later collections skip,
and turns automatic collection on again: from then on a full collection scans only what the run
allocated since. The one collection is needed: the start-up leaves reference cycles that hold
data, for example import-time code of torchvision that keeps the frames of its importers alive,
the frame that read MNIST among them with its 55 MB of arrays; frozen uncollected, they would
stay for the whole run.

Memory without cycles is freed by reference counting during the pause as always. Code that
calls sylvan from Python (a notebook, a test) never pauses, and resuming is then nothing: its
collector is left as it is. Commands that train nothing (`--list`, `--summarize`, `--help`)
stay paused until they end, a short time in which they allocate little.
"""

from __future__ import annotations

import gc

_paused = False


def pause_for_start_up() -> None:
    """Stop automatic collection until `resume_after_start_up`, where it is on."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_after_start_up() -> None:
    """Where `pause_for_start_up` paused collection: collect once, freeze the survivors, turn
    automatic collection back on. Elsewhere, nothing."""
    global _paused
    if not _paused:
        return
    _paused = False
    gc.collect()
    gc.freeze()
    gc.enable()
