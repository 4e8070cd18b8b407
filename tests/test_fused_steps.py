"""`--fused_steps K`: K minibatches per Lightning step train exactly as one per step do (the same
weights, accuracies, online accuracy, counted FLOPs and training curve), runs fuse 10 by default
where they can, and what the loop cannot do as Lightning's does is refused."""

from __future__ import annotations

import itertools

import lightning as L
import pytest
import torch

from sylvan.errors import ConfigurationError
from sylvan.methods import METHODS, Naive
from sylvan.run.fused_steps import AUTOMATIC_FUSED_STEPS, MinibatchGroups
from sylvan.settings import SETTINGS, ClassIncrementalSetting, OnlineSetting, TaskIncrementalSetting
from sylvan.tracking import Tracker
from tests.conftest import tiny_options
from tests.test_tracking import RecordsLosses

# 120 samples in 2 tasks at batch 7: 9 minibatches a task, fused in groups of 4 (the last of 1)
TINY_FUSED = {"batch_size": 7, "accelerator": "cpu"}
CLASS_INCREMENTAL_METHODS = sorted(name for name, cls in METHODS.items()
                                   if cls.is_applicable(SETTINGS["class_incremental"]))
# one of each kind of step: plain, replay, gradient hooks (si, gem), held weights (hat, lucir), moving
# averages after each step (clser), gradients of the step (mir), a task's end that trains (bic)
FAST_METHODS = ("naive", "rehearsal", "si", "gem", "lucir", "clser", "mir", "derpp", "bic")
# gdumb's default schedule (cosine) is refused with fused steps: compared at a constant rate
METHOD_OPTIONS = {"gdumb": {"lr_schedule": "constant"}}


def trained(setting_cls: type, method_name: str, fused_steps: int, **options):
    """The results and the trained weights (none for `random`) of a tiny run of `method_name`."""
    setting = setting_cls(**{**tiny_options(setting_cls), **TINY_FUSED, "fused_steps": fused_steps, **options})
    method = METHODS[method_name](**METHOD_OPTIONS.get(method_name, {}))
    torch.manual_seed(0)
    results = setting.apply(method)
    model = getattr(method, "model", torch.nn.Module())
    return results, {name: value.clone() for name, value in model.state_dict().items()}


def assert_identical(setting_cls: type, method_name: str, **options) -> None:
    one, one_weights = trained(setting_cls, method_name, 1, **options)
    fused, fused_weights = trained(setting_cls, method_name, 4, **options)
    assert fused.accuracy_matrix == one.accuracy_matrix
    assert fused.online_accuracy == one.online_accuracy
    assert fused.samples_seen == one.samples_seen and fused.training_flops == one.training_flops
    assert fused_weights.keys() == one_weights.keys()
    assert all(torch.equal(fused_weights[name], one_weights[name]) for name in one_weights), method_name


@pytest.mark.parametrize("method_name", FAST_METHODS)
def test_fused_steps_train_as_one_minibatch_per_step_does(method_name):
    assert_identical(ClassIncrementalSetting, method_name)


@pytest.mark.slow
@pytest.mark.parametrize("method_name", sorted(set(CLASS_INCREMENTAL_METHODS) - set(FAST_METHODS)))
def test_every_method_trains_fused_as_it_does_unfused(method_name):
    assert_identical(ClassIncrementalSetting, method_name)


def test_the_online_meter_scores_each_minibatch_before_it_is_trained_on():
    assert_identical(OnlineSetting, "rehearsal")


def test_task_labels_and_several_epochs_train_alike():
    assert_identical(TaskIncrementalSetting, "ewc", epochs=2)


def test_the_curve_is_the_one_of_one_minibatch_per_step(tmp_path):
    curves = []
    for fused_steps in (1, 3):  # at batch 2, 30 minibatches a task and epoch, each epoch in 10 groups of 3
        setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "batch_size": 2, "epochs": 2,
                                             "fused_steps": fused_steps})
        tracker = Tracker(tmp_path, f"fused-{fused_steps}", {}, verbose=False)
        method = RecordsLosses()
        results = setting.apply(method, tracker)
        tracker.finish(results)
        curves.append((tracker.run_dir / "logs" / "train.csv").read_text().splitlines())
        assert len(method.losses) == 120
    assert curves[0] == curves[1] and [row.split(",")[0] for row in curves[0]] == ["step", *map(str, range(9, 120, 10))]


