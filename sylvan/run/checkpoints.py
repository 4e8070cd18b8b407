"""Run checkpoints: what resuming an interrupted run needs, written after every training stage.

`checkpoints/after_stage_K.pt` holds the method's state after stage K (`"method"`: network
weights, buffer, importance weights, ...), the results measured so far (`"results"`), the states
of the global random number generators (`"rng"`: Python, NumPy, torch, CUDA), K (`"stage"`) and
the run's configuration as its config.yaml records it (`"config"`).
`sylvan --resume RUN_DIR` loads the latest one, restores the method and the generators, skips the
finished stages and trains the others, so that the resumed run writes the same `results.json` as
a run that was never interrupted (same machine, seed and CPU thread count). It refuses a
config.yaml that departs from the checkpoint's configuration (`configuration_changes`).

A run of W data-parallel workers (the `distributed` setting) also has, for each stage, one file per
worker other than worker 0, `after_stage_K.worker{R}.pt`, with that worker's method state and
generators: every worker keeps a rehearsal buffer and generators of its own. The workers write
theirs before worker 0 writes the stage's own file, and a stage counts as checkpointed only when
the files of all W workers are there, so a job stopped while they were being written resumes
from the stage before. Resumed, worker R takes the results from worker 0's file and its own
state from its file.

Checkpoint files are read with `torch.load(..., weights_only=True)`: they hold plain state only
(tensors, numbers, strings, lists, tuples, dicts and NumPy arrays), and a file that holds any
other pickled object is refused without being run, so that resuming a run folder someone shared
cannot run code it carries.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sylvan.analysis.metrics import Results
from sylvan.errors import ConfigurationError, writing

FORMAT = 1  # the layout of a checkpoint file; raised when it changes
_NAME = re.compile(r"after_stage_(\d+)\.pt")
_WORKER = re.compile(r"after_stage_\d+\.worker(\d+)\.pt")


def _numpy_array_globals() -> list[Any]:
    """What unpickling a NumPy array names besides plain data: the array's reconstructor (under
    the module names of NumPy 2 and of NumPy 1, whichever wrote the file), its class, and the
    dtypes of its elements. None of them runs code of the file's choosing."""
    reconstruct = np.zeros(1).__reduce__()[0]
    dtypes = [type(np.dtype(kind)) for kind in "?bBhHiIlLqQefdgFDG"]
    return [(reconstruct, "numpy._core.multiarray._reconstruct"), (reconstruct, "numpy.core.multiarray._reconstruct"),
            np.ndarray, np.dtype, *dtypes]


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
    config: dict[str, Any] | None = None  # the run's configuration (as in config.yaml); None in older files
    path: Path | None = None  # the file it was read from

    def misfit(self, what: str) -> ConfigurationError:
        """The refusal of this checkpoint, which does not fit the run resuming from it (`what`
        does not), naming its file and the checkpoint `--resume` could start from instead."""
        if self.path is None:
            return ConfigurationError(f"--resume: the checkpoint after stage {self.stage + 1} does not fit the run: "
                                      f"{what}")
        run_dir = self.path.parent.parent
        return ConfigurationError(f"--resume {run_dir}: {self.path} does not fit the run: {what}; nothing was run. "
                                  f"To continue, {instead_of(run_dir, self.stage)}")


# options a resumed run may change, none of which changes what the run learns: where its data is, its
# progress bar, the evaluation's batch size, how long a worker waits for the others, and the accelerator
# (a run moved to another machine)
RESUME_NEUTRAL_OPTIONS = frozenset(
    {"data_dir", "image_cache", "progress_bar", "eval_batch_size", "worker_timeout", "accelerator"}
)


