"""SAC's networks (a squashed Gaussian policy, twin Q-networks over observations and actions), and
the views of the agents' networks that importances are computed over (`OutputDistribution`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from sylvan.methods.core.agent import OutputDistribution
from sylvan.models import MLP

LOG_STD_RANGE = (-5.0, 2.0)  # the policy's log standard deviation is squashed into this range


class SquashedGaussianPolicy(nn.Module):
    """Observation -> a Gaussian over pre-squash actions; actions are tanh of a draw, scaled from
    [-1, 1] into [low, high]."""

    def __init__(self, observation_shape: tuple[int, ...], low: torch.Tensor, high: torch.Tensor, hidden: int,
                 layers: int = 2) -> None:
        super().__init__()
        self.net = MLP(observation_shape, 2 * len(low), (hidden,) * layers)
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("half_range", (high - low) / 2)

    def _gaussian(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(observations).chunk(2, dim=-1)
        low, high = LOG_STD_RANGE
        log_std = low + 0.5 * (high - low) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions drawn with the reparameterization trick, their log-probabilities)."""
        mean, log_std = self._gaussian(observations)
        std = log_std.exp()
        noise = torch.randn_like(mean)
        pre_squash = mean + std * noise
        squashed = torch.tanh(pre_squash)
        # log N(pre_squash) minus the log-determinant of the squash and of the scaling
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - torch.log(self.half_range * (1 - squashed.pow(2)) + 1e-6).sum(-1)
        return self.center + self.half_range * squashed, log_prob

    def mean_action(self, observations: torch.Tensor) -> torch.Tensor:
        mean, _ = self._gaussian(observations)
        return self.center + self.half_range * torch.tanh(mean)


class TwinQ(nn.Module):
    """Two independent Q-networks over (observation, action)."""

    def __init__(self, observation_size: int, action_size: int, hidden: int, layers: int = 2) -> None:
        super().__init__()
        self.q1 = MLP((observation_size + action_size,), 1, (hidden,) * layers)
        self.q2 = MLP((observation_size + action_size,), 1, (hidden,) * layers)

    def forward(self, observations: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        joined = torch.cat([observations.flatten(1), actions], dim=1)
        return self.q1(joined).squeeze(1), self.q2(joined).squeeze(1)


class PolicyGaussian(OutputDistribution):
    """A squashed Gaussian policy's mean and log standard deviation (before the squash) at the
    stored observations."""

    def forward(self, transitions: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.network._gaussian(transitions["obs"])


class TwinQValues(OutputDistribution):
    """Both Q-values of the stored (observation, action), as a (batch, 2) mean."""

    def forward(self, transitions: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.stack(self.network(transitions["obs"], transitions["action"]), dim=-1), None


class QValues(OutputDistribution):
    """Every action's Q-value of the stored observation, as the mean."""

    def forward(self, transitions: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.network(transitions["obs"]), None
