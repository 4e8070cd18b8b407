"""`ppo`: its advantages and objective against hand computations, that it learns, and its
networks as the learner of a continual-learning method."""

from __future__ import annotations

import pytest
import torch

from sylvan.errors import ConfigurationError
from sylvan.methods import METHODS
from sylvan.methods.core.on_agent import OnAgent
from sylvan.methods.parts.policy_gradient import (
    PolicyAndValue,
    StochasticPolicy,
    advantages_and_returns,
    clipped_objective,
    tanh_mlp,
)
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


def test_the_policy_loss_is_the_clipped_objective_less_the_weighted_entropy():
    torch.manual_seed(0)
    policy = StochasticPolicy((3,), 2, True, 8)
    both = PolicyAndValue(policy, tanh_mlp(3, 1, 8, 1.0))
    batch = {"obs": torch.randn(5, 3), "action": torch.randn(5, 2), "log_prob": torch.randn(5)}
    advantages, returns = torch.randn(5), torch.randn(5)
    without, value_loss = both.ppo_losses(batch, advantages, returns, 0.2, 0.0, 0.5)
    with_bonus, same_value_loss = both.ppo_losses(batch, advantages, returns, 0.2, 0.1, 0.5)
    distribution = policy.distribution(batch["obs"])
    normalized = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    objective = clipped_objective(policy.log_prob(distribution, batch["action"]), batch["log_prob"], normalized, 0.2)
    torch.testing.assert_close(without, objective)
    torch.testing.assert_close(with_bonus, objective - 0.1 * policy.entropy(distribution).mean())
    torch.testing.assert_close(value_loss, 0.5 * ((both.values(batch["obs"]) - returns) ** 2).mean())
    assert torch.equal(value_loss, same_value_loss)


@pytest.mark.parametrize("n_envs", [1, 4])
def test_ppo_learns_cartpole(n_envs):
    """With one environment, or four stepped together (128 steps of each per update)."""
    setting = TraditionalRLSetting(nb_tasks=1, steps_per_task=12_000, eval_episodes=5, accelerator="cpu", seed=0)
    results = setting.apply(METHODS["ppo"](n_steps=512 // n_envs, batch_size=64, n_envs=n_envs))
    assert results.accuracy_matrix[-1][0] > results.initial_accuracies[0] + 50  # seed 0: 77 -> 149 (one), -> 500 (four)


@pytest.mark.parametrize("n_envs", [1, 3])
def test_each_gradient_step_of_an_update_is_a_step_of_the_runs_loop(monkeypatch, n_envs):
    """The run's callbacks (the FLOP count's sampling, the training log) see every gradient step
    of an update as a `learn` step of the loop, and every action as an `act` step."""
    from sylvan.run.engine import LoopStep

    kinds: list[str] = []
    enter = LoopStep.__enter__

    def watched(step: LoopStep):
        kinds.append(step.kind)
        return enter(step)

    monkeypatch.setattr(LoopStep, "__enter__", watched)
    setting = IncrementalRLSetting(**{**TINY_RL, "nb_tasks": 1, "steps_per_task": 96})
    ppo = METHODS["ppo"](n_steps=48 // n_envs, batch_size=16, n_epochs=2, n_envs=n_envs)
    setting.apply(ppo)
    assert ppo.gradient_steps == 2 * 2 * 3  # 2 updates x 2 epochs x 3 minibatches
    assert kinds.count("learn") == ppo.gradient_steps and kinds.count("act") == 96 // n_envs


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_on_copies_a_rollout_holds_n_steps_of_each_copy_each_in_its_time_order(kind):
    """`--n_envs 3`: an update every 16 steps of each copy, on 48 transitions, copy after copy,
    each copy's last ending GAE's sum; the actions' kinds as with one environment."""
    setting = IncrementalRLSetting(**{**TINY_RL, "env": RL_ENVS[kind], "nb_tasks": 1, "steps_per_task": 96})
    ppo = METHODS["ppo"](n_steps=16, batch_size=16, n_epochs=2, n_envs=3)
    results = setting.apply(ppo)
    rollout = ppo.last_rollout
    assert len(rollout["obs"]) == 48 and ppo.steps == 96 and sum(results.samples_seen) == 96
    assert ppo.gradient_steps == 2 * 2 * 3  # 2 updates x 2 epochs x 3 minibatches
    assert rollout["ended"][[15, 31, 47]].tolist() == [1.0, 1.0, 1.0]
    follows = (rollout["obs"][1:16] == rollout["next_obs"][:15]).all(1)  # copy 0 in time order, but at resets
    assert bool((follows | (rollout["ended"][:15] > 0)).all())
    assert rollout["action"].dtype == (torch.int64 if kind == "discrete" else torch.float32)
    assert not torch.equal(rollout["obs"][0], rollout["obs"][16])  # the copies are seeded apart


def test_ppo_on_copies_is_the_learner_of_a_continual_learning_method():
    setting = IncrementalRLSetting(**TINY_RL)
    pair = OnAgent(METHODS["ewc"](ewc_lambda=100.0), METHODS["ppo"](n_steps=50, batch_size=50, n_epochs=1, n_envs=2))
    results = setting.apply(pair)
    assert pair.environment_copies == 2 and sum(results.samples_seen) == setting.total_steps
    assert all(float(value.sum()) > 0 for value in pair.agent.parts["ewc"].importance["policy"].values())


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_ppo_is_the_learner_of_a_continual_learning_method(kind):
    setting = IncrementalRLSetting(**{**TINY_RL, "env": RL_ENVS[kind]})
    pair = OnAgent(METHODS["ewc"](ewc_lambda=100.0), METHODS["ppo"](n_steps=64, batch_size=32, n_epochs=2))
    results = setting.apply(pair)
    part = pair.agent.parts["ewc"]
    assert set(part.importance) == {"policy"} and len(results.accuracy_matrix) == 2
    assert all(float(value.sum()) > 0 for value in part.importance["policy"].values())
    assert sum(results.samples_seen) == setting.total_steps


def test_copies_that_cannot_share_the_steps_are_refused_before_the_run():
    setting = IncrementalRLSetting(**{**TINY_RL, "steps_per_task": 302})
    with pytest.raises(ConfigurationError, match=r"--n_envs 4 steps that many environments at once: --steps_per_task"):
        setting.apply(OnAgent(METHODS["ewc"](), METHODS["ppo"](n_envs=4)))
