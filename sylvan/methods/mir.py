"""`mir`: experience replay with maximally interfered retrieval (Aljundi et al., "Online Continual
Learning with Maximally Interfered Retrieval", NeurIPS 2019).

Rather than replaying r samples drawn at random, MIR draws a larger set of candidates from the
buffer (`--candidates`, uniformly or by any `--buffer_retrieval`) and replays the r whose loss
would rise most under the coming update: it takes a virtual plain-SGD step of size lr on the
minibatch's loss, scores each candidate by its loss after that step minus its loss before, and
keeps the r highest. The loss is the minibatch's cross-entropy plus the replayed samples' (each a
mean, as in the paper's code). The candidates are scored in evaluation mode without gradients,
so scoring leaves batch-norm statistics and dropout alone. Needs no task boundaries. Defaults:
the paper's (lr 0.1, r 10, 50 candidates, batch 10). With data-parallel workers the candidates
are drawn from the union of every worker's buffer (the distributed rehearsal buffer), and each
worker scores its candidates against its own virtual step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.func import functional_call

from sylvan.methods.core.replay import ReplayMethod
from sylvan.methods.core.supervised import Batch, evaluating
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting


@dataclass
class MIR(ReplayMethod):
    """Experience replay of the buffer's most interfered samples."""

    name: ClassVar[str] = "mir"
    target_setting: ClassVar[type[Setting]] = OnlineSetting  # needs no boundaries: runs everywhere

    lr: float = 0.1  # learning rate, also the size of the virtual step that scores the candidates
    replay_size: int = 10  # r: samples replayed with each minibatch (0: as many as the batch size)
    candidates: int = 50  # buffer samples scored at each step, of which the r most interfered are replayed

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "candidates")

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.require_candidates_for_replay(setting, self.candidates)

    def replay_draws(self, batch_size: int) -> tuple[int, ...]:
        return (self.candidates,)  # the candidates, of which the step replays the r most interfered

    def interference(self, loss: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """For each sample of (x, y): its loss after a plain SGD step of size lr on `loss`, minus
        its loss now. `loss`'s graph is kept for the real backward pass."""
        named = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]
        # they overflow the loss scale only where the training loss's do, and the scaler skips that step
        gradients = self.gradients(loss, [p for _, p in named], retain_graph=True, require_finite=False)
        stepped = {
            name: p.detach() if g is None else p.detach() - self.lr * g for (name, p), g in zip(named, gradients)
        }
        with evaluating(self.model) as model:
            before = F.cross_entropy(model(x), y, reduction="none")
            after = F.cross_entropy(functional_call(model, stepped, (x,)), y, reduction="none")
        return after - before

    def training_step(self, batch: Batch) -> torch.Tensor:
        candidates = self.draw_replay(self.candidates)
        self.remember(self.stored_fields(batch))  # before the passes: the next step's candidates travel during them
        loss = F.cross_entropy(self.learner(batch.x), batch.y)
        if candidates:
            scores = self.interference(loss, candidates["x"], candidates["y"])
            chosen = scores.topk(min(self.replay_count(len(batch.y)), len(scores))).indices
            loss = loss + F.cross_entropy(self.learner(candidates["x"][chosen]), candidates["y"][chosen])
        return loss
