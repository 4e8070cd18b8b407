"""A method whose worker 1 dies when task 2 starts: for failure-handling tests.

Imported by a worker that another started (LOCAL_RANK set), the plugin writes that worker's
process id to `$DYING_WORKER_PID_DIR/worker<LOCAL_RANK>.pid` and then sleeps
`$DYING_WORKER_SLOW_START` seconds, where those are set: a worker slow to join."""

import os
import signal
import time
from dataclasses import dataclass
from typing import ClassVar

import torch.distributed as dist

from sylvan.methods import Naive

if "LOCAL_RANK" in os.environ and os.environ.get("DYING_WORKER_PID_DIR"):
    with open(os.path.join(os.environ["DYING_WORKER_PID_DIR"], f"worker{os.environ['LOCAL_RANK']}.pid"), "w") as f:
        f.write(str(os.getpid()))
if "LOCAL_RANK" in os.environ and os.environ.get("DYING_WORKER_SLOW_START"):
    time.sleep(float(os.environ["DYING_WORKER_SLOW_START"]))


@dataclass
class DyingWorker(Naive):
    """Fine-tuning, except that worker 1 exits abruptly at the start of task 2 (status 17), or
    is killed by signal `kill_signal` where one is given; worker 0 may be busy meanwhile."""

    name: ClassVar[str] = "dying_worker"
    checkpoint_complete: ClassVar[bool] = True  # its task hook keeps no state

    kill_signal: int = 0  # the signal that kills worker 1 (0: it exits with status 17 instead)
    # seconds worker 0 spends at the start of task 2 before its next collective (while worker 1 dies)
    busy_seconds: float = 0.0

    def on_task_start(self, task_id):
        if task_id == 2 and dist.is_initialized() and dist.get_rank() == 0 and self.busy_seconds:
            time.sleep(self.busy_seconds)
        if task_id == 2 and dist.is_initialized() and dist.get_rank() == 1:
            if self.kill_signal:
                os.kill(os.getpid(), signal.Signals(self.kill_signal))
            os._exit(17)
