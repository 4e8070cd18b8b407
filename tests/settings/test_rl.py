"""The reinforcement-learning branch: its assumptions (proved by a spy method), the tasks'
dynamics, the step budget, the evaluation, and the refusals of what it cannot run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch

from sylvan.analysis.metrics import Results
from sylvan.errors import ConfigurationError
from sylvan.methods import DQN, METHODS, Method, RandomMethod
from sylvan.settings import (
    SETTINGS,
    ContinualRLSetting,
    IncrementalRLSetting,
    MultiTaskRLSetting,
    Setting,
    TaskIncrementalRLSetting,
    TraditionalRLSetting,
)
from sylvan.settings.env_wrappers import BudgetSpent, StepBudget
from sylvan.settings.environments import interpolated, make_env, set_attributes
from tests.conftest import RL_ENVS, TINY_RL, tiny_method


@dataclass
class Spy(Method):
    """Steps the environment with a fixed action and records all it is given and told."""

    target_setting: ClassVar[type[Setting]] = ContinualRLSetting

    def configure(self, run):
        super().configure(run)
        self.events = []
        self.observations = []
        self.lengths = []  # the pole length of the dynamics of each step
        self.predict_task_labels = []
        self.budgets = []

    def on_task_start(self, task_id):
        self.events.append(("start", task_id))

    def on_task_end(self, task_id):
        self.events.append(("end", task_id))

    def fit(self, env, val_data=None):
        self.events.append(("fit", env.budget))
        self.budgets.append(env)
        observation, _ = env.reset()
        while not env.exhausted:
            self.observations.append(np.asarray(observation))
            observation, _, terminated, truncated, _ = env.step(0)
            self.lengths.append(env.unwrapped.length)  # what the step just taken ran with
            if (terminated or truncated) and not env.exhausted:
                observation, _ = env.reset()

    def predict(self, x, task_labels=None):
        self.predict_task_labels.append(task_labels)
        return torch.zeros(len(x), self.run.num_actions)


def run_spy(setting_cls, **options):
    setting = setting_cls(**{**TINY_RL, "nb_tasks": 3, "steps_per_task": 100, **options})
    spy = Spy()
    results = setting.apply(spy)
    return setting, spy, results


def test_the_branch_hangs_under_the_root_with_its_assumptions():
    assert ContinualRLSetting.parent() is Setting
    assert IncrementalRLSetting.parent() is ContinualRLSetting
    assert TaskIncrementalRLSetting.parent() is IncrementalRLSetting
    assert ContinualRLSetting.assumptions() == dict.fromkeys(ContinualRLSetting.assumptions(), False)
    assert IncrementalRLSetting.task_boundaries_known and not IncrementalRLSetting.task_labels_at_train
    assert TaskIncrementalRLSetting.task_labels_at_train and TaskIncrementalRLSetting.task_labels_at_test
    supervised_only = [name for name, cls in METHODS.items() if not cls.is_applicable(IncrementalRLSetting)]
    assert "rehearsal" in supervised_only and "ewc" not in supervised_only  # ewc needs boundaries, on either branch
    assert not METHODS["ewc"].is_applicable(ContinualRLSetting)
    assert TraditionalRLSetting.parent() is IncrementalRLSetting
    assert MultiTaskRLSetting.parent() is TaskIncrementalRLSetting
    assert RandomMethod.is_applicable(TaskIncrementalRLSetting) and DQN.is_applicable(TaskIncrementalRLSetting)


def test_continual_rl_drifts_smoothly_with_no_boundary_and_no_task_label():
    setting, spy, results = run_spy(ContinualRLSetting)
    assert spy.events == [("fit", 300)]  # one stream, no task hook
    tasks = setting.task_values()
    lengths = np.array(spy.lengths)
    assert lengths[0] == tasks[0]["length"]
    assert np.allclose(lengths[100], tasks[1]["length"]) and np.allclose(lengths[200:], tasks[2]["length"])
    steps = np.diff(lengths[:201])
    largest = max(abs(tasks[1]["length"] - tasks[0]["length"]), abs(tasks[2]["length"] - tasks[1]["length"]))
    assert np.abs(steps).max() <= largest / 100 + 1e-9  # no jump: at most 1/100 of a task's change per step
    assert len({round(v, 9) for v in lengths[:200]}) > 150  # it moves at (almost) every step
    assert all(obs.shape == (4,) for obs in spy.observations)  # CartPole's own observation, no task id
    assert all(labels is None for labels in spy.predict_task_labels)
    assert results.samples_seen == [300] and len(results.accuracy_matrix) == 1


def test_incremental_rl_tells_boundaries_but_not_the_task():
    setting, spy, results = run_spy(IncrementalRLSetting)
    assert spy.events == [e for _ in range(3) for e in (("start", None), ("fit", 100), ("end", None))]
    tasks = setting.task_values()
    for k in range(3):  # fixed dynamics within each task
        assert set(spy.lengths[100 * k : 100 * (k + 1)]) == {tasks[k]["length"]}
    assert all(obs.shape == (4,) for obs in spy.observations)
    assert all(labels is None for labels in spy.predict_task_labels)
    assert len(results.accuracy_matrix) == 3 and results.samples_seen == [100, 100, 100]


def test_traditional_rl_trains_on_one_task_of_the_sequence_alone():
    """`--task 2` is the third task of the sequence incremental_rl makes with the same options:
    trained on alone, for its steps, and evaluated on it alone (the reference of that task)."""
    setting, spy, results = run_spy(TraditionalRLSetting, task=2)
    sequence = IncrementalRLSetting(**{**TINY_RL, "nb_tasks": 3, "steps_per_task": 100}).task_values()
    assert setting.task_values() == [sequence[2]] and results.task_attributes == [sequence[2]]
    assert spy.events == [("start", None), ("fit", 100), ("end", None)]
    assert set(spy.lengths) == {sequence[2]["length"]}
    assert len(results.accuracy_matrix) == 1 and len(results.accuracy_matrix[0]) == 1
    assert results.samples_seen == [100] and setting.total_steps == 100
    with pytest.raises(ConfigurationError, match=r"--task must be from 0 to --nb_tasks - 1 = 2, got 3"):
        TraditionalRLSetting(**{**TINY_RL, "nb_tasks": 3, "task": 3})


def test_multi_task_rl_trains_on_every_task_at_once_an_episode_at_a_time():
    setting, spy, results = run_spy(MultiTaskRLSetting, max_episode_steps=10)
    assert spy.events == [("start", None), ("fit", 300), ("end", None)]
    sequence = setting.task_values()
    tasks_of_steps = [int(np.argmax(obs[4:])) for obs in spy.observations]
    lengths = spy.lengths
    assert all(lengths[i] == sequence[task]["length"] for i, task in enumerate(tasks_of_steps))
    episodes = [tasks_of_steps[i] for i in range(0, 300, 10)]  # CartPole with a fixed push: short episodes
    assert len(set(tasks_of_steps)) == 3 and len(set(episodes)) == 3  # every task, drawn episode by episode
    assert len(results.accuracy_matrix) == 1 and len(results.accuracy_matrix[0]) == 3
    _, again, _ = run_spy(MultiTaskRLSetting, max_episode_steps=10)
    assert [int(np.argmax(obs[4:])) for obs in again.observations] == tasks_of_steps  # the seed fixes the draws
    labels = [t for t in spy.predict_task_labels if t is not None]
    assert len(labels) == len(spy.predict_task_labels) and {int(t[0]) for t in labels} == {0, 1, 2}


def test_task_incremental_rl_gives_the_task_in_observations_and_predict():
    setting, spy, _ = run_spy(TaskIncrementalRLSetting)
    assert [e for e in spy.events if e[0] == "start"] == [("start", 0), ("start", 1), ("start", 2)]
    assert setting.observation_shape == (4 + 3,)
    for k in range(3):
        one_hots = np.stack([obs[4:] for obs in spy.observations[100 * k : 100 * (k + 1)]])
        assert (one_hots == np.eye(3)[k]).all()
    labels = [t for t in spy.predict_task_labels if t is not None]
    assert len(labels) == len(spy.predict_task_labels) and {int(t[0]) for t in labels} == {0, 1, 2}


def test_tasks_scale_the_attributes_within_the_range_with_the_seed():
    setting = IncrementalRLSetting(nb_tasks=6, min_scale=0.8, max_scale=1.5, seed=3)
    tasks = setting.task_values()
    defaults = tasks[0]
    assert defaults == {"gravity": 9.8, "masspole": 0.1, "length": 0.5}
    for task in tasks[1:]:
        for name, value in task.items():
            assert 0.8 <= value / defaults[name] <= 1.5
    assert IncrementalRLSetting(nb_tasks=6, min_scale=0.8, max_scale=1.5, seed=3).task_values() == tasks
    assert IncrementalRLSetting(nb_tasks=6, min_scale=0.8, max_scale=1.5, seed=4).task_values() != tasks


def test_cartpole_dynamics_follow_the_attributes():
    """CartPole derives total_mass and polemass_length from its attributes in its constructor:
    a changed masspole must reach them, or the dynamics would not change."""
    env = make_env("CartPole-v1")
    set_attributes(env, {"masspole": 0.4, "length": 1.0})
    assert env.unwrapped.total_mass == pytest.approx(1.4)
    assert env.unwrapped.polemass_length == pytest.approx(0.4)
    heavy = [env.reset(seed=0)[0]] + [env.step(1)[0] for _ in range(5)]
    env = make_env("CartPole-v1")
    light = [env.reset(seed=0)[0]] + [env.step(1)[0] for _ in range(5)]
    assert np.array_equal(heavy[0], light[0]) and not np.allclose(heavy[-1], light[-1])


def test_interpolation_between_tasks():
    tasks = [{"a": 0.0}, {"a": 10.0}, {"a": 4.0}]
    assert interpolated(tasks, 0.25) == {"a": 2.5}
    assert interpolated(tasks, 1.5) == {"a": 7.0}
    assert interpolated(tasks, 2.0) == interpolated(tasks, 7.0) == {"a": 4.0}


def test_step_budget_ends_the_stream_and_records_only_finished_episodes():
    logged = []
    env = StepBudget(make_env("CartPole-v1", max_episode_steps=10), 25, seed=0,
                     on_episode_end=lambda *row: logged.append(row))
    with pytest.raises(BudgetSpent, match="reset"):
        env.step(0)
    env.reset()
    ends = []
    while not env.exhausted:
        _, _, terminated, truncated, _ = env.step(0 if env.steps % 2 else 1)
        if terminated or truncated:
            ends.append(env.steps)
            if not env.exhausted:
                env.reset()
    assert ends[-1] == 25 and env.steps == 25  # the last step ends the episode
    assert len(env.episode_returns) == len(ends) - 1  # the episode the budget cut is not one
    assert [row[0] for row in logged] == ends[:-1] and [row[1] for row in logged] == env.episode_returns
    with pytest.raises(BudgetSpent, match="spent"):
        env.reset()


def test_the_first_training_episode_is_seeded():
    def first_observation(seed):
        env = StepBudget(make_env("CartPole-v1"), 5, seed=seed)
        return env.reset()[0]

    assert np.array_equal(first_observation(1), first_observation(1))
    assert not np.array_equal(first_observation(1), first_observation(2))


def test_predict_of_the_wrong_shape_is_an_error():
    class Wrong(Spy):
        def predict(self, x, task_labels=None):
            return torch.zeros(len(x), 7)

    setting = ContinualRLSetting(**TINY_RL)
    with pytest.raises(RuntimeError, match=r"expected \(batch, num_actions\)"):
        setting.apply(Wrong())


def test_same_seed_same_results_and_another_seed_other_results():
    def run(seed):
        setting = IncrementalRLSetting(**{**TINY_RL, "seed": seed})
        return json.dumps(setting.apply(tiny_method(DQN)).metrics_dict())

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_results_are_named_after_returns():
    results = Results("incremental_rl", "dqn", [[10.0, 20.0], [30.0, 5.0]], initial_accuracies=[9.0, 9.0],
                      measure="return", online_accuracy=12.5, episodes_seen=[3, 4])
    saved = results.metrics_dict()
    assert saved["return_matrix"] == [[10.0, 20.0], [30.0, 5.0]] and saved["initial_returns"] == [9.0, 9.0]
    assert saved["final_average_return"] == 17.5 and saved["online_return"] == 12.5
    assert saved["forgetting"] == -20.0 and saved["episodes_seen"] == [3, 4]  # task 0 got better: 10 -> 30
    assert not any("accuracy" in key for key in saved)
    table = results.table()
    assert "final average return:   17.50" in table and "1750" not in table


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"env": "NoSuchEnv-v0"}, "is not a gymnasium environment"),
        ({"varied_attributes": ["mass_of_the_moon"]}, "its numeric attributes: .*gravity"),
        # a property of gymnasium's Env: assigning it fails
        ({"varied_attributes": ["np_random_seed"]}, "'np_random_seed' is not a numeric attribute .* that can be set"),
        # recomputed from masspole and masscart after every change: varying it would do nothing
        ({"varied_attributes": ["total_mass"]}, "computes 'total_mass' from masspole and masscart"),
        ({"varied_attributes": ["polemass_length"]}, "computes 'polemass_length' from masspole and length"),
        ({"varied_attributes": ["gravity", "length", "gravity"]}, "names gravity more than once"),
        ({"min_scale": 2.0, "max_scale": 1.0}, "0 < min_scale <= max_scale"),
        ({"min_scale": 0.0}, "0 < min_scale <= max_scale"),
        ({"steps_per_task": 0}, "--steps_per_task must be >= 1"),
        ({"eval_episodes": 0}, "--eval_episodes must be >= 1"),
        ({"max_episode_steps": 0}, "--max_episode_steps must be >= 1"),
        ({"precision": "16-mixed", "accelerator": "cpu"}, "16-mixed .* needs a GPU"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        ContinualRLSetting(**options)


def test_an_unknown_precision_is_refused():
    from sylvan.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown precision '8-true'"):
        ContinualRLSetting(precision="8-true")


def test_an_environment_without_known_attributes_needs_them_named():
    gym.register("SylvanUnknownCartPole-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv",
                 max_episode_steps=50)
    try:
        with pytest.raises(ConfigurationError, match="name some with --varied_attributes"):
            ContinualRLSetting(env="SylvanUnknownCartPole-v0")
        setting = ContinualRLSetting(env="SylvanUnknownCartPole-v0", varied_attributes=["force_mag"], **{
            k: v for k, v in TINY_RL.items() if k != "max_episode_steps"})
        assert setting.task_values()[0] == {"force_mag": 10.0}
    finally:
        del gym.registry["SylvanUnknownCartPole-v0"]


def test_every_rl_setting_is_registered():
    assert {"continual_rl", "incremental_rl", "task_incremental_rl"} <= set(SETTINGS)


class MultiBinaryActions(gym.Env):
    """Actions that are neither one choice nor a bounded vector of numbers."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,))
    action_space = gym.spaces.MultiBinary(3)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 0.0, True, False, {}


