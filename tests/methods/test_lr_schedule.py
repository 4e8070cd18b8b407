"""`--lr_schedule`: the learning rate each step of a task's training runs at, restarted at every
task, for every supervised method (recorded by a spy from inside real training runs)."""

from __future__ import annotations

import math

import pytest
import torch

from sylvan.errors import ConfigurationError, UnknownNameError
from sylvan.methods import GDumb, Naive, StableSGD
from sylvan.methods.core.supervised import Batch
from sylvan.settings import ClassIncrementalSetting, OnlineSetting

TWO_TASKS = dict(dataset="digits", nb_tasks=2, batch_size=64, train_samples=400, progress_bar=False)


class RecordsRates:
    """Mixin: records (task, epoch, lr) at every training step, the rate that step runs at."""

    def configure(self, run):
        super().configure(run)
        self.rates, self.tasks_fitted = [], 0

    def training_step(self, batch: Batch):
        fit = self.run.engine.current_fit
        self.rates.append((self.tasks_fitted, fit.epoch, fit.optimizer.param_groups[0]["lr"]))
        return super().training_step(batch)

    def fit(self, train_data, val_data=None):
        super().fit(train_data, val_data)
        self.tasks_fitted += 1


class RecordingNaive(RecordsRates, Naive):
    pass


class RecordingStableSGD(RecordsRates, StableSGD):
    pass


class RecordingGDumb(RecordsRates, GDumb):
    pass


def rates_of(method, task: int) -> list[float]:
    return [lr for t, _, lr in method.rates if t == task]


def test_the_default_rate_is_constant():
    method = RecordingNaive(lr=0.07)
    ClassIncrementalSetting(**TWO_TASKS, epochs=2).apply(method)
    assert {lr for _, _, lr in method.rates} == {0.07}


def test_step_lowers_the_rate_after_each_milestone_and_restarts_at_each_task():
    method = RecordingNaive(lr=0.1, lr_schedule="step", lr_milestones=[1, 2], lr_gamma=0.5)
    ClassIncrementalSetting(**TWO_TASKS, epochs=3).apply(method)
    for task in (0, 1):
        by_epoch = [sorted({lr for t, e, lr in method.rates if t == task and e == epoch}) for epoch in range(3)]
        assert by_epoch == [[0.1], [pytest.approx(0.05)], [pytest.approx(0.025)]]


def cosine(lr: float, min_lr: float, step: int, steps: int) -> float:
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * step / steps)) / 2


def test_cosine_anneals_from_lr_towards_min_lr_over_each_tasks_steps():
    method = RecordingNaive(lr=0.1, lr_schedule="cosine", min_lr=0.01)
    ClassIncrementalSetting(**TWO_TASKS, epochs=3).apply(method)
    for task in (0, 1):
        rates = rates_of(method, task)
        assert len(rates) > 6  # 3 epochs of a task of ~160 samples, batch 64
        assert rates == pytest.approx([cosine(0.1, 0.01, step, len(rates)) for step in range(len(rates))])


def test_cosine_runs_on_a_single_pass_stream():
    method = RecordingNaive(lr=0.1, lr_schedule="cosine")
    OnlineSetting(**{**TWO_TASKS, "batch_size": 10}).apply(method)
    rates = rates_of(method, 0)
    assert rates[0] == pytest.approx(0.1) and rates[-1] < 0.001
    assert all(b < a for a, b in zip(rates, rates[1:]))


def test_a_methods_own_rate_per_task_scales_the_whole_schedule():
    method = RecordingStableSGD(lr=0.1, lr_decay=0.5, lr_schedule="cosine", min_lr=0.02)
    ClassIncrementalSetting(**TWO_TASKS, epochs=2).apply(method)
    first, second = rates_of(method, 0), rates_of(method, 1)
    assert first == pytest.approx([cosine(0.1, 0.02, s, len(first)) for s in range(len(first))])
    assert second == pytest.approx([cosine(0.05, 0.01, s, len(second)) for s in range(len(second))])


def test_gdumb_anneals_each_retraining_by_default():
    method = RecordingGDumb(buffer_size=100, retrain_epochs=2, retrain_batch_size=20)
    ClassIncrementalSetting(**TWO_TASKS, epochs=1).apply(method)
    for task in (0, 1):
        rates = rates_of(method, task)
        assert rates == pytest.approx([cosine(0.05, 0.0005, s, len(rates)) for s in range(len(rates))])


@pytest.mark.parametrize(("options", "message"), [
    (dict(lr_schedule="linear"), "valid learning-rate schedules: constant, cosine, step"),
    (dict(lr_milestones=[2]), "--lr_milestones [2] has no effect"),
    (dict(lr_schedule="cosine", lr_gamma=0.5), "--lr_gamma 0.5 has no effect"),
    (dict(min_lr=0.01), "--min_lr 0.01 has no effect"),
    (dict(lr_schedule="step"), "needs --lr_milestones"),
    (dict(lr_schedule="step", lr_milestones=[0, 2]), "needs --lr_milestones"),
    (dict(lr_schedule="step", lr_milestones=[3, 2]), "increasing, got [3, 2]"),
    (dict(lr_schedule="step", lr_milestones=[2], lr_gamma=1.0), "--lr_gamma must be in (0, 1)"),
    (dict(lr_schedule="cosine", lr=0.1, min_lr=0.2), "--min_lr must be in [0, lr]"),
])
def test_schedule_options_that_make_no_sense_are_refused(options, message):
    with pytest.raises((ConfigurationError, UnknownNameError)) as refusal:
        Naive(**options)
    assert message in str(refusal.value)


def test_milestones_must_fall_within_the_epochs_each_fit_trains():
    step = dict(lr_schedule="step", lr_milestones=[1, 3])
    Naive(**step).validate_for(ClassIncrementalSetting(epochs=4))
    with pytest.raises(ConfigurationError, match="trains 3 epoch.*below 3"):
        Naive(**step).validate_for(ClassIncrementalSetting(epochs=3))
    with pytest.raises(ConfigurationError, match="naive on online trains 1 epoch"):
        Naive(lr_schedule="step", lr_milestones=[1]).validate_for(OnlineSetting())
    # gdumb's fits are its retrainings: the milestones count those epochs, whatever the setting's
    GDumb(retrain_epochs=4, **step).validate_for(OnlineSetting())
    with pytest.raises(ConfigurationError, match="trains 3 epoch"):
        GDumb(retrain_epochs=3, **step).validate_for(ClassIncrementalSetting(epochs=10))


def test_cosine_refuses_a_loader_without_a_length():
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            for _ in range(3):
                yield torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))

    method = Naive(lr_schedule="cosine")
    method.configure(ClassIncrementalSetting(**TWO_TASKS, epochs=1))
    with pytest.raises(ConfigurationError, match="needs the length of the training data"):
        method.fit(torch.utils.data.DataLoader(Stream(), batch_size=None))
