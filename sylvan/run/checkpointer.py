"""Saving and restoring a run, in one place: `Checkpointer`, which every run loop holds through
its `RunContext`. What a checkpoint file holds, how it is named and how it is read safely is
`sylvan.run.checkpoints`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sylvan.run.checkpoints import (
    RunCheckpoint,
    restore_rng_states,
    save_checkpoint,
    save_worker_checkpoint,
)

if TYPE_CHECKING:
    from sylvan.analysis.metrics import Results

_UNKNOWN = object()  # the workers' checkpoint folder before worker 0 has said where it is


class Checkpointer:
    """What a run keeps after each training stage, and puts back when it is resumed:

    - the method's state (`Method.state_dict`: its declared attributes, the parts it holds, its
      networks, buffers and generators);
    - the global random generators (Python, NumPy, torch, CUDA);
    - where the tracker's logs stand, the results so far and the run's configuration;
    - with several data-parallel workers, every other worker's part (its own buffer and
      generators), written before worker 0's file, so that a stage counts as checkpointed only
      once every part is on disk.

    Nothing is written where the run has no tracker or runs with `--save_checkpoints false`."""

    def __init__(self, setting: Any, tracker: Any = None, workers: Any = None) -> None:
        self.setting = setting
        self.tracker = tracker
        self.workers = workers  # the run's (`sylvan.workers.Workers`); their parts are saved while connected
        self.worker_folder: Any = _UNKNOWN  # where workers other than 0 write their parts; None: nowhere

    @property
    def folder(self) -> Path | None:
        """Where worker 0 writes the run's checkpoints, or None."""
        return None if self.tracker is None else self.tracker.checkpoint_dir

    def save(self, stage: int, method: Any, results: Results) -> None:
        """Checkpoint the run after training stage `stage` and evaluating it (`results`)."""
        if self.workers is not None:
            self.save_worker_parts(stage, method)
        folder = self.folder
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(folder / f"after_stage_{stage}.pt", stage, method, results,
                        tracker_state=self.tracker.state(), config=self.tracker.config)

    def save_worker_parts(self, stage: int, method: Any) -> None:
        """Every worker but 0 writes its part of the stage's checkpoint into the folder worker
        0's tracker names; then all wait for each other, so that worker 0 writes the stage's own
        file only once every part is on disk."""
        workers = self.workers
        if not workers.connected:
            return
        if self.worker_folder is _UNKNOWN:  # only worker 0 has a tracker: it says where, once
            folder = workers.from_first(None if self.folder is None else str(self.folder))
            self.worker_folder = None if folder is None else Path(folder)
        if self.worker_folder is None:  # --save_checkpoints false
            return
        if workers.rank > 0:
            self.worker_folder.mkdir(parents=True, exist_ok=True)
            save_worker_checkpoint(self.worker_folder, stage, workers.rank, workers.world_size, method)
        workers.wait_for_each_other()

    def restore(self, method: Any, checkpoint: RunCheckpoint, nb_stages: int, nb_tasks: int) -> tuple[Results, int]:
        """Resuming: check that `checkpoint` belongs to this run (`nb_stages` training stages over
        `nb_tasks` tasks), put the method, the global random generators and the tracker's logs
        back as they were after its stage; return the results so far and that stage."""
        setting = self.setting
        setting.check_resumable()
        method.check_resumable()
        if (checkpoint.results.setting, checkpoint.results.method) != (setting.name, method.name):
            raise checkpoint.misfit(f"it is a checkpoint of {checkpoint.results.method} on "
                                    f"{checkpoint.results.setting}, not of {method.name} on {setting.name}")
        if checkpoint.stage >= nb_stages or checkpoint.results.nb_tasks != nb_tasks:
            raise checkpoint.misfit(
                f"it is the checkpoint after stage {checkpoint.stage + 1} of a run over "
                f"{checkpoint.results.nb_tasks} tasks, and this run has {nb_stages} stages over {nb_tasks} tasks "
                "(was its config.yaml edited after the run started?)")
        if len(checkpoint.results.accuracy_matrix) != checkpoint.stage + 1:
            raise checkpoint.misfit(f"its results hold {len(checkpoint.results.accuracy_matrix)} stages' "
                                    f"evaluations, where the checkpoint after stage {checkpoint.stage + 1} has "
                                    f"{checkpoint.stage + 1}")
        try:
            method.load_state_dict(checkpoint.method_state)
        except (KeyError, ValueError, RuntimeError) as error:  # shapes, capacities, missing entries
            raise checkpoint.misfit(f"the method's state in it does not load ({state_error(error)})") from error
        restore_rng_states(checkpoint.rng)
        if self.tracker is not None and checkpoint.tracker_state is not None:
            self.tracker.restore(checkpoint.tracker_state, stages=checkpoint.stage + 1)
        results = checkpoint.results
        results.complete = False
        return results, checkpoint.stage


def state_error(error: BaseException) -> str:
    """What torch (or a part's `load_state_dict`) says of a state that does not load, on one line:
    the tensor and the shapes that differ, where it names them."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = [line for line in lines if "size mismatch" in line or "Missing key" in line or "Unexpected key" in line]
    return "; ".join(detail or lines[:1]) or type(error).__name__
