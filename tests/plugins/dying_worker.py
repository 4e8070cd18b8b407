"""A method whose worker 1 dies when task 2 starts: for failure-handling tests."""

import os
import signal
import time
from dataclasses import dataclass
from typing import ClassVar

import torch.distributed as dist

from sylvan.methods import Naive


@dataclass
class DyingWorker(Naive):
    """Fine-tuning, except that worker 1 exits abruptly at the start of task 2 (status 17), or
    is killed by signal `kill_signal` where one is given; worker 0 may be busy meanwhile."""

    name: ClassVar[str] = "dying_worker"

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
