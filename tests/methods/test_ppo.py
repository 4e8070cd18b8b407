"""`ppo`: its advantages and objective against hand computations, that it learns, and its
networks as the learner of a continual-learning method."""

from __future__ import annotations

import pytest
import torch

from sylvan.methods import METHODS
from sylvan.methods.core.on_agent import OnAgent
from sylvan.methods.parts.policy_gradient import advantages_and_returns, clipped_objective
from sylvan.settings import IncrementalRLSetting, TraditionalRLSetting
from tests.conftest import RL_ENVS, TINY_RL


def test_advantages_are_generalized_advantage_estimates_within_each_episode():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0])
    values = torch.tensor([0.5, 1.0, 1.5, 2.0])
    next_values = torch.tensor([1.0, 1.5, 9.0, 3.0])  # step 2 ends its episode: its next value is not followed
    terminated = torch.tensor([0.0, 0.0, 1.0, 0.0])
    ended = torch.tensor([0.0, 0.0, 1.0, 1.0])  # step 3 is truncated: bootstrapped with its next value
    gamma, lam = 0.9, 0.8
    deltas = [1 + 0.9 * 1.0 - 0.5, 2 + 0.9 * 1.5 - 1.0, 3 - 1.5, 4 + 0.9 * 3.0 - 2.0]
    a3 = deltas[3]
    a2 = deltas[2]
    a1 = deltas[1] + gamma * lam * a2
    a0 = deltas[0] + gamma * lam * a1
    advantages, returns = advantages_and_returns(rewards, values, next_values, terminated, ended, gamma, lam)
    torch.testing.assert_close(advantages, torch.tensor([a0, a1, a2, a3]))
    torch.testing.assert_close(returns, advantages + values)


def test_the_clipped_objective_takes_the_pessimistic_bound():
    old = torch.zeros(3)
    new = torch.log(torch.tensor([1.5, 0.5, 1.1]))
    advantages = torch.tensor([1.0, -1.0, 2.0])
    # ratios 1.5 (clipped to 1.2 for a positive advantage), 0.5 (clipped to 0.8: -0.8 > -0.5... min is -0.8), 1.1
    expected = -(1.2 * 1.0 + min(0.5 * -1.0, 0.8 * -1.0) + 1.1 * 2.0) / 3
    assert float(clipped_objective(new, old, advantages, 0.2)) == pytest.approx(expected)


def test_ppo_learns_cartpole():
    setting = TraditionalRLSetting(nb_tasks=1, steps_per_task=12_000, eval_episodes=5, accelerator="cpu", seed=0)
    results = setting.apply(METHODS["ppo"](n_steps=512, batch_size=64))
    assert results.accuracy_matrix[-1][0] > results.initial_accuracies[0] + 50  # 77 -> 149 with seed 0


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_ppo_is_the_learner_of_a_continual_learning_method(kind):
    setting = IncrementalRLSetting(**{**TINY_RL, "env": RL_ENVS[kind]})
    pair = OnAgent(METHODS["ewc"](ewc_lambda=100.0), METHODS["ppo"](n_steps=64, batch_size=32, n_epochs=2))
    results = setting.apply(pair)
    part = pair.agent.parts["ewc"]
    assert set(part.importance) == {"policy"} and len(results.accuracy_matrix) == 2
    assert all(float(value.sum()) > 0 for value in part.importance["policy"].values())
    assert sum(results.samples_seen) == setting.total_steps