def test_actions_neither_discrete_nor_a_bounded_vector_are_refused():
    gym.register("SylvanMultiBinary-v0", entry_point=MultiBinaryActions, max_episode_steps=5)
    try:
        with pytest.raises(ConfigurationError, match="need discrete actions, or continuous ones"):
            ContinualRLSetting(env="SylvanMultiBinary-v0", varied_attributes=["metadata"])
    finally:
        del gym.registry["SylvanMultiBinary-v0"]


def test_continuous_actions_are_described_and_random_acts_within_their_bounds():
    setting = IncrementalRLSetting(**{**TINY_RL, "env": "Pendulum-v1"})
    assert setting.action_space_kind == "continuous" and setting.num_actions == setting.num_outputs == 1
    low, high = setting.action_bounds
    assert low.tolist() == [-2.0] and high.tolist() == [2.0]
    assert setting.task_values()[0] == {"g": 10.0, "m": 1.0, "l": 1.0}
    method = RandomMethod()
    method.configure(setting)
    actions = method.predict(torch.zeros(500, 3))
    assert actions.shape == (500, 1) and bool((actions >= -2).all() and (actions <= 2).all())
    assert float(actions.min()) < -1.5 and float(actions.max()) > 1.5  # spread over the bounds
    cartpole = IncrementalRLSetting(**TINY_RL)
    assert cartpole.action_space_kind == "discrete" and cartpole.action_bounds is None


