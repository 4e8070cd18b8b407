"""The classes a single-head method has met, learned from its training batches: those of the
tasks it finished (`old`) and all it has seen so far, the current task's included (`active`).
Methods that treat old and new classes apart (distillation on the old classes, LODE's decoupled
loss on the new ones, exemplar memories) hold them; any class order works."""

from __future__ import annotations

from typing import Any

import torch


class SeenClasses:
    """Two boolean masks over the head's classes: `old` (seen in earlier tasks) and `active`
    (seen so far). A class becomes old when the task it was seen in ends."""

    def __init__(self, num_classes: int) -> None:
        self.active = torch.zeros(num_classes, dtype=torch.bool)
        self.old = torch.zeros(num_classes, dtype=torch.bool)

    def observe(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Record the labels' classes; return the (active, old) masks on the labels' device."""
        self.active[y.cpu()] = True
        return self.active.to(y.device), self.old.to(y.device)

    def on_task_end(self) -> None:
        self.old = self.active.clone()

    def only_seen(self, scores: torch.Tensor) -> torch.Tensor:
        """`scores` (a batch over the head's classes) with the classes never seen at -inf, as a head
        that grows with its classes would have them: a class to come takes no probability mass.
        Before any class is seen, all of them stay."""
        seen = self.active.to(scores.device)
        if not bool(seen.any()):
            return scores
        return scores.masked_fill(~seen, float("-inf"))

    def state_dict(self) -> dict[str, Any]:
        return {"old_classes": self.old.clone(), "active_classes": self.active.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.old = state["old_classes"].clone()
        self.active = state["active_classes"].clone()
