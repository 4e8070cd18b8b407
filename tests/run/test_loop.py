"""The run loop (sylvan/run/loop.py): one loop runs every setting, supervised and reinforcement
learning, through the setting's `Stages`."""

from __future__ import annotations

import pytest

import sylvan.run.loop as loop
from sylvan.methods import get_method
from sylvan.run.loop import Stages, StageWork
from sylvan.run.pairing import applicable_methods
from sylvan.settings import SETTINGS, get_setting

# a small instance of every registered setting
SMALL = {
    "online": {"dataset": "digits"},
    "class_incremental": {"dataset": "digits", "epochs": 1},
    "domain_incremental": {"epochs": 1},
    "task_incremental": {"dataset": "digits", "epochs": 1},
    "multi_task": {"dataset": "digits", "epochs": 1},
    "distributed": {"dataset": "digits", "epochs": 1, "accelerator": "cpu"},  # two workers: processes
    "dataset_stream": {"epochs": 1},
    "osaka": {"stream_steps": 20, "pretraining_tasks": 4},
    "continual_rl": {"steps_per_task": 50, "nb_tasks": 2, "eval_episodes": 1},
    "incremental_rl": {"steps_per_task": 50, "nb_tasks": 2, "eval_episodes": 1},
    "task_incremental_rl": {"steps_per_task": 50, "nb_tasks": 2, "eval_episodes": 1},
    "multi_task_rl": {"steps_per_task": 50, "nb_tasks": 2, "eval_episodes": 1},
    "traditional_rl": {"steps_per_task": 50, "nb_tasks": 2, "eval_episodes": 1, "task": 1},
}


class Reached(Exception):
    """Raised by the spied loop, once it got a setting's stages."""


def test_every_registered_setting_has_a_small_instance_here():
    assert set(SMALL) == {name for name in SETTINGS if name != "setting"}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_setting_runs_through_the_one_run_loop(name, monkeypatch):
    """`Setting.apply` of every setting reaches `sylvan.run.loop._run` with the setting's own
    `Stages`: no setting trains in a loop of its own."""
    seen = []

    def spy(setting, method, stages, tracker, resume, callbacks):
        seen.append(stages)
        raise Reached

    monkeypatch.setattr(loop, "_run", spy)
    setting_class = get_setting(name)
    setting = setting_class(**SMALL[name])
    method = get_method(applicable_methods(setting_class)[0])()
    with pytest.raises(Reached):
        setting.apply(method)
    assert len(seen) == 1 and isinstance(seen[0], Stages)
    assert seen[0].nb_stages == setting.planned_stages()


class CountingStages(Stages):
    """Three stages of nothing, evaluated by how many stages were trained."""

    nb_stages = nb_tasks = 3

    def __init__(self) -> None:
        self.trained: list[int] = []
        self.closed = False

    def new_results(self, method, initial):
        from sylvan.analysis.metrics import Results

        return Results("online", method.name, accuracy_matrix=[], initial_accuracies=initial)

    def data(self):
        return iter([[], [], []])

    def fit(self, run, method, stage, data):
        self.trained.append(stage)
        return StageWork(samples=10 * (stage + 1))

    def evaluate(self, method, seen):
        from sylvan.run.evaluation import Evaluation

        return Evaluation([float(len(self.trained))] * 3, aware=None, confusion=None)

    def close(self):
        self.closed = True


def test_the_loop_trains_evaluates_and_records_each_stage_then_closes_the_stages(monkeypatch):
    setting = get_setting("class_incremental")(dataset="digits", nb_tasks=3, epochs=1)
    stages = CountingStages()
    monkeypatch.setattr(type(setting), "stages", lambda self: stages)
    method = get_method("naive")()
    results = setting.apply(method)
    assert stages.trained == [0, 1, 2] and stages.closed
    assert results.accuracy_matrix == [[1.0] * 3, [2.0] * 3, [3.0] * 3]
    assert results.initial_accuracies == [0.0] * 3
    assert results.samples_seen == [10, 20, 30]
    assert results.complete and len(results.task_train_time) == 3


def test_the_stages_are_closed_when_a_stage_fails(monkeypatch):
    setting = get_setting("class_incremental")(dataset="digits", nb_tasks=3, epochs=1)
    stages = CountingStages()

    def failing(run, method, stage, data):
        raise RuntimeError("stage failed")

    stages.fit = failing
    monkeypatch.setattr(type(setting), "stages", lambda self: stages)
    with pytest.raises(RuntimeError, match="stage failed"):
        setting.apply(get_method("naive")())
    assert stages.closed


@pytest.mark.parametrize("name", ["class_incremental", "continual_rl"])
def test_a_setting_keeps_no_state_of_its_runs(name):
    """What a run holds (its data, its environments, the generators' states after loading) is its
    stages', made ahead of it or by it: the setting's attributes stay what they were."""
    setting_class = get_setting(name)
    setting = setting_class(**SMALL[name])
    before = dict(vars(setting))
    method_name = "naive" if name == "class_incremental" else "dqn"
    setting.apply(get_method(method_name)(), stages=setting.stages())
    setting.apply(get_method(method_name)())
    assert vars(setting).keys() == before.keys()
    assert all(vars(setting)[key] is value for key, value in before.items())
