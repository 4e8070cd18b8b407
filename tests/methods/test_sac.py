"""`sac`: it learns Pendulum, stores transitions as it must, acts within the bounds, and
refuses what it cannot do."""

from __future__ import annotations

import pytest
import torch

from sylvan.errors import ConfigurationError
from sylvan.methods import SAC
from sylvan.settings import IncrementalRLSetting
from tests.conftest import TINY_RL, tiny_method

PENDULUM = {**TINY_RL, "env": "Pendulum-v1"}


@pytest.mark.slow
def test_learns_to_swing_the_pendulum_up():
    """4,000 steps of one Pendulum task take the deterministic policy's return from about -1,200
    (the untrained network, and uniform random torques) to -200 to -75 (seeds 0 to 2, 20 s each
    on one core); a broken critic target, policy gradient or temperature stays below -700."""
    setting = IncrementalRLSetting(env="Pendulum-v1", nb_tasks=1, steps_per_task=4000, eval_episodes=5, seed=0,
                                   accelerator="cpu")
    results = setting.apply(SAC(learning_starts=500, hidden_size=128, replay_size=128))
    assert results.initial_accuracies[0] < -900
    assert results.accuracy_matrix[0][0] > -450


@pytest.mark.parametrize("policy", ["fifo", "reservoir"])
def test_the_replay_memory_holds_the_stream_of_transitions(policy):
    setting = IncrementalRLSetting(**PENDULUM)
    method = tiny_method(SAC, buffer_policy=policy, buffer_size=150)
    results = setting.apply(method)
    buffer = method.buffer
    assert buffer.seen == sum(results.samples_seen) == 600 and len(buffer) == 150
    stored = buffer.get_all()
    assert stored["obs"].shape == stored["next_obs"].shape == (150, 3) and stored["action"].shape == (150, 1)
    assert bool((stored["action"].abs() <= 2.0).all())  # within the torque bounds
    assert bool((stored["reward"] <= 0).all()) and not stored["terminal"].any()  # Pendulum only ends by time
    assert method.gradient_steps == 600 - 50 + 1  # one per step from --learning_starts on


def test_evaluation_acts_with_the_mean_within_the_bounds():
    setting = IncrementalRLSetting(**PENDULUM)
    method = tiny_method(SAC)
    method.configure(setting)
    observations = torch.randn(64, 3) * 10
    actions = method.predict(observations)
    assert actions.shape == (64, 1) and bool((actions.abs() <= 2.0).all())
    assert torch.equal(actions, method.predict(observations))  # deterministic
    drawn, log_prob = method.policy.sample(observations)
    assert drawn.shape == (64, 1) and log_prob.shape == (64,) and bool((drawn.abs() <= 2.0).all())


def test_the_squashed_log_probability_is_the_density_of_the_actions_drawn():
    """Where the policy's Gaussian is wide and off-center (mean 1, std 1 before the squash), much
    of its mass is pushed against the bound +2 by tanh: the log-probability must include the
    squash's and the scaling's corrections to match the histogram of the actions drawn."""
    setting = IncrementalRLSetting(**PENDULUM)
    method = tiny_method(SAC)
    method.configure(setting)
    classifier = method.policy.net.classifier
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.copy_(torch.tensor([1.0, 0.4581454]))  # log std squashed to 0.0
        torch.manual_seed(0)
        actions, log_prob = method.policy.sample(torch.zeros(400_000, 3))
    actions, density = actions.squeeze(1), log_prob.exp()
    edges = torch.linspace(-1.8, 1.9, 38)
    which = torch.bucketize(actions, edges) - 1
    for b in range(len(edges) - 1):
        inside = which == b
        empirical = float(inside.float().mean()) / float(edges[b + 1] - edges[b])
        assert float(density[inside].mean()) == pytest.approx(empirical, rel=0.08), float(edges[b])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"buffer_policy": "gdumb"}, "no class label"),
        ({"gamma": 1.5}, r"--gamma must be in \[0, 1\]"),
        ({"tau": -0.1}, r"--tau must be in \[0, 1\]"),
        ({"lr": 0.0}, "--lr must be > 0"),
        ({"initial_alpha": 0.0}, "--initial_alpha must be > 0"),
        ({"replay_size": 0}, "--replay_size must be >= 1"),
    ],
)
def test_bad_hyperparameters_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        SAC(**options)