def save_checkpoint(
    path: Path,
    stage: int,
    method: Any,
    results: Results,
    tracker_state: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> None:
    """Write the run's checkpoint after `stage` to `path`, atomically: an interruption while
    writing leaves the previous checkpoints as they were, never a truncated file.
    `tracker_state`: where the run's logs stood (see `Tracker.state`); `config`: the run's
    configuration, so that a resumed run can tell whether its config.yaml still describes it."""
    state = {
        "format": FORMAT,
        "stage": stage,
        "method": method.state_dict(),
        "results": dataclasses.asdict(results),
        "rng": rng_states(),
        "tracker": tracker_state,
        "config": config,
    }
    write_atomically(state, path)


def save_worker_checkpoint(folder: Path, stage: int, rank: int, workers: int, method: Any) -> None:
    """Write worker `rank`'s (of `workers`) part of the checkpoint after `stage` into `folder`:
    its method state and generators (worker 0's are in the stage's own file)."""
    state = {
        "format": FORMAT, "stage": stage, "rank": rank, "workers": workers,
        "method": method.state_dict(), "rng": rng_states(),
    }
    write_atomically(state, Path(folder) / worker_file_name(stage, rank))


def write_atomically(state: dict[str, Any], path: Path) -> None:
    """`torch.save` to `path` through a partial file, so that an interruption while writing
    leaves the previous file (or none), never a truncated one."""
    partial = path.with_name(path.name + ".partial")
    try:
        with writing(path):
            torch.save(state, partial)
            os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)  # what a failed write left


def worker_file_name(stage: int, rank: int) -> str:
    return f"after_stage_{stage}.worker{rank}.pt"


def checkpointed_stages(run_dir: Path, workers: int = 1) -> list[int]:
    """The stages of `run_dir` that a run of `workers` workers can resume from, in order: those
    with a checkpoint, and with every other worker's part of it (the files are not read)."""
    folder = Path(run_dir) / "checkpoints"
    stages = sorted(int(m.group(1)) for p in folder.glob("after_stage_*.pt") if (m := _NAME.fullmatch(p.name)))
    return [s for s in stages if all((folder / worker_file_name(s, rank)).is_file() for rank in range(1, workers))]


def latest_checkpoint(run_dir: Path, rank: int = 0, workers: int = 1) -> RunCheckpoint:
    """The checkpoint of the last finished stage in `run_dir/checkpoints`, as worker `rank` of
    `workers` resumes from it (worker 0, or a run of one process: the stage's own file)."""
    folder = Path(run_dir) / "checkpoints"
    stages = checkpointed_stages(run_dir, workers)
    if not stages:
        started = checkpointed_stages(run_dir)  # stages with worker 0's file
        if started:
            raise ConfigurationError(
                f"--resume {run_dir}: the checkpoints in {folder} lack the parts of the other workers "
                f"(after_stage_{started[-1]}.worker<R>.pt for R = 1 to {workers - 1}): they were written by an "
                "older version of sylvan, by a run of fewer workers, or on another node's disk; resume with the "
                "run's own --devices and --num_nodes, its folder on a file system that every node shares"
            )
        raise ConfigurationError(
            f"--resume {run_dir}: no checkpoint in {folder} (the run stopped before its first task "
            "finished, or ran with --save_checkpoints false); start it again instead"
        )
    stage = stages[-1]
    if any(int(m.group(1)) >= workers for p in folder.glob("*.worker*.pt") if (m := _WORKER.fullmatch(p.name))):
        raise ConfigurationError(
            f"--resume {run_dir}: the checkpoints in {folder} were written by more than {workers} workers "
            "(was its config.yaml edited after the run started?)"
        )
    state = read_checkpoint_file(run_dir, folder / f"after_stage_{stage}.pt")
    checkpoint = RunCheckpoint(stage, state["method"], Results(**state["results"]), state["rng"], state["tracker"],
                               state.get("config"), folder / f"after_stage_{stage}.pt")
    if state.get("stage") != stage:
        raise checkpoint.misfit(f"it holds the checkpoint after stage {state.get('stage', -1) + 1}, not after stage "
                                f"{stage + 1} (another stage's file put in its place)")
    if rank > 0:
        own = read_checkpoint_file(run_dir, folder / worker_file_name(stage, rank))
        if (own.get("stage"), own.get("rank"), own.get("workers")) != (stage, rank, workers):
            raise ConfigurationError(f"--resume {run_dir}: {folder / worker_file_name(stage, rank)} is not "
                                     f"worker {rank}'s part of a {workers}-worker checkpoint after stage {stage + 1}")
        checkpoint.method_state, checkpoint.rng = own["method"], own["rng"]
    return checkpoint


