"""What on-policy agents (`ppo`) are made of: a stochastic policy over discrete or continuous
actions and a value network (separate MLPs with tanh, initialized orthogonally as
stable-baselines3 does), generalized advantage estimation, and the clipped surrogate objective;
and the views of both networks that importances are computed over (`OutputDistribution`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

from sylvan.methods.core.agent import OutputDistribution, Transitions


def tanh_mlp(input_size: int, output_size: int, hidden: int, output_gain: float) -> nn.Sequential:
    """Flatten, two tanh hidden layers and a linear output, weights orthogonal (gain sqrt(2), and
    `output_gain` for the output layer), biases zero."""
    layers = [nn.Flatten(), nn.Linear(input_size, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
              nn.Linear(hidden, output_size)]
    linear = [layer for layer in layers if isinstance(layer, nn.Linear)]
    for layer in linear:
        nn.init.orthogonal_(layer.weight, gain=output_gain if layer is linear[-1] else math.sqrt(2))
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class StochasticPolicy(nn.Module):
    """Observation -> a categorical over the discrete actions (logits), or a Gaussian over the
    continuous ones (mean; log standard deviation a parameter of its own, state-independent)."""

    def __init__(self, observation_shape: Sequence[int], num_actions: int, continuous: bool, hidden: int) -> None:
        super().__init__()
        self.net = tanh_mlp(math.prod(observation_shape), num_actions, hidden, output_gain=0.01)
        self.log_std = nn.Parameter(torch.zeros(num_actions)) if continuous else None

    def outputs(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits or mean, log standard deviation per row, or None) for a batch of observations."""
        out = self.net(observations)
        return out, None if self.log_std is None else self.log_std.expand_as(out)

    def distribution(self, observations: torch.Tensor) -> Distribution:
        out, log_std = self.outputs(observations)
        return Categorical(logits=out) if log_std is None else Normal(out, log_std.exp())

    def log_prob(self, distribution: Distribution, actions: torch.Tensor) -> torch.Tensor:
        """Each action's log-probability (summed over the components of a continuous one)."""
        found = distribution.log_prob(actions)
        return found if self.log_std is None else found.sum(-1)

    def entropy(self, distribution: Distribution) -> torch.Tensor:
        found = distribution.entropy()
        return found if self.log_std is None else found.sum(-1)

    def mode(self, observations: torch.Tensor) -> torch.Tensor:
        """The logits (the best action is their argmax) or the mean action."""
        return self.net(observations)


class PolicyAndValue(nn.Module):
    """The policy and the value network, set up on the run as one module (one optimizer, one
    gradient norm: stable-baselines3's)."""

    def __init__(self, policy: StochasticPolicy, value: nn.Module) -> None:
        super().__init__()
        self.policy, self.value = policy, value

    def values(self, observations: torch.Tensor) -> torch.Tensor:
        return self.value(observations).squeeze(-1)

    def advantages(self, rollout: Transitions, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE's advantages and the value's targets over a rollout (`advantages_and_returns`)."""
        with torch.no_grad():
            values, next_values = self.values(rollout["obs"]), self.values(rollout["next_obs"])
        return advantages_and_returns(rollout["reward"], values, next_values, rollout["terminal"], rollout["ended"],
                                      gamma, gae_lambda)

    def ppo_losses(self, batch: Transitions, advantages: torch.Tensor, returns: torch.Tensor, clip_range: float,
                   ent_coef: float, vf_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy's loss (the clipped objective, advantages normalized over the minibatch, less
        `ent_coef` x the entropy) and the value's (`vf_coef` x its squared error to the returns)."""
        if len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        distribution = self.policy.distribution(batch["obs"])
        log_prob = self.policy.log_prob(distribution, batch["action"])
        policy_loss = clipped_objective(log_prob, batch["log_prob"], advantages, clip_range)
        if ent_coef:  # at 0 (the default) its terms would add exact zeros: left out, with their backward pass
            policy_loss = policy_loss - ent_coef * self.policy.entropy(distribution).mean()
        return policy_loss, vf_coef * F.mse_loss(self.values(batch["obs"]), returns)

    def remembered_loss(self, network: str, batch: Transitions, gamma: float) -> torch.Tensor:
        """On remembered transitions: the policy's negative log-likelihood of their actions, or the
        value's squared TD(0) error."""
        if network == "policy":
            return -self.policy.log_prob(self.policy.distribution(batch["obs"]), batch["action"]).mean()
        with torch.no_grad():
            target = batch["reward"] + gamma * (1 - batch["terminal"]) * self.values(batch["next_obs"])
        return F.mse_loss(self.values(batch["obs"]), target)


class PolicyOutputs(OutputDistribution):
    """The policy's logits (a Gaussian of unit variance about each), or its mean and log standard deviation."""

    def forward(self, transitions: Transitions) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.network.outputs(transitions["obs"])


class ValueOutputs(OutputDistribution):
    """The value of the stored observation, as a (batch, 1) mean."""

    def forward(self, transitions: Transitions) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.network(transitions["obs"]), None


def advantages_and_returns(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
                           terminated: torch.Tensor, ended: torch.Tensor, gamma: float,
                           gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over a rollout in time order: delta_t = r_t + gamma V(s_t+1) (0 where terminated) -
    V(s_t), A_t = delta_t + gamma lambda A_t+1 within an episode (an episode that `ended` here,
    terminated or truncated, starts the sum again); the returns A + V are the value's targets."""
    advantages = torch.zeros_like(rewards)
    following = torch.zeros(())
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
        following = delta + gamma * gae_lambda * (1.0 - ended[t]) * following
        advantages[t] = following
    return advantages, advantages + values


def clipped_objective(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                      clip_range: float) -> torch.Tensor:
    """PPO's loss: -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A), averaged."""
    ratio = torch.exp(log_prob - old_log_prob)
    return -torch.min(ratio * advantages, ratio.clamp(1 - clip_range, 1 + clip_range) * advantages).mean()
