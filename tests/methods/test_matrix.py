"""Every registered method on every setting it applies to, generated from the registries:
registering a method (or a setting) adds its rows here without touching this file."""

from __future__ import annotations

import math

import pytest

from sylvan.buffers import BUFFER_POLICIES
from sylvan.cli import load_plugins
from sylvan.methods import METHODS
from sylvan.settings import SETTINGS, ContinualRLSetting, OnlineSetting
from sylvan.settings.continual_rl import action_spaces_of
from tests.conftest import REPO, RL_ENVS, tiny_method, tiny_options

# Methods written outside the package, as the README shows, join the matrix like the others.
load_plugins([str(REPO / "examples" / "l2_anchor.py"), str(REPO / "examples" / "reinforce.py")])

SUPERVISED = sorted(name for name, cls in SETTINGS.items() if issubclass(cls, OnlineSetting))
REINFORCEMENT = sorted(name for name, cls in SETTINGS.items() if issubclass(cls, ContinualRLSetting))


def applicable_pairs(settings: list[str]) -> list[tuple[str, str]]:
    return [(setting, method) for setting in settings for method in sorted(METHODS)
            if METHODS[method].is_applicable(SETTINGS[setting])]


PAIRS = applicable_pairs(SUPERVISED)
RL_PAIRS = applicable_pairs(REINFORCEMENT)
# each RL pair on an environment of every kind of actions its method handles
RL_RUNS = [(setting, method, kind) for setting, method in RL_PAIRS for kind in action_spaces_of(METHODS[method])]


def test_matrix_is_not_empty():
    assert ("class_incremental", "rehearsal") in PAIRS
    assert ("online", "random") in PAIRS
    assert ("multi_task", "l2_anchor") in PAIRS and ("online", "l2_anchor") not in PAIRS
    assert {("continual_rl", "random"), ("task_incremental_rl", "dqn"), ("incremental_rl", "reinforce")} <= set(
        RL_PAIRS)
    assert {("continual_rl", "random", "continuous"), ("incremental_rl", "sac", "continuous")} <= set(RL_RUNS)
    assert ("incremental_rl", "sac", "discrete") not in RL_RUNS
    assert ("online", "reinforce") not in PAIRS
    assert not {method for _, method in RL_PAIRS} & {"rehearsal", "naive", "l2_anchor"}


@pytest.mark.parametrize(("setting_name", "method_name"), PAIRS)
def test_method_runs_on_setting(setting_name, method_name):
    setting_cls = SETTINGS[setting_name]
    setting = setting_cls(**tiny_options(setting_cls))
    results = setting.apply(METHODS[method_name]())
    tasks = setting.nb_tasks
    stages = setting.planned_stages() if setting_name != "multi_task" else 1
    assert len(results.accuracy_matrix) == stages
    assert all(len(row) == tasks for row in results.accuracy_matrix)
    # a setting that evaluates the tasks seen only leaves those to come None
    seen_only = setting.evaluates_seen_tasks_only
    for stage, row in enumerate(results.accuracy_matrix):
        if setting.pretraining_phase:  # its columns are the stream's modes, None for one not met yet
            assert any(a is not None for a in row) and all(a is None or 0.0 <= a <= 1.0 for a in row)
            continue
        measured = row[: stage + 1] if seen_only else row
        assert all(0.0 <= a <= 1.0 for a in measured) and row[len(measured):] == [None] * (tasks - len(measured))
    assert not math.isnan(results.final_average_accuracy)
    assert len(results.samples_seen) == stages and results.complete
    if setting_name == "online":
        if method_name != "random":
            assert results.online_accuracy is not None
    if setting.pretraining_phase:  # every batch of the stream is scored, whatever the method does with it
        assert results.stream_accuracy["steps_scored"] == setting.stream_steps
        assert results.online_accuracy is not None


@pytest.mark.parametrize(("setting_name", "method_name", "actions"), RL_RUNS)
def test_method_runs_on_rl_setting(setting_name, method_name, actions):
    setting_cls = SETTINGS[setting_name]
    setting = setting_cls(**{**tiny_options(setting_cls), "env": RL_ENVS[actions]})
    results = setting.apply(tiny_method(METHODS[method_name]))
    stages = setting.nb_stages()  # a stage per task where boundaries are known, but multi_task_rl's one
    assert results.measure == "return" and len(results.accuracy_matrix) == stages
    assert all(len(row) == setting.stream_tasks for row in results.accuracy_matrix)
    if actions == "discrete":  # CartPole gives +1 per step: a return is an episode length, at most the limit
        assert all(1.0 <= r <= setting.max_episode_steps for row in results.accuracy_matrix for r in row)
    else:  # Pendulum costs between 0 and 16.3 per step, and its episodes last until the limit
        assert all(-16.3 * setting.max_episode_steps <= r < 0 for row in results.accuracy_matrix for r in row)
    assert results.complete and len(results.samples_seen) == stages
    if method_name != "random":  # random never trains; every other method spends the steps
        assert sum(results.samples_seen) == setting.total_steps
        assert sum(results.episodes_seen) > 0 and results.online_accuracy is not None


@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_inapplicable_settings_are_exactly_the_non_descendants(method_name):
    method = METHODS[method_name]
    for setting_cls in SETTINGS.values():
        assert method.is_applicable(setting_cls) == issubclass(setting_cls, method.target_setting)


@pytest.mark.parametrize("setting_name", SUPERVISED)
@pytest.mark.parametrize(("policy", "retrieval"), [(p, "uniform") for p in sorted(BUFFER_POLICIES)]
                         + [("reservoir", "grasp")])
def test_rehearsal_runs_with_every_buffer_policy(setting_name, policy, retrieval):
    setting_cls = SETTINGS[setting_name]
    setting = setting_cls(**tiny_options(setting_cls))
    method = METHODS["rehearsal"](buffer_size=20, buffer_policy=policy, buffer_retrieval=retrieval)
    results = setting.apply(method)
    assert type(method.buffer).policy == policy
    assert method.buffer.seen == sum(results.samples_seen)
    assert len(method.buffer) == 20 or (policy == "prs" and 0 < len(method.buffer) <= 20)
