"""`dqn`: it learns CartPole, stores transitions as DQN must, and refuses what it cannot do."""

from __future__ import annotations

import pytest
import torch

from sylvan.errors import ConfigurationError
from sylvan.methods import DQN
from sylvan.settings import IncrementalRLSetting
from tests.conftest import TINY_RL, tiny_method


def test_learns_to_balance_the_pole():
    """4,000 steps of one CartPole task take the greedy return from about 12 (the untrained
    network) to 80 to 160 (seeds 0 to 3); a broken update, target or replay stays near 10 to 40."""
    setting = IncrementalRLSetting(nb_tasks=1, steps_per_task=4000, eval_episodes=5, seed=0, accelerator="cpu")
    results = setting.apply(DQN(learning_starts=500, exploration_steps=2000))
    assert results.initial_accuracies[0] < 30
    assert results.accuracy_matrix[0][0] > 70


@pytest.mark.parametrize("policy", ["fifo", "reservoir"])
def test_the_replay_memory_holds_the_stream_of_transitions(policy):
    setting = IncrementalRLSetting(**TINY_RL)
    method = tiny_method(DQN, buffer_policy=policy, buffer_size=150)
    results = setting.apply(method)
    buffer = method.buffer
    assert buffer.seen == sum(results.samples_seen) == 600 and len(buffer) == 150
    stored = buffer.get_all()
    assert stored["obs"].shape == stored["next_obs"].shape == (150, 4)
    assert set(stored["action"].tolist()) <= {0, 1} and set(stored["terminal"].tolist()) <= {0.0, 1.0}
    # CartPole pays 1 per step, also on the step that ends the episode
    assert torch.equal(stored["reward"], torch.ones(150))
    assert method.gradient_steps > 0


@pytest.mark.parametrize("limit", [5, 200])
def test_a_time_limit_is_not_a_terminal_state(limit):
    """Pushing left every step, the pole falls after about ten steps. With a limit of 5 steps
    every episode is cut (truncated): the value of its last state is still bootstrapped, so no
    transition is terminal. With a limit of 200 every episode ends by the fall: each ends in
    one terminal transition."""

    class AlwaysLeft(DQN):
        def act(self, observation):
            return 0

    setting = IncrementalRLSetting(**{**TINY_RL, "nb_tasks": 1, "max_episode_steps": limit})
    method = AlwaysLeft(learning_starts=50, buffer_size=400)
    results = setting.apply(method)
    terminals = float(method.buffer.get_all()["terminal"].sum())
    assert results.episodes_seen[0] > 10
    assert terminals == (0.0 if limit == 5 else results.episodes_seen[0])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"buffer_policy": "class_balanced"}, "no class label"),
        ({"gamma": 1.5}, r"--gamma must be in \[0, 1\]"),
        ({"epsilon_end": -0.1}, r"--epsilon_end must be in \[0, 1\]"),
        ({"lr": 0.0}, "--lr must be > 0"),
        ({"replay_size": 0}, "--replay_size must be >= 1"),
        ({"exploration_steps": 0}, "--exploration_steps must be >= 1"),
    ],
)
def test_bad_hyperparameters_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        DQN(**options)


def test_epsilon_decays_linearly_then_stays():
    method = DQN(epsilon_start=1.0, epsilon_end=0.1, exploration_steps=100)
    method.steps = 0
    assert method.epsilon == 1.0
    method.steps = 50
    assert method.epsilon == pytest.approx(0.55)
    method.steps = 1000
    assert method.epsilon == pytest.approx(0.1)