def test_evaluation_clips_continuous_actions_to_the_bounds():
    """A policy asking for 100 times the largest torque gets the largest torque: the return is
    that of the bounded action, not an error or an unphysical swing."""

    class Push(RandomMethod):
        scale = 1.0

        def predict(self, x, task_labels=None):
            return torch.full((len(x), 1), 2.0 * self.scale)

    returns = {}
    for scale in (1.0, 100.0):
        setting = IncrementalRLSetting(**{**TINY_RL, "env": "Pendulum-v1", "nb_tasks": 1})
        method = Push()
        method.scale = scale
        returns[scale] = setting.apply(method).accuracy_matrix[0][0]
    assert returns[1.0] == returns[100.0]


def test_pendulum_dynamics_follow_the_attributes():
    """With the same start and torque, a pendulum under twice the gravity swings differently."""
    ends = []
    for gravity in (10.0, 20.0):
        env = make_env("Pendulum-v1")
        set_attributes(env, {"g": gravity})
        observation, _ = env.reset(seed=0)
        for _ in range(10):
            observation, *_ = env.step(np.array([0.5], dtype=np.float32))
        ends.append(observation)
        env.close()
    assert not np.allclose(ends[0], ends[1])


@pytest.mark.parametrize(("env", "method", "able"), [("Pendulum-v1", "dqn", "random, sac"),
                                                     ("CartPole-v1", "sac", "dqn")])
