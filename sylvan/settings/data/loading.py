"""Loading a run's tasks with the global generators seeded, and freeing what earlier runs of the
same process left behind."""

from __future__ import annotations

import gc
import weakref
from typing import Callable

from sylvan.run.task_data import TaskData

# the tensors of the tasks this process's runs have loaded, to see what finished runs left behind
_loaded_tensors: list[weakref.ReferenceType] = []
# a full collection costs about 0.25 s with torch and Lightning loaded: worth it where this much is held
FREE_FROM_BYTES = 64 * 2**20


def free_finished_runs() -> None:
    """Free what earlier runs of this process left behind, before a run loads its data. A
    finished run's objects may reference one another (a method and its learner), and through
    them its tasks' tensors (in GPU memory too, where it trained there): dropping them frees
    nothing until Python collects its cyclic garbage in full, which it seldom does. A loop of
    runs (a sweep, the benchmarks) would hold every earlier run's data: 1.1 GB a run for 20
    permuted-MNIST tasks. Collects where the tensors of earlier runs still alive take at least
    `FREE_FROM_BYTES`."""
    alive = [tensor for tensor in (ref() for ref in _loaded_tensors) if tensor is not None]
    _loaded_tensors[:] = [weakref.ref(tensor) for tensor in alive]
    if sum(tensor.untyped_storage().nbytes() for tensor in alive) >= FREE_FROM_BYTES:
        del alive
        gc.collect()


def track_loaded(tasks: list[TaskData]) -> None:
    """Remember the tensors of a run's tasks (weakly), for `free_finished_runs`."""
    for task in tasks:
        _loaded_tensors.extend(weakref.ref(t) for t in (task.x_train, task.y_train, task.x_test, task.y_test))


def seeded_tasks(seed: int, load: Callable[[], list[TaskData]]) -> list[TaskData]:
    """The tasks `load()` returns, loaded with the global generators seeded with `seed` (loading
    draws from torch's generator, which then initializes the model: a run puts the generators
    back as loading left them when it starts, `sylvan.run.loop.Stages.begin`)."""
    from sylvan.parallel.fabric_package import fabric

    fabric().seed_everything(seed, verbose=False)
    free_finished_runs()
    tasks = load()
    track_loaded(tasks)
    return tasks
