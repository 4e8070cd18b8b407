"""Run checkpoints: what resuming an interrupted run needs, written after every training stage.

`checkpoints/after_stage_K.pt` holds the method's state after stage K (`"method"`: network
weights, buffer, importance weights, ...), the results measured so far (`"results"`), the states
of the global random number generators (`"rng"`: Python, NumPy, torch, CUDA) and K (`"stage"`).
`sylvan --resume RUN_DIR` loads the latest one, restores the method and the generators, skips the
finished stages and trains the others, so that the resumed run writes the same `results.json` as
a run that was never interrupted (same machine, seed and CPU thread count).
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sylvan.errors import ConfigurationError
from sylvan.metrics import Results

FORMAT = 1  # the layout of a checkpoint file; raised when it changes
_NAME = re.compile(r"after_stage_(\d+)\.pt")


def rng_states() -> dict[str, Any]:
    """The states of every global random number generator a run draws from."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(), "cuda": cuda}


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put the global generators back in the states `rng_states` returned."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class RunCheckpoint:
    """A run as it stood after training stage `stage` (0-based) and evaluating it."""

    stage: int
    method_state: dict[str, Any]
    results: Results
    rng: dict[str, Any]
    tracker_state: dict[str, Any] | None = None


def save_checkpoint(
    path: Path, stage: int, method: Any, results: Results, tracker_state: dict[str, Any] | None = None
) -> None:
    """Write the run's checkpoint after `stage` to `path`, atomically: an interruption while
    writing leaves the previous checkpoints as they were, never a truncated file.
    `tracker_state`: where the run's logs stood (see `Tracker.state`)."""
    state = {
        "format": FORMAT,
        "stage": stage,
        "method": method.state_dict(),
        "results": dataclasses.asdict(results),
        "rng": rng_states(),
        "tracker": tracker_state,
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def checkpointed_stages(run_dir: Path) -> list[int]:
    """The stages of `run_dir` that have a checkpoint, in order (the files are not read)."""
    folder = Path(run_dir) / "checkpoints"
    return sorted(int(m.group(1)) for p in folder.glob("after_stage_*.pt") if (m := _NAME.fullmatch(p.name)))


def latest_checkpoint(run_dir: Path) -> RunCheckpoint:
    """The checkpoint of the last finished stage in `run_dir/checkpoints`."""
    folder = Path(run_dir) / "checkpoints"
    stages = checkpointed_stages(run_dir)
    if not stages:
        raise ConfigurationError(
            f"--resume {run_dir}: no checkpoint in {folder} (the run stopped before its first task "
            "finished, or ran with --save_checkpoints false); start it again instead"
        )
    path = folder / f"after_stage_{stages[-1]}.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # a file this run wrote
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same message
        raise ConfigurationError(f"--resume {run_dir}: cannot read {path}: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigurationError(
            f"--resume {run_dir}: {path} is not a checkpoint this version of sylvan can resume from "
            "(written by an older version?)"
        )
    return RunCheckpoint(state["stage"], state["method"], Results(**state["results"]), state["rng"], state["tracker"])
