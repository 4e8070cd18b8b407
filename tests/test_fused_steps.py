"""`--fused_steps K`: K minibatches per Lightning step train exactly as one per step do (the same
weights, accuracies, online accuracy and counted FLOPs), the training curve gets a point per
Lightning step, and what the loop cannot do as Lightning's does is refused."""

from __future__ import annotations

import pytest
import torch

from sylvan.errors import ConfigurationError
from sylvan.methods import METHODS, Naive
from sylvan.run.fused_steps import MinibatchGroups
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


def test_the_curve_gets_the_mean_loss_of_each_lightning_step_where_lightning_logs(tmp_path):
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "batch_size": 1, "fused_steps": 2})
    tracker = Tracker(tmp_path, "fused", {}, verbose=False)
    method = RecordsLosses()
    results = setting.apply(method, tracker)
    tracker.finish(results)
    rows = (tracker.run_dir / "logs" / "train.csv").read_text().splitlines()[1:]
    expected, start = [], 0
    for minibatches in results.samples_seen:  # a point every 10 Lightning steps of 2 minibatches
        groups = [method.losses[first:first + 2] for first in range(start, start + minibatches, 2)]
        expected += [sum(group) / len(group) for group in groups[9::10]]
        start += minibatches
    assert start == len(method.losses) and expected
    assert [float(row.split(",")[1]) for row in rows] == pytest.approx(expected, rel=1e-5)


def test_groups_hold_the_loaders_minibatches_in_order_and_read_through_to_it():
    loader = torch.utils.data.DataLoader(torch.arange(10), batch_size=3)
    groups = MinibatchGroups(loader, 2)
    assert len(groups) == 2 and groups.batch_size == 3 and groups.sampler is loader.sampler
    assert [[m.tolist() for m in group] for group in groups] == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9]]]


@pytest.mark.parametrize(("options", "refused"), [
    ({"fused_steps": 0}, "--fused_steps must be >= 1"),
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