def test_groups_hold_the_loaders_minibatches_in_order_and_read_through_to_it():
    loader = torch.utils.data.DataLoader(torch.arange(10), batch_size=3)
    groups = MinibatchGroups(loader, 2)
    assert len(groups) == 2 and groups.batch_size == 3 and groups.sampler is loader.sampler
    assert [[m.tolist() for m in group] for group in groups] == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9]]]


def test_groups_ask_for_no_minibatch_past_the_loaders_length():
    """A shuffling loader with its own generator draws the next order when asked past its end;
    Lightning never asks (it knows the length), so neither may the groups, or the next epoch's
    order would differ from one minibatch per step's."""
    def loader(generator):
        return torch.utils.data.DataLoader(torch.arange(10), batch_size=5, shuffle=True, generator=generator)

    grouped, alone = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    for _ in range(2):  # epochs: 2 minibatches in 1 group of 3 (a short one)
        groups = list(MinibatchGroups(loader(grouped), 3))
        minibatches = list(itertools.islice(iter(loader(alone)), 2))
        assert [[m.tolist() for m in group] for group in groups] == [[m.tolist() for m in minibatches]]
    assert torch.equal(grouped.get_state(), alone.get_state())


@pytest.mark.parametrize(("options", "refused"), [
    ({"fused_steps": -1}, "--fused_steps must be >= 0"),
    ({"fused_steps": 4, "devices": 2}, r"data-parallel workers \(2 here\)"),
    ({"fused_steps": 4, "precision": "bf16-mixed"}, "--precision bf16-mixed"),
])
def test_what_the_loop_cannot_do_as_lightning_does_is_refused(options, refused):
    with pytest.raises(ConfigurationError, match=refused):
        ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "accelerator": "cpu", **options})


def test_the_distributed_setting_refuses_fused_steps_even_with_one_worker():
    setting_cls = SETTINGS["distributed"]
    with pytest.raises(ConfigurationError, match=r"data-parallel workers \(1 here\)"):
        setting_cls(**{**tiny_options(setting_cls), "accelerator": "cpu", "devices": 1, "fused_steps": 4})


def test_a_learning_rate_schedule_is_refused_with_fused_steps():
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "fused_steps": 4})
    with pytest.raises(ConfigurationError, match="--lr_schedule step"):
        setting.check_method(Naive(lr_schedule="step", lr_milestones=[1]))
    setting.check_method(Naive())
    with pytest.raises(ConfigurationError, match="--lr_schedule cosine"):  # a run refuses it too
        setting.apply(METHODS["gdumb"]())


class CountsSteps(L.Callback):
    """A callback of one's own that works per Lightning step."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        pass


@pytest.mark.parametrize(("options", "method_options", "callbacks", "expected"), [
    ({}, {}, [], AUTOMATIC_FUSED_STEPS),
    ({"fused_steps": 1}, {}, [], 1),
    ({"fused_steps": 4}, {}, [], 4),
    ({"precision": "bf16-mixed"}, {}, [], 1),
    ({"devices": 2}, {}, [], 1),
    ({}, {"lr_schedule": "step", "lr_milestones": [1]}, [], 1),
    ({}, {}, [CountsSteps()], 1),
    ({}, {}, [L.pytorch.callbacks.ModelSummary()], AUTOMATIC_FUSED_STEPS),  # Lightning's own: per group is right
])
def test_runs_fuse_ten_minibatches_by_default_where_they_can(options, method_options, callbacks, expected):
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "accelerator": "cpu", **options})
    assert setting.minibatches_per_step(Naive(**method_options), callbacks) == expected


def test_a_callback_of_ones_own_that_works_per_step_is_refused_with_fused_steps():
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "fused_steps": 4})
    with pytest.raises(ConfigurationError, match=r"would see as one \(CountsSteps\)"):
        setting.minibatches_per_step(Naive(), [CountsSteps()])


def test_a_default_run_trains_ten_minibatches_per_lightning_step():
    method = Naive()
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "batch_size": 2})
    setting.apply(method)
    assert method.learner.fused_steps == AUTOMATIC_FUSED_STEPS and not method.learner.automatic_optimization


@pytest.mark.parametrize("fused_steps", [1, 3])
def test_the_progress_bar_shows_the_last_logged_loss(fused_steps):
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "batch_size": 2,
                                         "fused_steps": fused_steps, "progress_bar": True})
    method = RecordsLosses()
    setting.apply(method)
    shown = method.learner.trainer.progress_bar_metrics["train/loss"]
    assert len(method.losses) == 60 and shown == pytest.approx(method.losses[59])  # the last task's step 29
