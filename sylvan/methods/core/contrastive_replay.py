"""The base of the contrastive replay methods (`scr`, `pcr`, `co2l`): each step's minibatch
joined by a replay draw, and every input of the two by a random view of it (`ContrastiveViews`),
drawn with a seed of the method's own and checkpointed with it. Those that contrast projections
of the features rather than logits (`scr`, `co2l`) add a projection head
(`sylvan.methods.parts.projection`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods.core.replay import ReplayMethod
from sylvan.methods.core.supervised import Batch
from sylvan.methods.parts.contrastive import ContrastiveViews
from sylvan.methods.parts.projection import with_projection_head


@dataclass
class ContrastiveReplayMethod(ReplayMethod):
    """A replay method that trains on the minibatch, a replay draw and a random view of each."""

    views_seed: ClassVar[int] = 40_009  # seed offset of the views' draws (`Workers.seed`)

    crop_scale: float = 0.2  # smallest area of a view's crop, as a fraction of the image's

    state_attributes: ClassVar[tuple[str, ...]] = ("views",)

    def validate(self) -> None:
        super().validate()
        self.require_in(0, 1, "crop_scale", low_open=True)

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        if len(setting.input_shape) != 3:
            raise ConfigurationError(
                f"{self.name} contrasts random crops of images (channels, height, width); {setting.dataset}'s inputs "
                f"have shape {tuple(setting.input_shape)}"
            )

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.views = ContrastiveViews(seed=self.run.workers.seed(self.views_seed), crop_scale=self.crop_scale)

    def with_projection(self, model: nn.Module, name: str) -> nn.Module:
        """`model` (the backbone `name`) with the projection head the method contrasts in, of
        `projection_dim` outputs (`sylvan.methods.parts.projection`)."""
        return with_projection_head(model, name, self.projection_dim, self.name)

    def with_views(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's inputs and labels: the minibatch joined by a replay draw (the minibatch is
        stored first, so that the next step's draw travels during this step's passes), then a
        random view of each of them, labelled alike."""
        replay = self.draw_replay(self.replay_count(len(batch.y)))
        self.remember(self.stored_fields(batch))
        x, y = batch.x, batch.y
        if replay:
            x, y = torch.cat([x, replay["x"].to(x.device)]), torch.cat([y, replay["y"].to(y.device)])
        return torch.cat([x, self.views(x)]), y.repeat(2)
