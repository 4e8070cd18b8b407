"""Continual-learning methods on reinforcement-learning agents: the importances of the weight-
regularization family on an agent's networks against a per-sample loop, the anchor's effect on
the agent's weights, the command line of a method with `--agent`, and an exact resume."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from sylvan.cli import parse_options
from sylvan.cli import run as cli_run
from sylvan.errors import ConfigurationError, InapplicableMethodError
from sylvan.methods import METHODS
from sylvan.methods.core.on_agent import OnAgent
from sylvan.methods.parts import agent_importance
from sylvan.methods.parts.agent_anchor import AgentAnchor
from sylvan.methods.parts.agent_gradient_memory import AgentGradientMemory
from sylvan.run.experiment import run_config
from sylvan.run.tracking import Tracker
from sylvan.settings import SETTINGS, ClassIncrementalSetting, IncrementalRLSetting, TaskIncrementalRLSetting
from tests.conftest import RL_ENVS, TINY_RL, tiny_method, tiny_options

ENV_OF = {"sac": RL_ENVS["continuous"], "dqn": RL_ENVS["discrete"], "ppo": RL_ENVS["continuous"]}


def configured_agent(agent_name: str, steps: int = 200):
    """A tiny agent configured on a two-task setting, with `steps` transitions in its memory."""
    setting = IncrementalRLSetting(**{**TINY_RL, "env": ENV_OF[agent_name]})
    agent = tiny_method(METHODS[agent_name])
    agent.configure(setting)
    env = setting.task_env(0)
    observation, _ = env.reset(seed=0)
    for _ in range(steps):
        action = agent.act(observation)
        next_observation, reward, terminated, truncated, _ = env.step(action)
        agent.remember(observation, action, float(reward), next_observation, terminated)
        agent.steps += 1
        observation = env.reset()[0] if terminated or truncated else next_observation
    return agent


def loop_importance(view, transitions, statistic: str) -> dict[str, torch.Tensor]:
    """The importance one sample at a time, from autograd: the definition, written out."""
    params = dict(view.named_parameters())
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    count = len(transitions["obs"])
    for n in range(count):
        sample = {key: value[n : n + 1] for key, value in transitions.items()}
        mean, log_std = view(sample)
        mean, log_std = mean[0], None if log_std is None else log_std[0]
        if statistic == "mas":
            norm = mean.pow(2).sum() + (0 if log_std is None else log_std.pow(2).sum())
            grads = torch.autograd.grad(norm, list(params.values()))
            for name, g in zip(params, grads):
                total[name] += g.abs()
            continue
        value = {name: torch.zeros_like(p) for name, p in params.items()}
        for d in range(len(mean)):
            grads = torch.autograd.grad(mean[d], list(params.values()), retain_graph=True, allow_unused=True)
            std2 = 1.0 if log_std is None else float(log_std[d].detach().exp() ** 2) + 1e-6
            for name, g in zip(params, grads):
                value[name] += (0 if g is None else g.pow(2)) / std2
            if log_std is not None:
                grads = torch.autograd.grad(log_std[d], list(params.values()), retain_graph=True, allow_unused=True)
                for name, g in zip(params, grads):
                    value[name] += 0 if g is None else 2 * g.pow(2)
        for name in params:
            total[name] += value[name].clamp(min=1e-5) if log_std is not None else value[name]
    return {name[len("network."):]: value / count for name, value in total.items()}


@pytest.mark.parametrize("statistic", ["fisher", "mas"])
@pytest.mark.parametrize(("agent_name", "network"), [("sac", "policy"), ("sac", "critic"), ("dqn", "q_network")])
def test_importance_of_an_agents_network_is_the_per_sample_definition(agent_name, network, statistic):
    agent = configured_agent(agent_name)
    transitions = agent.sample_transitions(12)
    view = agent.output_distribution(network)
    measure = agent_importance.fisher if statistic == "fisher" else agent_importance.output_sensitivity
    found = measure(view, transitions, chunk=5)
    expected = loop_importance(view, transitions, statistic)
    assert found.keys() == expected.keys() == dict(agent.networks()[network].named_parameters()).keys()
    for name in expected:
        torch.testing.assert_close(found[name], expected[name], rtol=1e-4, atol=1e-7)
    assert sum(float(v.sum()) for v in found.values()) > 0


def drift_after_second_task(method_name: str, agent_name: str, **method_options) -> tuple[float, AgentAnchor]:
    """How far the agent's weights move during task 2 from where task 1 left them (the anchor),
    each weight's squared distance weighted by its importance after task 1: the penalty the
    method minimizes (task 1 trains alike whatever the strength, so the importances agree)."""
    setting = IncrementalRLSetting(**{**TINY_RL, "env": ENV_OF[agent_name], "steps_per_task": 400})
    agent = tiny_method(METHODS[agent_name], train_frequency=1)
    pair = OnAgent(METHODS[method_name](**method_options), agent)
    pair.configure(setting)
    part = agent.parts[method_name]
    for task in range(2):
        pair.on_task_start(task)
        env = setting.training_env(task)
        env.first_step = task * setting.steps_per_task
        pair.fit(env)
        env.close()
        if task == 0:
            pair.on_task_end(task)
            anchor = {network: {k: v.clone() for k, v in weights.items()} for network, weights in part.anchor.items()}
            importance = {network: {k: v.clone() for k, v in values.items()}
                          for network, values in part.importance.items()}
    drift = sum(float((importance[network][k] * (w.detach().cpu() - anchor[network][k]).pow(2)).sum())
                for network, module in agent.protected_networks().items() for k, w in module.named_parameters())
    return drift, part


STRENGTHS = [("ewc", "ewc_lambda"), ("mas", "mas_lambda"), ("l2", "l2_lambda"), ("si", "c")]


@pytest.mark.parametrize(("method_name", "strength"), STRENGTHS)
@pytest.mark.parametrize("agent_name", ["sac", "dqn"])
def test_the_anchor_holds_an_agents_weights_where_the_last_task_left_them(method_name, strength, agent_name):
    free, part = drift_after_second_task(method_name, agent_name, **{strength: 0.0})
    held, part = drift_after_second_task(method_name, agent_name, **{strength: 1e4})
    assert part.importance is not None and set(part.importance) == set(part.agent.acting_networks)
    assert free > 0 and held < 0.05 * free, (held, free)


def test_the_critic_is_anchored_where_the_pair_regularizes_it():
    for regularize_critic, anchored in ((False, {"policy"}), (True, {"policy", "critic"})):
        agent = configured_agent("sac")
        OnAgent(METHODS["l2"](), agent, regularize_critic=regularize_critic)
        part = AgentAnchor(agent, 1.0, agent_importance.uniform, batches=1)
        part.on_task_end()
        assert set(part.importance) == anchored and set(agent.protected_networks()) == anchored
        assert (part.agent_loss("critic") is not None) == regularize_critic


def test_the_anchor_adds_nothing_before_the_first_task_ends_and_a_penalty_away_from_it():
    agent = configured_agent("dqn")
    part = AgentAnchor(agent, 2.0, agent_importance.uniform, batches=1)
    assert part.agent_loss("q_network") is None
    part.on_task_end()
    assert float(part.agent_loss("q_network").detach()) == 0.0
    with torch.no_grad():
        next(agent.networks()["q_network"].parameters()).add_(0.5)  # one weight tensor moved by 0.5
    moved = next(agent.networks()["q_network"].parameters())
    assert float(part.agent_loss("q_network").detach()) == pytest.approx(2.0 * 0.25 * moved.numel())
    part.on_task_end()  # a second task: every weight's importance is 2 (summed), anchored anew
    assert all(float(v.min()) == 2.0 for v in part.importance["q_network"].values())


def test_an_agent_alone_trains_as_without_the_part_hooks():
    """`part_loss` returns the agent's loss itself where no part adds to it: dqn and sac train
    exactly as before (their regression runs are unchanged)."""
    agent = configured_agent("sac")
    loss = torch.tensor(1.5, requires_grad=True)
    assert agent.part_loss("policy", loss) is loss


def test_l2_on_a_supervised_setting_anchors_every_weight_with_the_number_of_finished_tasks():
    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting))
    method = METHODS["l2"](l2_lambda=0.5)
    results = setting.apply(method)
    assert len(results.accuracy_matrix) == 2
    assert all(float(v.min()) == float(v.max()) == 2.0 for v in method.importance.values())
    assert method.anchor.keys() == dict(method.model.named_parameters()).keys()


def test_the_command_line_applies_a_method_to_the_chosen_agent(tmp_path):
    argv = ["--setting", "incremental_rl", "--method", "ewc", "--agent", "dqn", "--nb_tasks", "2",
            "--steps_per_task", "150", "--max_episode_steps", "40", "--eval_episodes", "1", "--learning_starts",
            "30", "--hidden_size", "16", "--ewc_lambda", "3", "--ewc_gamma", "0.5", "--gamma", "0.9",
            "--results_dir", str(tmp_path), "--run_name", "pair"]
    setting, method, options, unknown = parse_options(SETTINGS["incremental_rl"], METHODS["ewc"], {}, argv)
    assert not unknown and isinstance(method, OnAgent) and method.name == "ewc"
    assert (method.method.ewc_lambda, method.method.gamma, method.agent.gamma) == (3.0, 0.5, 0.9)
    assert method.agent.name == "dqn" and method.agent.hidden_size == 16
    # the configuration a run records parses back to the same pair
    config = yaml.safe_load(yaml.safe_dump(run_config(setting, method, options)))
    assert config["method"] == "ewc" and config["method_options"]["agent"] == "dqn"
    _, again, _, _ = parse_options(SETTINGS["incremental_rl"], METHODS["ewc"], config, [])
    assert again.hparams() == method.hparams()
    assert cli_run(argv) == 0
    results = json.loads((tmp_path / "pair" / "results.json").read_text())
    assert results["method"] == "ewc" and len(results["return_matrix"]) == 2


def test_without_agent_a_method_is_applied_to_the_default_agent_of_the_actions():
    for env, agent in (("Pendulum-v1", "sac"), ("CartPole-v1", "dqn")):
        _, method, _, _ = parse_options(SETTINGS["incremental_rl"], METHODS["mas"], {}, ["--env", env])
        assert method.agent.name == agent
        setting = IncrementalRLSetting(**{**TINY_RL, "env": env})
        assert METHODS["mas"]().on_setting(setting).agent.name == agent


@pytest.mark.parametrize(("argv", "error", "message"), [
    (["--setting", "incremental_rl", "--method", "ewc", "--agent", "ppo2"], ConfigurationError,
     "--agent 'ppo2': no such agent; the agents ewc applies to: dqn, ppo, sac"),
    (["--setting", "class_incremental", "--method", "ewc", "--agent", "sac"], ConfigurationError,
     "--agent chooses the reinforcement-learning agent"),
    (["--setting", "incremental_rl", "--method", "ewc", "--agent", "dqn", "--env", "Pendulum-v1"], ConfigurationError,
     "has continuous actions, and ewc handles discrete ones"),
    (["--setting", "continual_rl", "--method", "ewc"], InapplicableMethodError,
     "targets settings with task boundaries and does not apply to 'continual_rl'"),
])
def test_mistakes_with_agents_are_named(argv, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        cli_run(argv)


@pytest.mark.parametrize(("method_name", "options", "agent_name"), [
    ("ewc", {"ewc_lambda": 10.0}, "sac"), ("packnet", {"retrain_steps": 10}, "sac"), ("agem", {}, "dqn"),
    ("si", {}, "dqn"), ("clear", {"memory_size": 100}, "sac"), ("ewc", {"ewc_lambda": 10.0}, "ppo"),
    ("clear", {"memory_size": 100}, "ppo"),
])
def test_a_method_on_an_agent_resumes_exactly(tmp_path, method_name, options, agent_name):
    """Stopped after its first task and resumed, a method on an agent writes the results and the
    training log of the run that was never stopped: the agent, its memory and its part's state
    (importances, owners, episodic memory, path integrals) are in the checkpoint."""
    from sylvan.run.checkpoints import latest_checkpoint
    from tests.run.test_resume import Interrupted, InterruptingTracker

    def build():
        setting = TaskIncrementalRLSetting(**{**TINY_RL, "env": ENV_OF[agent_name], "nb_tasks": 3,
                                              "steps_per_task": 150})
        return setting, OnAgent(METHODS[method_name](**options), tiny_method(METHODS[agent_name]))

    setting, method = build()
    full = Tracker(tmp_path, "full", {}, verbose=False)
    full.write_results(setting.apply(method, full))
    setting, method = build()
    cut = InterruptingTracker(tmp_path, "cut", {}, verbose=False)
    with pytest.raises(Interrupted):
        setting.apply(method, cut)
    setting, method = build()
    resumed = Tracker(tmp_path, "ignored", {}, verbose=False, resume_dir=cut.run_dir)
    resumed.write_results(setting.apply(method, resumed, resume=latest_checkpoint(cut.run_dir)))
    assert (cut.run_dir / "results.json").read_text() == (full.run_dir / "results.json").read_text()
    assert (cut.run_dir / "logs" / "train.csv").read_text() == (full.run_dir / "logs" / "train.csv").read_text()


def trained_pair(method, agent_name: str, setting_cls=TaskIncrementalRLSetting, tasks: int = 2, steps: int = 300,
                 between=None):
    """`method` on a tiny agent, trained task after task by hand; `between(pair, task)` is called
    after each task's end."""
    setting = setting_cls(**{**TINY_RL, "env": ENV_OF[agent_name], "nb_tasks": tasks, "steps_per_task": steps})
    pair = OnAgent(method, tiny_method(METHODS[agent_name], train_frequency=1))
    pair.configure(setting)
    for task in range(tasks):
        label = setting.stage_task_label(task)
        pair.on_task_start(label)
        env = setting.training_env(task)
        env.first_step = task * steps
        pair.fit(env)
        env.close()
        pair.on_task_end(label)
        if between is not None:
            between(pair, task)
    return setting, pair


