"""The teacher of a distillation method: a frozen copy of its model as it was at the end of the
previous task (`lwf`, `icarl`, `bic`, `wa`, `eeil`, `ssil`, `lucir`, `co2l`)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from sylvan.methods.parts.distillation import frozen_copy


class Teacher:
    """`network`: the frozen copy (None during the first task), taken of `model_of()` when a task
    ends."""

    def __init__(self, model_of: Callable[[], nn.Module]) -> None:
        self.model_of = model_of
        self.network: nn.Module | None = None

    def logits(self, x: torch.Tensor) -> torch.Tensor | None:
        """The teacher's outputs for `x`, on `x`'s device (None during the first task)."""
        if self.network is None:
            return None
        self.network.to(x.device)
        with torch.no_grad():
            return self.network(x)

    def on_task_end(self) -> None:
        self.network = frozen_copy(self.model_of())

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": None if self.network is None else self.network.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["teacher"] is not None:
            self.network = frozen_copy(self.model_of())
            self.network.load_state_dict(state["teacher"])
