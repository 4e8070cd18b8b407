"""A method added from outside the package: fine-tuning with an L2 anchor to the previous task.

After each task, the weights are remembered; while training later tasks the loss adds
`strength * ||w - w_previous||^2`, which slows forgetting (the isotropic ancestor of EWC).
It needs task boundaries, so it targets `class_incremental` and runs on every setting below.

    sylvan --plugin examples/l2_anchor.py --list
    sylvan --plugin examples/l2_anchor.py --setting class_incremental --method l2_anchor --strength 0.5
"""

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import Batch, SupervisedMethod, joined_state
from sylvan.settings import ClassIncrementalSetting


@dataclass
class L2Anchor(SupervisedMethod):
    """Fine-tuning plus an L2 penalty that pulls the weights toward the previous task's."""

    name: ClassVar[str] = "l2_anchor"
    target_setting: ClassVar[type] = ClassIncrementalSetting

    strength: float = 0.1  # weight of the L2 penalty toward the previous task's weights

    def validate(self) -> None:
        super().validate()
        if self.strength < 0:
            raise ConfigurationError(f"--strength must be >= 0, got {self.strength}")

    def configure(self, run):
        super().configure(run)
        self.anchor = None  # no previous task yet

    def on_task_end(self, task_id):
        self.anchor = [p.detach().clone() for p in self.model.parameters()]

    def state_dict(self):  # what a checkpoint holds, so that `sylvan --resume` can continue a run
        return joined_state(super().state_dict(), anchor=self.anchor)

    def load_state_dict(self, state):
        super().load_state_dict(state)
        # read on the CPU: put beside the weights they anchor (on the run's device)
        self.anchor = None if state["anchor"] is None else [
            anchor.to(p.device) for p, anchor in zip(self.model.parameters(), state["anchor"])]

    def training_step(self, batch: Batch) -> torch.Tensor:
        loss = F.cross_entropy(self.learner(batch.x), batch.y)
        if self.anchor is not None:
            penalty = sum(((p - a) ** 2).sum() for p, a in zip(self.model.parameters(), self.anchor))
            loss = loss + self.strength * penalty
        return loss