@pytest.mark.parametrize("agent_name", ["sac", "dqn"])
def test_packnet_freezes_a_tasks_weights_and_evaluates_each_task_with_its_own(agent_name):
    observations = torch.randn(16, *({"sac": (3 + 2,), "dqn": (4 + 2,)}[agent_name]))
    after_first = {}

    def record(pair, task):
        if task == 0:
            part = pair.agent.parts["packnet"]
            after_first["outputs"] = pair.predict(observations, torch.zeros(16, dtype=torch.long)).clone()
            after_first["weights"] = {network: {k: w.detach().clone() for k, w in module.named_parameters()}
                                      for network, module in pair.agent.protected_networks().items()}
            after_first["owners"] = {network: {k: o.clone() for k, o in owners.items()}
                                     for network, owners in part.owners.items()}

    _, pair = trained_pair(METHODS["packnet"](retrain_steps=20), agent_name, between=record)
    part = pair.agent.parts["packnet"]
    for network, module in pair.agent.protected_networks().items():
        for name, weight in module.named_parameters():
            before = after_first["weights"][network][name]
            if name in part.owners[network]:
                owner = after_first["owners"][network][name]
                kept = owner == 0
                assert 0.3 < float(kept.float().mean()) < 0.7  # half of the weights kept by the first task
                assert torch.equal(weight.detach()[kept], before[kept])  # held through the second task
                assert float(before[~kept].abs().max()) == 0.0  # the freed ones were set to zero
                assert not torch.equal(weight.detach()[~kept], before[~kept])  # which the second task trained
            else:
                assert torch.equal(weight.detach(), before)  # biases train in the first task only
    again = pair.predict(observations, torch.zeros(16, dtype=torch.long))
    torch.testing.assert_close(again, after_first["outputs"])  # task 0 sees its own weights only
    assert not torch.allclose(pair.predict(observations, torch.ones(16, dtype=torch.long)), again)


