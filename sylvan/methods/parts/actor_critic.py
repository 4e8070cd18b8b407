"""SAC's networks (a squashed Gaussian policy, twin Q-networks over observations and actions), with
one output head per task where asked (`heads` > 1: Continual World's multi-head networks, the task
chosen by the one-hot task id that ends each observation, which the networks' bodies do not see),
and the views of the agents' networks that importances are computed over (`OutputDistribution`)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods.core.agent import OutputDistribution
from sylvan.models import MLP

LOG_STD_RANGE = (-5.0, 2.0)  # the policy's log standard deviation is squashed into this range


def task_heads(run: Any, multihead: bool) -> int:
    """The output heads of a network on `run`: one per task where `multihead` (refused where the
    observations carry no task id), else one."""
    if not multihead:
        return 1
    if not run.task_id_in_observation:
        raise ConfigurationError(
            f"--multihead picks a head by the task id, and {run.name} gives none: run it on task_incremental_rl "
            "or multi_task_rl"
        )
    return run.nb_tasks


class TaskHeads(MLP):
    """An MLP with `heads` output heads of `outputs` numbers each, over inputs whose last `heads`
    entries are a one-hot task id: the body reads the inputs before it, the id picks the head
    (one head: the MLP over the whole input)."""

    def __init__(self, input_size: int, outputs: int, hidden: int, layers: int, heads: int = 1,
                 continual_world: bool = False) -> None:
        body = (hidden,) * layers
        super().__init__((input_size - (heads if heads > 1 else 0),), outputs * heads, body, continual_world)
        self.heads, self.outputs = heads, outputs

    def forward(self, inputs: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`task_ids`: the one-hot ids where they are not the inputs' last entries."""
        if self.heads == 1:
            return super().forward(inputs)
        if task_ids is None:
            inputs, task_ids = inputs[:, : -self.heads], inputs[:, -self.heads :]
        out = super().forward(inputs).view(len(inputs), self.heads, self.outputs)
        return (out * task_ids.unsqueeze(-1)).sum(1)


class SquashedGaussianPolicy(nn.Module):
    """Observation -> a Gaussian over pre-squash actions; actions are tanh of a draw, scaled from
    [-1, 1] into [low, high]."""

    def __init__(self, observation_shape: tuple[int, ...], low: torch.Tensor, high: torch.Tensor, hidden: int,
                 layers: int = 2, heads: int = 1, continual_world: bool = False) -> None:
        super().__init__()
        self.net = TaskHeads(math.prod(observation_shape), 2 * len(low), hidden, layers, heads, continual_world)
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("half_range", (high - low) / 2)

    def _gaussian(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(observations.flatten(1)).chunk(2, dim=-1)
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

    def __init__(self, observation_size: int, action_size: int, hidden: int, layers: int = 2, heads: int = 1,
                 continual_world: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.q1 = TaskHeads(observation_size + action_size, 1, hidden, layers, heads, continual_world)
        self.q2 = TaskHeads(observation_size + action_size, 1, hidden, layers, heads, continual_world)

    def forward(self, observations: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        observations = observations.flatten(1)
        task_ids = None
        if self.heads > 1:
            observations, task_ids = observations[:, : -self.heads], observations[:, -self.heads :]
        joined = torch.cat([observations, actions], dim=1)
        return self.q1(joined, task_ids).squeeze(1), self.q2(joined, task_ids).squeeze(1)


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
