"""Loops a method owns (an agent's interaction, a meta-learner's inner and outer loops) run on the
engine's trigger points (`Engine.loop`): a callback written as a user writes one sees their
steps, the training log gets rows at increasing steps, a terminal shows a progress bar, and
their FLOPs are counted with no counting code of the method's."""

from __future__ import annotations

import csv

import pytest
import torch

from sylvan.methods import DQN, MAML, SAC, ContinualMAML
from sylvan.run.callbacks import Callback
from sylvan.run.engine import Engine
from sylvan.run.experiment import RunOptions, run_experiment
from sylvan.settings import IncrementalRLSetting, OsakaSetting
from tests.conftest import tiny_method, tiny_options


class StepRecorder(Callback):
    """A user's callback: the kind of every step it sees, whether it had a loss, and the fits."""

    def __init__(self) -> None:
        self.kinds: list[str | None] = []
        self.losses: list[bool] = []
        self.steps: list[int] = []
        self.fits = 0
        self.ended = 0

    def fit_started(self, fit):
        self.fits += 1

    def minibatch_started(self, fit, batch):
        self.kinds.append(fit.kind)
        self.steps.append(fit.step)

    def minibatch_ended(self, fit):
        self.losses.append(fit.loss is not None)

    def fit_ended(self, fit):
        self.ended += 1


def rl_setting(method_cls: type, **options) -> IncrementalRLSetting:
    return IncrementalRLSetting(**{**tiny_options(IncrementalRLSetting, method_cls), **options})


@pytest.mark.parametrize("method_cls", [DQN, SAC])
def test_a_users_callback_sees_every_step_of_an_agent(method_cls):
    setting, recorder, method = rl_setting(method_cls), StepRecorder(), tiny_method(method_cls)
    setting.apply(method, callbacks=[recorder])
    acts = recorder.kinds.count("act")
    learns = recorder.kinds.count("learn")
    assert acts == setting.nb_tasks * setting.steps_per_task, "one act step per environment step"
    assert learns > 0 and set(recorder.kinds) == {"act", "learn"}
    assert recorder.fits == recorder.ended == setting.nb_tasks, "a loop per training stage"
    # a learn step reports its loss; an act step has none
    assert all(loss == (kind == "learn") for kind, loss in zip(recorder.kinds, recorder.losses))
    # each loop counts its environment steps from 0: a learn step at the count of the act steps before it
    act_steps = [step for step, kind in zip(recorder.steps, recorder.kinds) if kind == "act"]
    assert act_steps == [*range(setting.steps_per_task)] * setting.nb_tasks
    learn_steps = [step for step, kind in zip(recorder.steps, recorder.kinds) if kind == "learn"]
    assert all(step % method.train_frequency == 0 for step in learn_steps)


def osaka_setting(**options) -> OsakaSetting:
    return OsakaSetting(**{**tiny_options(OsakaSetting), **options})


@pytest.mark.parametrize("method_cls", [MAML, ContinualMAML])
def test_a_users_callback_sees_a_meta_learners_updates_and_adaptations(method_cls):
    setting, recorder = osaka_setting(), StepRecorder()
    setting.apply(method_cls(pretraining_epochs=1, meta_batch_size=2), callbacks=[recorder])
    assert recorder.kinds.count("meta_update") >= setting.pretraining_tasks // 2, "the pre-training's updates"
    assert recorder.kinds.count("adapt") == setting.stream_steps, "an adaptation per stream batch"
    assert all(loss == (kind == "meta_update") for kind, loss in zip(recorder.kinds, recorder.losses))


def training_log_steps(run_dir) -> list[int]:
    """The steps of the rows of `logs/train.csv` with a loss (one header, whose columns every row
    fills or leaves empty: an agent's episodes' rows come first)."""
    text = (run_dir / "logs" / "train.csv").read_text()
    assert text.count("step,") == 1, "one header"
    return [int(row["step"]) for row in csv.DictReader(text.splitlines()) if row["train/loss"]]


@pytest.mark.parametrize("setting_of, method", [
    (lambda: rl_setting(DQN), lambda: tiny_method(DQN)),
    (lambda: rl_setting(SAC), lambda: tiny_method(SAC)),
    (lambda: osaka_setting(), lambda: MAML(pretraining_epochs=3, meta_batch_size=1)),
    (lambda: osaka_setting(), lambda: ContinualMAML(pretraining_epochs=3, meta_batch_size=1)),
], ids=["dqn", "sac", "maml", "continual_maml"])
def test_the_training_log_gets_a_methods_own_steps_and_their_flops_are_counted(tmp_path, setting_of, method):
    results = run_experiment(setting_of(), method(), RunOptions(results_dir=str(tmp_path), run_name="run",
                                                                save_checkpoints=False))
    steps = training_log_steps(tmp_path / "run")
    assert len(steps) >= 2 and steps == sorted(set(steps)), "rows at increasing steps"
    assert results.training_flops and all(flops > 0 for flops in results.training_flops[:1])


@pytest.mark.parametrize("setting_of, method, planned", [
    (lambda: rl_setting(SAC, progress_bar=True), lambda: tiny_method(SAC), "0/300"),  # an RL stage's steps
    (lambda: osaka_setting(progress_bar=True), lambda: ContinualMAML(pretraining_epochs=1, meta_batch_size=2),
     "0/4"),  # the pre-training's meta-updates (8 tasks, 2 a batch)
], ids=["sac", "continual_maml"])
def test_a_terminal_shows_the_progress_of_a_methods_own_loop(capsys, setting_of, method, planned):
    setting_of().apply(method())
    shown = capsys.readouterr().out
    assert planned in shown and "step/s" in shown


def test_a_loops_steps_are_counted_by_kind_in_strata():
    """The FLOPs of a method's loop: of each kind of step, the first is counted, then one in 50
    (`CallStrata`), each counted step standing for its stratum (here every step costs the same:
    the estimate is exact)."""
    from sylvan.run.accounting import ComputeAccount

    account = ComputeAccount()
    engine = Engine("cpu", "32-true")
    layer = torch.nn.Linear(8, 8)
    account.start_stage(whole=False)
    with engine.loop(120, unit="act", callbacks=[account.callback()]) as loop:
        for _ in range(120):
            with loop.step("act"):
                layer(torch.zeros(1, 8))
            with loop.step("learn") as step:
                step.loss = layer(torch.zeros(4, 8)).sum()
    for kind, flops in (("act", 2 * 8 * 8), ("learn", 2 * 4 * 8 * 8)):
        strata = account.calls[kind]
        assert (strata.made, strata.strata, strata.last) == (120, 3, (100, flops))
    assert account.end_stage() == 120 * 2 * 8 * 8 + 120 * 2 * 4 * 8 * 8


def test_a_loops_steps_follow_each_other():
    engine = Engine("cpu", "32-true")
    with engine.loop(2, unit="act") as loop, loop.step("act"), pytest.raises(RuntimeError, match="inside"):
        with loop.step("learn"):
            pass
    with pytest.raises(RuntimeError, match="already under way"), engine.loop(1, unit="a"), engine.loop(1, unit="b"):
        pass