def test_with_a_head_per_task_each_task_is_answered_by_its_own_head():
    """Continual World's multi-head SAC: the task id that ends the observations picks the head
    and is not an input of the layers below it; changing one task's head changes that task's
    actions and Q-values only."""
    from sylvan.settings import TaskIncrementalRLSetting

    setting = TaskIncrementalRLSetting(**PENDULUM)
    method = tiny_method(SAC, multihead=True)
    method.configure(setting)
    assert method.policy.net.features[1].in_features == 3 and method.critic.q1.features[1].in_features == 4
    observations = torch.randn(8, 3)
    task0, task1 = (torch.cat([observations, torch.eye(2)[[k] * 8]], dim=1) for k in (0, 1))
    actions = torch.randn(8, 1)
    before = [method.predict(x) for x in (task0, task1)], [method.critic(x, actions) for x in (task0, task1)]
    with torch.no_grad():
        for classifier in (method.policy.net.classifier, method.critic.q1.classifier, method.critic.q2.classifier):
            rows = classifier.weight.shape[0] // 2  # the heads' outputs, task after task
            classifier.weight[rows:] += 1.0
            classifier.bias[rows:] += 1.0
    after = [method.predict(x) for x in (task0, task1)], [method.critic(x, actions) for x in (task0, task1)]
    assert torch.equal(before[0][0], after[0][0]) and not torch.equal(before[0][1], after[0][1])
    assert all(torch.equal(a, b) for a, b in zip(before[1][0], after[1][0]))
    assert not any(torch.equal(a, b) for a, b in zip(before[1][1], after[1][1]))


def test_continual_worlds_layers_normalize_the_first_and_leak_below_zero_after():
    """`--cw_network`: Linear -> LayerNorm -> tanh, then Linear -> leaky ReLU (slope 0.2), in the
    policy and both Q-networks; the layer norm makes the first layer's output blind to its scale."""
    setting = IncrementalRLSetting(**PENDULUM)
    method = tiny_method(SAC, cw_network=True, hidden_layers=3)
    method.configure(setting)
    for body in (method.policy.net.features, method.critic.q1.features, method.critic.q2.features):
        kinds = [type(layer) for layer in body]
        assert kinds == [torch.nn.Flatten, torch.nn.Linear, torch.nn.LayerNorm, torch.nn.Tanh,
                         torch.nn.Linear, torch.nn.LeakyReLU, torch.nn.Linear, torch.nn.LeakyReLU]
        assert body[5].negative_slope == 0.2
    observations = torch.randn(16, 3)
    before = method.predict(observations)
    with torch.no_grad():
        method.policy.net.features[1].weight.mul_(10.0)  # biases start at zero: the pre-norm output is x10
    assert torch.allclose(before, method.predict(observations), atol=1e-3)  # to the layer norm's epsilon
    default = tiny_method(SAC)
    default.configure(setting)
    assert type(default.policy.net.features[2]) is torch.nn.ReLU  # the default stays sylvan's


def test_a_head_per_task_needs_the_task_id():
    with pytest.raises(ConfigurationError, match="--multihead picks a head by the task id, and incremental_rl"):
        IncrementalRLSetting(**PENDULUM).apply(tiny_method(SAC, multihead=True))


def test_resetting_at_each_task_empties_the_memory_and_restarts_the_optimizers():
    """Continual World's protocol: each task starts with an empty replay memory and optimizers
    without moments; the first task starts as without the option."""
    setting = IncrementalRLSetting(**PENDULUM)
    method = tiny_method(SAC, reset_on_task=True)
    states: list[tuple[int, int]] = []
    on_task_start = method.on_task_start

    def record(task_id):
        on_task_start(task_id)
        states.append((method.buffer.seen, len(method.policy_optimizer.optimizer.state)))

    method.on_task_start = record
    results = setting.apply(method)
    assert states == [(0, 0), (0, 0)] and method.buffer.seen == 300  # the second task's transitions only
    plain = IncrementalRLSetting(**PENDULUM).apply(tiny_method(SAC))
    assert results.accuracy_matrix[0] == plain.accuracy_matrix[0]
    assert results.accuracy_matrix[1] != plain.accuracy_matrix[1]
    with pytest.raises(ConfigurationError, match="--reset_on_task empties the replay memory"):
        SAC(reset_on_task=True, buffer_policy="reservoir")
