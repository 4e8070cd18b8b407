"""Starting a data-parallel run's worker processes on this machine, and ending them: Lightning's
launcher, less its child-process observer.

Lightning's launcher watches the workers it starts from a thread that, within 5 seconds of one of
them exiting with an error, kills every process of the run, itself included, with SIGKILL. A run
of sylvan would then end with status -9 and no word of what happened, whenever worker 0 had not
reached its next collective within those 5 seconds (evaluating, or in a method's work at a task's
end). sylvan watches the workers itself: its collectives give up after `--worker_timeout`
seconds, and worker 0 then names the worker that died and how (`sylvan.parallel.health`).

The workers it starts end with the process that started them (`sylvan.parallel.worker_processes`).
"""

from __future__ import annotations

import atexit
import os
from typing import Any, Callable

from lightning.pytorch.strategies.launchers import subprocess_script
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from sylvan.parallel.worker_processes import FINISHING_WAIT, LAUNCHER_VARIABLE, STARTED_WORKERS, end_started_workers


class WorkerLauncher(_SubprocessScriptLauncher):
    """Starts the other workers as Lightning's script launcher does, remembers them, so that
    they end with this process (`end_started_workers`), and leaves watching them to the run."""

    def launch(self, function: Callable, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        if not self.cluster_environment.creates_processes_externally:
            os.environ[LAUNCHER_VARIABLE] = str(os.getpid())
            try:
                self._call_children_scripts()
            finally:
                if not STARTED_WORKERS:  # a run from Python: ended at the interpreter's exit
                    atexit.register(end_started_workers, FINISHING_WAIT)
                STARTED_WORKERS.extend(getattr(self, "procs", ()))
                del os.environ[LAUNCHER_VARIABLE]
        subprocess_script._set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)


class ReportsDeadWorkers:
    """A DDP strategy (mixed in before it) whose workers are started by `WorkerLauncher`, so that
    a worker's death is reported by the run, not answered by killing every process."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()  # type: ignore[misc]
        if type(self._launcher) is _SubprocessScriptLauncher:  # type: ignore[attr-defined]
            self._launcher = WorkerLauncher(self.cluster_environment, self.num_processes,  # type: ignore[attr-defined]
                                            self.num_nodes)  # type: ignore[attr-defined]
