"""A method whose worker 1 dies (as if killed) when task 2 starts: for failure-handling tests."""

import os
from dataclasses import dataclass
from typing import ClassVar

import torch.distributed as dist

from sylvan.methods import Naive


@dataclass
class DyingWorker(Naive):
    """Fine-tuning, except that worker 1 exits abruptly at the start of task 2."""

    name: ClassVar[str] = "dying_worker"

    def on_task_start(self, task_id):
        if task_id == 2 and dist.is_initialized() and dist.get_rank() == 1:
            os._exit(17)