def test_agem_projects_a_step_that_would_raise_the_memorys_loss():
    seen = {}

    def check(pair, task):
        part = pair.agent.parts["agem"]
        seen[task] = (None if part.memory is None else len(part.memory["obs"]), part.projections)

    _, pair = trained_pair(METHODS["agem"](buffer_size=100, reference_batch_size=32), "dqn", between=check)
    assert seen[0] == (50, 0)  # buffer_size / nb_tasks transitions of the first task; nothing to project against yet
    assert seen[1][0] == 100 and seen[1][1] > 0  # the second task's steps were projected where they conflicted
    part: AgentGradientMemory = pair.agent.parts["agem"]
    module = pair.agent.networks()["q_network"]
    batch = pair.agent.sample_transitions(32)
    generator_state = part.generator.get_state()
    reference_batch = part.reference_batch()
    module.zero_grad()
    (-pair.agent.loss_of("q_network", reference_batch)).backward()  # a step that raises the memory's loss
    part.generator.set_state(generator_state)  # the part draws the same reference batch
    part.agent_gradients("q_network")
    gradient = torch.cat([p.grad.reshape(-1) for p in module.parameters()])
    reference = torch.autograd.grad(pair.agent.loss_of("q_network", reference_batch), list(module.parameters()))
    reference = torch.cat([r.reshape(-1) for r in reference])
    assert float(torch.dot(gradient, reference)) == pytest.approx(0.0, abs=1e-4 * float(reference.norm()) ** 2)
    assert batch["obs"].shape[0] == 32


