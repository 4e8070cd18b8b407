"""Copies of a stage's training environment stepped together (`sylvan.settings.env_copies`):
the budget shared evenly, the copies seeded apart (the first as the one environment is),
same-step resets with the last observation kept, evaluations and the episode log at the stage's
steps, and refusals where the steps cannot be shared."""

from __future__ import annotations

import numpy as np
import pytest

from sylvan.errors import ConfigurationError
from sylvan.settings import ContinualRLSetting, IncrementalRLSetting, MultiTaskRLSetting
from sylvan.settings.env_copies import training_copies
from tests.conftest import TINY_RL


def test_the_copies_share_the_budget_and_the_first_is_the_one_environment():
    setting = IncrementalRLSetting(**{**TINY_RL, "steps_per_task": 300})
    copies = training_copies(setting, 1, None, 3)
    alone = setting.training_env(1)
    assert copies.budget == 300 and [copy.budget for copy in copies.envs] == [100] * 3
    observations, _ = copies.reset()
    first, _ = alone.reset()
    assert observations.shape == (3, *setting.observation_shape)
    np.testing.assert_array_equal(observations[0], first)  # copy 0 seeded as the one environment
    assert not np.array_equal(observations[1], observations[0]) and not np.array_equal(observations[2], observations[1])
    steps = 0
    while not copies.exhausted:
        copies.step(np.zeros(3, dtype=np.int64))
        steps += 1
    assert steps == 100 and copies.steps == 300 and copies.steps_left == 0


def test_an_ended_episode_is_reset_in_the_same_step_with_its_last_observation_kept():
    setting = IncrementalRLSetting(**{**TINY_RL, "max_episode_steps": 5, "steps_per_task": 40})
    copies = training_copies(setting, 0, None, 2)
    single = setting.training_env(0)
    copies.reset()
    single.reset()
    for step in range(1, 21):
        observations, _, terminated, truncated, infos = copies.step(np.zeros(2, dtype=np.int64))
        expected, _, _, single_truncated, _ = single.step(0)  # copy 0 is the one environment, step for step
        ends = terminated | truncated
        if step % 5 == 0 and step < 20:  # a time limit: both copies' episodes end
            assert ends.all() and infos["_final_obs"].all()
            np.testing.assert_array_equal(infos["final_obs"][0], expected)
            np.testing.assert_array_equal(observations[0], single.reset()[0])  # the next episode's first
        elif step == 20:  # the budget's last step: truncated, and no reset after it
            assert truncated.all() and "final_obs" not in infos and copies.exhausted
        else:
            assert not ends.any() and not infos
            np.testing.assert_array_equal(observations[0], expected)
    assert copies.episode_returns == [5.0] * 8  # CartPole pays 1 a step: 4 episodes of 5 steps in each copy


def test_evaluations_and_episode_ends_fall_at_the_stages_steps():
    setting = IncrementalRLSetting(**{**TINY_RL, "max_episode_steps": 5, "steps_per_task": 30})
    logged, evaluated = [], []
    copies = training_copies(setting, 0, lambda steps, *episode: logged.append(steps), 3)
    copies.every(6, evaluated.append)
    copies.reset()
    while not copies.exhausted:
        copies.step(np.zeros(3, dtype=np.int64))
    assert evaluated == [6, 12, 18, 24]  # every 6 of the copies' 30 steps, not at the budget's end
    # copy k's 5th step is the stage's (5 - 1) x 3 + k + 1: every copy ends an episode each 5 of its steps
    assert logged == [13, 14, 15, 28, 29, 30]


@pytest.mark.parametrize("cls", [ContinualRLSetting, MultiTaskRLSetting])
def test_copies_of_a_stream_drift_and_draw_tasks_each_on_their_share(cls):
    setting = cls(**{**TINY_RL, "steps_per_task": 300})
    copies = training_copies(setting, 0, None, 2)
    assert copies.budget == setting.total_steps and copies.envs[0].budget == setting.total_steps // 2
    if cls is ContinualRLSetting:  # each copy drifts through the tasks over its own half of the steps
        assert copies.envs[1].env.steps_per_task == 150
    else:  # each copy draws its own tasks
        draws = [[copy.env.next_task() for _ in range(20)] for copy in copies.envs]
        assert draws[0] != draws[1]


@pytest.mark.parametrize(("options", "refused"), [({"steps_per_task": 301}, "--steps_per_task"),
                                                  ({"steps_per_task": 300, "eval_every": 50}, "--eval_every")])
def test_steps_the_copies_cannot_share_are_refused(options, refused):
    setting = IncrementalRLSetting(**{**TINY_RL, **options})
    with pytest.raises(ConfigurationError, match=f"--n_envs 4 steps that many environments at once: {refused}"):
        training_copies(setting, 0, None, 4)