def test_a_method_for_the_other_kind_of_actions_is_refused(env, method, able):
    setting = IncrementalRLSetting(**{**TINY_RL, "env": env})
    with pytest.raises(ConfigurationError, match=f"methods for .* actions: .*{able}"):
        setting.apply(METHODS[method]())


@pytest.mark.parametrize("method_name", ["dqn", "sac"])
def test_off_policy_methods_learn_at_the_runs_precision_and_act_in_float32(method_name):
    """Under `--precision bf16-mixed` a method's gradient steps run its networks under bfloat16
    autocast (set up by the run, no device or precision code of the method's), while acting and
    evaluating use the float32 network; the weights stay float32."""
    method = tiny_method(METHODS[method_name])
    env = RL_ENVS["discrete" if method_name == "dqn" else "continuous"]
    setting = IncrementalRLSetting(**{**TINY_RL, "nb_tasks": 1, "steps_per_task": 120, "env": env,
                                      "precision": "bf16-mixed"})
    autocast: dict[str, set] = {"learn": set(), "act": set()}
    phase = ["act"]

    def record(module, inputs):
        enabled = torch.is_autocast_enabled("cpu")
        autocast[phase[0]].add(torch.get_autocast_dtype("cpu") if enabled else torch.float32)

    learn = type(method).learn

    def learning(self):
        phase[0] = "learn"
        try:
            learn(self)
        finally:
            phase[0] = "act"

    method.learn = learning.__get__(method)
    configure = type(method).configure

    def configured(self, run):
        configure(self, run)
        for module in self.model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_pre_hook(record)

    method.configure = configured.__get__(method)
    results = setting.apply(method)
    assert np.isfinite(results.final_average_accuracy)  # the average return, under the name every setting uses
    assert autocast["learn"] == {torch.bfloat16} and autocast["act"] == {torch.float32}
    assert all(p.dtype == torch.float32 for p in method.model.parameters())