def read_checkpoint_file(run_dir: Path, path: Path) -> dict[str, Any]:
    """The contents of a checkpoint file of the run in `run_dir`, or a message saying why not, in
    sylvan's words: torch's own would advise loading the file with `weights_only=False`, which
    would run whatever code it carries."""
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))  # "Unsupported global: GLOBAL x", "unsupported GLOBAL x"
        if refused is None:  # no object refused: not a pickle at all
            raise damaged_checkpoint(run_dir, path, "it is not a checkpoint file") from None
        raise ConfigurationError(
            f"--resume {run_dir}: {path} holds objects other than plain state ({refused.group(1)}, where sylvan's "
            "checkpoints hold only tensors, numbers, strings, lists, dicts and NumPy arrays): it was written by "
            "something else or altered. Nothing was run: the file was refused unread, since loading it could run "
            "code it carries"
        ) from None
    except FileNotFoundError as error:
        raise ConfigurationError(f"--resume {run_dir}: cannot read {path}: {error.strerror}") from None
    except Exception:  # noqa: BLE001 - whatever torch raises for a file it cannot read
        empty = path.is_file() and path.stat().st_size == 0
        raise damaged_checkpoint(run_dir, path, "it is empty" if empty else "it is cut short or altered") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigurationError(
            f"--resume {run_dir}: {path} is not a checkpoint this version of sylvan can resume from "
            "(written by an older version?)"
        )
    return state


def damaged_checkpoint(run_dir: Path, path: Path, why: str) -> ConfigurationError:
    """The refusal of a checkpoint file that cannot be read (`why`), with the earlier stage
    `--resume` could restart from once it is out of the way."""
    match = _NAME.fullmatch(path.name) or re.fullmatch(r"after_stage_(\d+)\.worker\d+\.pt", path.name)
    instead = instead_of(run_dir, int(match.group(1)) if match else None)
    return ConfigurationError(f"--resume {run_dir}: {path} is damaged ({why}); nothing was run. To continue, {instead}")


def instead_of(run_dir: Path, stage: int | None) -> str:
    """What `--resume` can do when the checkpoint after `stage` cannot be resumed from: the
    latest earlier stage's, once the files of `stage` are out of the way."""
    folder = Path(run_dir) / "checkpoints"
    earlier = [s for s in checkpointed_stages(run_dir) if stage is not None and s < stage]
    if earlier:
        return (f"delete the files of that stage (after_stage_{stage}*.pt in {folder}) to resume from the "
                f"checkpoint after task {earlier[-1] + 1}, the latest before it")
    return "there is no earlier checkpoint to resume from: start the run again"


def nothing_to_resume(run_dir: Path) -> ConfigurationError:
    """The refusal to resume the run in `run_dir`, which is complete."""
    return ConfigurationError(
        f"--resume {run_dir}: the run is complete (every stage trained, its results, plots and logs written); "
        "nothing to resume"
    )


def run_is_complete(run_dir: Path, checkpointed: int) -> bool:
    """Whether the run in `run_dir` wrote everything it writes (its `results.json` says so, last),
    and its latest checkpoint, after stage `checkpointed`, is that of its last stage (a folder
    whose later checkpoints were deleted trains their stages again)."""
    try:
        results = json.loads((Path(run_dir) / "results.json").read_text())
        return results.get("complete") is True and len(results.get("accuracy_matrix")) <= checkpointed + 1
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def configuration_changes(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """The options on which the configuration `current` (a run's config.yaml as resolved now)
    departs from `recorded` (the one its checkpoint was written under), as "option: then -> now".
    Only the setting, the method and their options count, less `RESUME_NEUTRAL_OPTIONS`; an
    option one side does not record (another version of sylvan) is not compared."""
    if not recorded:
        return []
    changes = [f"{key}: {recorded[key]} -> {current[key]}" for key in ("setting", "method")
               if key in recorded and key in current and recorded[key] != current[key]]
    for section in ("setting_options", "method_options"):
        then, now = recorded.get(section) or {}, current.get(section) or {}
        changes += [f"--{name}: {then[name]!r} -> {now[name]!r}" for name in then
                    if name in now and name not in RESUME_NEUTRAL_OPTIONS and then[name] != now[name]]
    then_code, now_code = recorded.get("plugin_code") or {}, current.get("plugin_code") or {}
    for name, code in then_code.items():
        new = now_code.get(name)
        if new is None or new.get("sha256") != code.get("sha256"):
            now_text = "sylvan's own" if new is None else f"{new.get('file')} (sha256 {str(new.get('sha256'))[:12]})"
            changes.append(f"the code of the {name}: {code.get('file')} (sha256 {str(code.get('sha256'))[:12]}) -> "
                           f"{now_text}; resume with --plugin giving the file the run started with")
    return changes
