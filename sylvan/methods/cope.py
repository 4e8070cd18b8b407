"""`cope`: Continual Prototype Evolution (De Lange & Tuytelaars, "Continual Prototype Evolution:
Learning Online from Non-Stationary Data Streams", ICCV 2021).

How it follows its paper, and what it adds: docs/method-notes.md, section cope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.methods.core.replay import ReplayMethod
from sylvan.methods.core.supervised import Batch
from sylvan.methods.parts.nearest_mean import class_feature_sums
from sylvan.methods.parts.prototypes import evolved_prototypes, ppp_loss
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting

PROTOTYPES_SEED = 50_023  # seed offset of the prototypes' random starting directions (the run's seed, every worker)


@dataclass
class CoPE(ReplayMethod):
    """CoPE: an embedding learned by the PPP loss on the minibatch and a class-balanced replay;
    prototypes that follow their class's embeddings by momentum; nearest-prototype predictions."""

    name: ClassVar[str] = "cope"
    target_setting: ClassVar[type[Setting]] = OnlineSetting  # needs no boundaries: runs everywhere

    lr: float = 0.01  # learning rate
    # which samples the buffer keeps: class_balanced (an equal share per class seen), reservoir, prs, gdumb,
    # herding, fifo, gss, ring or aser
    buffer_policy: str = "class_balanced"
    embedding_dim: int = 100  # units of the L2-normalized embedding (the network's output layer) the prototypes live in
    temperature: float = 0.1  # T of the pseudo-prototypical proxy loss
    prototype_momentum: float = 0.99  # alpha: how much of a prototype stays at each step's update

    state_attributes: ClassVar[tuple[str, ...]] = ("prototypes", "known")

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "embedding_dim")
        self.require_at_least(0, "temperature", strict=True)
        self.require_in(0, 1, "prototype_momentum", high_open=True)

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, self.with_embedding)

    def with_embedding(self, model: nn.Module, name: str) -> nn.Module:
        """`model` whose classifier is replaced by a linear embedding layer of `embedding_dim`
        units; a `ConfigurationError` for a network without `features` and `feature_dim`."""
        self.require_feature_layers(model, name, "puts an embedding layer on the backbone's features")
        model.classifier = nn.Linear(model.feature_dim, self.embedding_dim)
        return model

    def build_model(self) -> nn.Module:
        return self.with_embedding(super().build_model(), self.backbone_name(self.run))

    def configure(self, run: Any) -> None:
        super().configure(run)
        draws = torch.Generator().manual_seed(run.seed + PROTOTYPES_SEED)
        starts = torch.rand(run.num_classes, self.embedding_dim, generator=draws)
        self.prototypes = F.normalize(starts, dim=1)  # (classes, embedding_dim), each a unit vector
        self.known = torch.zeros(run.num_classes, dtype=torch.bool)  # classes seen: their prototypes count
        self._step_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None  # (embeddings, labels) of the step

    def prototypes_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The prototypes and the mask of known classes, moved to `device` (once, when the
        network has moved)."""
        if self.prototypes.device != device:
            self.prototypes, self.known = self.prototypes.to(device), self.known.to(device)
        return self.prototypes, self.known

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The L2-normalized embeddings of `x` (in float32, whatever the precision of the pass)."""
        return F.normalize(self.learner(x).float(), dim=1)

    def training_step(self, batch: Batch) -> torch.Tensor:
        replay = self.draw_replay(self.replay_count(len(batch.y)))
        self.remember(self.stored_fields(batch))  # before the forward pass: the next step's candidates travel during it
        x, y = batch.x, batch.y
        if replay:
            x, y = torch.cat([x, replay["x"]]), torch.cat([y, replay["y"].to(y.device)])
        embeddings = self.embed(x)
        prototypes, known = self.prototypes_on(embeddings.device)
        known = known.clone()
        known[y] = True  # a class seen for the first time has its prototype from this step on
        self._step_embeddings = (embeddings.detach(), y)
        return ppp_loss(embeddings, y, prototypes, known, self.temperature)

    def after_step(self) -> None:
        """Move each prototype towards its class's embeddings of the step (summed over every
        worker on data-parallel settings)."""
        super().after_step()
        if self._step_embeddings is None:
            return
        (embeddings, labels), self._step_embeddings = self._step_embeddings, None
        sums, counts = class_feature_sums(embeddings, labels, len(self.known))
        self.run.workers.sum(sums, counts)
        prototypes, known = self.prototypes_on(embeddings.device)
        self.prototypes = evolved_prototypes(prototypes, sums, counts, self.prototype_momentum)
        self.known = known | (counts > 0)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """The cosine of each sample's embedding with each known class's prototype (-inf for the
        classes not seen yet); 0 for every class while none is known."""
        embeddings = self.embed(x)
        prototypes, known = self.prototypes_on(embeddings.device)
        if not bool(known.any()):
            return self.mask_to_tasks(torch.zeros(len(x), len(known), device=x.device), task_labels)
        cosines = (embeddings @ prototypes.T).masked_fill(~known, float("-inf"))
        return self.mask_to_tasks(cosines, task_labels)
