"""`er_aml`: experience replay with asymmetric metric learning (Caccia et al., "New Insights on
Reducing Abrupt Representation Change in Online Continual Learning", ICLR 2022; `er_ace` is the
paper's other method).

How it follows its paper, and what it adds: docs/method-notes.md, section er_aml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.errors import ConfigurationError, refuse_if_given
from sylvan.methods.core.replay import ReplayMethod
from sylvan.methods.core.supervised import Batch
from sylvan.methods.parts.metric_learning import ContrastPool, asymmetric_contrastive_loss, contrast_pairs
from sylvan.models.cosine import CosineClassifier
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting
from sylvan.transfer import to_device

CONTRAST_DRAWS_SEED = 30_011  # seed offset of the positives' and negatives' draws (`Workers.seed`)


@dataclass
class ERAML(ReplayMethod):
    """ER-AML: supervised contrastive learning for incoming samples, cross-entropy for replayed ones."""

    name: ClassVar[str] = "er_aml"
    target_setting: ClassVar[type[Setting]] = OnlineSetting  # needs no boundaries: runs everywhere

    lr: float = 0.1  # learning rate
    replay_size: int = 10  # r: samples replayed with each minibatch (0: as many as the batch size)
    temperature: float = 0.2  # tau: the temperature of the incoming samples' contrastive loss
    base_temperature: float = 0.07  # tau_b: the loss is scaled by tau / tau_b
    contrast_pool: int = 0  # stored samples drawn each step to pick positives and negatives from (0: --buffer_size)
    cosine_classifier: bool = True  # classify by a scaled cosine, as the authors do (false: the backbone's linear one)
    classifier_scale: float = 10.0  # the cosine classifier's fixed scale

    state_attributes: ClassVar[tuple[str, ...]] = ("contrast_draws",)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "temperature", "base_temperature", "classifier_scale", strict=True)
        self.require_at_least(0, "contrast_pool")
        if not self.cosine_classifier:
            refuse_if_given(
                self, "classifier_scale", "it scales the cosine classifier, and --cosine_classifier is false"
            )
        if self.buffer_size == 0:
            raise ConfigurationError(
                "--buffer_size must be at least 1: er_aml draws the incoming samples' positives and negatives from "
                "the buffer as well as the minibatch, and replays from it"
            )

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda backbone, name: self.with_classifier(backbone, name, setting.num_classes))

    def with_classifier(self, model: nn.Module, name: str, num_classes: int) -> nn.Module:
        """`model` with the cosine classifier (unless `cosine_classifier` is false); a
        `ConfigurationError` for a network without the `features` (and `feature_dim`) the
        contrastive loss is computed on."""
        self.require_feature_layers(model, name, "learns the incoming samples' features")
        if self.cosine_classifier:
            model.classifier = CosineClassifier(model.feature_dim, num_classes, scale=self.classifier_scale)
        return model

    def build_model(self) -> nn.Module:
        return self.with_classifier(super().build_model(), self.backbone_name(self.run), self.run.num_classes)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.contrast_draws = torch.Generator().manual_seed(self.run.workers.seed(CONTRAST_DRAWS_SEED))

    def contrast_count(self) -> int:
        return self.contrast_pool or self.buffer_size

    def replay_draws(self, batch_size: int) -> tuple[int, ...]:
        return (self.replay_count(batch_size), self.contrast_count())  # the replay, then the contrast pool

    def draw_contrast_pool(self) -> ContrastPool | None:
        """The step's contrast pool (None while nothing is stored). In one process, a uniform
        draw of slots of the local buffer, of which only the labels are gathered: with the
        default pool, the whole buffer, gathering every stored input would cost more than the
        step (a buffer of 5,000 MNIST digits: 15.7 MB per step). On data-parallel settings, the
        step's second draw from the global buffer, whole samples."""
        if self.replays_globally:
            pool = self.draw_replay(self.contrast_count(), augment=False)  # only the chosen few are augmented
            return ContrastPool(pool["y"], x=pool["x"]) if pool else None
        slots = self.replay.uniform_slots(self.contrast_count())
        if not len(slots):
            return None
        slots = to_device(slots, self.replay.device)
        return ContrastPool(self.replay.gather(slots, names=("y",))["y"], slots=slots)

    def chosen_inputs(self, pool: ContrastPool | None, incoming: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """The inputs of the candidates `chosen` (positions in the pool, then in the minibatch),
        as stored, without leaving the device: a stored and an incoming input are gathered for
        each and the right one kept."""
        if pool is None:
            return incoming[chosen]
        size = len(pool.y)
        index = chosen.clamp(max=size - 1)
        if pool.x is not None:
            stored = pool.x[index]
        else:
            stored = self.replay.gather(pool.slots[index.to(pool.slots.device)], names=("x",))["x"]
        from_pool = (chosen < size).view(-1, *[1] * (incoming.dim() - 1))
        return torch.where(from_pool, stored.to(incoming.device), incoming[(chosen - size).clamp(min=0)])

    def training_step(self, batch: Batch) -> torch.Tensor:
        replay = self.draw_replay(self.replay_count(len(batch.y)))
        if not replay:
            self.remember(self.stored_fields(batch))
            return F.cross_entropy(self.learner(batch.x), batch.y)
        pool = self.draw_contrast_pool()
        incoming = batch.x if batch.stored_x is None else batch.stored_x
        candidate_y = batch.y if pool is None else torch.cat([pool.y.to(batch.y.device), batch.y])
        keys = torch.rand(len(candidate_y), len(batch.y), generator=self.contrast_draws).to(candidate_y.device)
        positive, negative, valid = contrast_pairs(batch.y, candidate_y, keys)
        chosen = torch.cat([positive, negative])
        chosen_x = self.chosen_inputs(pool, incoming, chosen)  # before the new samples may take the pool's slots
        self.remember(self.stored_fields(batch))  # before the passes: the next step's candidates travel during them
        x = torch.cat([batch.x, self.augment_inputs(chosen_x), replay["x"]])
        features = self.model.features(x).flatten(1)
        anchors, contrast, replayed = features.split([len(batch.y), len(chosen), len(replay["y"])])
        incoming_loss = asymmetric_contrastive_loss(
            anchors, contrast, batch.y, candidate_y[chosen], valid, self.temperature, self.base_temperature
        )
        return incoming_loss + F.cross_entropy(self.model.classifier(replayed), replay["y"])