@pytest.mark.parametrize("agent_name", ["sac", "dqn"])
def test_clear_replays_the_stream_and_clones_the_stored_policy(agent_name):
    """The memory keeps each transition with the outputs the agent had for it; each minibatch is
    joined by as many replayed ones; with cloning, the policy's outputs on the first task's
    remembered transitions move less during the second task than without."""

    def divergence(cloning: float) -> float:
        first = {}

        def keep(pair, task):
            if task == 0:
                part = pair.agent.parts["clear"]
                first["transitions"] = {k: v.clone() for k, v in part.memory.buffer.get_all().items()}

        method = METHODS["clear"](memory_size=300, policy_cloning=cloning, value_cloning=cloning)
        _, pair = trained_pair(method, agent_name, IncrementalRLSetting, between=keep)
        part = pair.agent.parts["clear"]
        assert len(part.memory) == 300 and part.memory.seen == 600
        joined = part.agent_batch(pair.agent.sample_transitions(8))
        assert len(joined["obs"]) == 16 and part._step[0] == 8
        stored = first["transitions"]
        with torch.no_grad():
            now = part.outputs(stored)
        return float((now["policy_mean"] - stored["old_policy_mean"]).pow(2).mean())

    assert divergence(10.0) < 0.5 * divergence(0.0)


