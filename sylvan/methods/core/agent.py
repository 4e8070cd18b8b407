"""The base of reinforcement-learning agents (`dqn`, `sac`): a method that learns in an
environment by an algorithm of its own, and the learner continual-learning methods apply their
parts to on the reinforcement-learning branch (`sylvan.methods.core.on_agent`).

What a part sees of an agent: the networks it trains, by name (`networks`); what the part adds to
each network's loss (`part_loss`, called by the agent's `learn` for every loss it minimizes);
transitions drawn from the agent's replay memory (`sample_transitions`); and, for the importances of
the weight-regularization methods, each network's outputs as a Gaussian over them
(`output_distribution`): the mean, and the log standard deviation where the network has one.
The task hooks reach the parts as on the supervised branch (`Method.on_task_end`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from sylvan.methods.core.base import Method
from sylvan.settings.base import Setting
from sylvan.settings.continual_rl import ContinualRLSetting


class OutputDistribution(nn.Module):
    """A view of one of an agent's networks whose forward maps a batch of transitions (a dict of
    tensors) to (mean, log standard deviation or None), each (batch, outputs): what an importance
    is computed over. Its parameters are the network's, under the prefix "network."."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, transitions: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


@dataclass
class Agent(Method):
    """An agent: acts in the environment the setting hands `fit`, learns by its algorithm, and
    takes the parts of the continual-learning method it is the learner of."""

    target_setting: ClassVar[type[Setting]] = ContinualRLSetting
    is_agent: ClassVar[bool] = True

    def networks(self) -> dict[str, nn.Module]:
        """The networks it trains by gradient descent, by name (float32 modules, not the run's
        wrappers): what a part anchors, masks or projects."""
        raise NotImplementedError

    def output_distribution(self, network: str) -> OutputDistribution:
        """The view of the network `network` that the importances of weight-regularization
        methods are computed over (`sylvan.methods.parts.agent_importance`)."""
        raise NotImplementedError

    def sample_transitions(self, count: int) -> dict[str, torch.Tensor]:
        """`count` transitions drawn from its replay memory (fields "obs", "action", "reward",
        "next_obs", "terminal"), on its device."""
        raise NotImplementedError

    def part_loss(self, network: str, loss: torch.Tensor) -> torch.Tensor:
        """`loss` (of the network `network`) plus what each part it holds adds to it (an
        anchor's penalty, a cloned policy's divergence); `loss` itself where none adds anything,
        so that an agent alone trains exactly as without parts."""
        for part in self.parts.values():
            extra = part.agent_loss(network) if hasattr(part, "agent_loss") else None
            if extra is not None:
                loss = loss + extra.to(loss.dtype)
        return loss