AGENT_METHODS = sorted(name for name, cls in METHODS.items() if cls.applies_to_agents())


@pytest.mark.parametrize("agent_name", ["sac", "dqn", "ppo"])
@pytest.mark.parametrize("method_name", AGENT_METHODS)
def test_every_method_for_agents_runs_on_every_agent(method_name, agent_name):
    """Each continual-learning method that applies to agents, on each agent (on the setting it
    needs: task labels for packnet), trains every step of the stream and holds its part."""
    setting_cls = TaskIncrementalRLSetting if method_name == "packnet" else IncrementalRLSetting
    setting = setting_cls(**{**TINY_RL, "env": ENV_OF[agent_name], "steps_per_task": 150})
    pair = OnAgent(tiny_method(METHODS[method_name]), tiny_method(METHODS[agent_name]))
    results = setting.apply(pair)
    assert results.complete and sum(results.samples_seen) == setting.total_steps
    assert method_name in pair.agent.parts and len(results.accuracy_matrix) == 2


PLUGIN_FOR_AGENTS = """
from dataclasses import dataclass
from typing import ClassVar

from sylvan.methods.core.base import Method
from sylvan.methods.core.on_agent import AppliesToAgents
from sylvan.methods.parts import agent_importance
from sylvan.methods.parts.agent_anchor import AgentAnchor
from sylvan.settings import ContinualRLSetting


@dataclass
class Anchored(AppliesToAgents, Method):
    name: ClassVar[str] = "anchored_plugin"
    target_setting: ClassVar[type] = ContinualRLSetting
    strength: float = 1.0  # weight of the anchor

    def agent_part(self, agent):
        return AgentAnchor(agent, self.strength, agent_importance.uniform, batches=1)
"""


def test_a_plugins_method_on_an_agent_is_recorded_for_resume(tmp_path):
    """A method of a plugin file applied to an agent: the run records the plugin (as for any
    plugin's method), so that `--config_path` reloads it without --plugin."""
    plugin = tmp_path / "anchored.py"
    plugin.write_text(PLUGIN_FOR_AGENTS)
    argv = ["--plugin", str(plugin), "--setting", "incremental_rl", "--method", "anchored_plugin", "--agent", "dqn",
            "--nb_tasks", "2", "--steps_per_task", "100", "--max_episode_steps", "30", "--eval_episodes", "1",
            "--learning_starts", "20", "--hidden_size", "16", "--results_dir", str(tmp_path), "--run_name", "run"]
    try:
        assert cli_run(argv) == 0
    finally:  # the plugin's method leaves the registry with the test
        METHODS.pop("anchored_plugin", None)
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["plugins"] == [str(plugin.resolve())] and config["method_options"]["agent"] == "dqn"
