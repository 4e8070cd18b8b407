"""Training augmentation as methods see it: the network trains on augmented new and replayed
samples, buffers keep the samples as they came, evaluation is never augmented; and every method
runs with it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from sylvan.methods import METHODS, Batch, Rehearsal
from sylvan.minibatches import float_inputs
from sylvan.settings import SETTINGS, ClassIncrementalSetting
from tests.conftest import tiny_options
from tests.settings.test_augmentation import is_augmented_view

PADDING = 2


@dataclass
class AugmentationSpy(Rehearsal):
    """Rehearsal that records the batches it trains on and every call of `augment_inputs`: those
    made inside its `training_step` (on the samples it replays) apart from the others (on the
    minibatch, made by the learner before the step)."""

    name: ClassVar[str] = ""  # not registered: the generated method matrix must not run it

    def configure(self, run) -> None:
        super().configure(run)
        self.batches: list[Batch] = []
        self.augment_calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.replay_calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._in_step = False

    def augment_inputs(self, x: torch.Tensor) -> torch.Tensor:
        out = super().augment_inputs(x)
        (self.replay_calls if self._in_step else self.augment_calls).append((x.clone(), out.clone()))
        return out

    def training_step(self, batch: Batch) -> torch.Tensor:
        self.batches.append(batch)
        self._in_step = True
        try:
            return super().training_step(batch)
        finally:
            self._in_step = False


def run_spy(augmentation: str) -> tuple[ClassIncrementalSetting, AugmentationSpy]:
    padding = {"crop_padding": PADDING} if augmentation == "crop_flip" else {}  # refused where nothing is cropped
    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting), augmentation=augmentation, batch_size=8,
                                      **padding)
    method = AugmentationSpy(buffer_size=30, replay_size=8)
    setting.apply(method)
    return setting, method


def rows(x: torch.Tensor) -> set[bytes]:
    return {row.cpu().numpy().tobytes() for row in x}


def test_new_and_replayed_samples_are_augmented_and_the_buffer_keeps_them_as_they_came():
    setting, method = run_spy("crop_flip")
    training_inputs = rows(torch.cat([float_inputs(task.x_train) for task in setting.prepare_tasks()]))
    steps = len(method.batches)
    assert steps > 10
    # one augmentation of the minibatch per step, and one of the replayed samples at every step but
    # the first (the buffer is empty only then)
    assert len(method.augment_calls) == steps and len(method.replay_calls) == steps - 1
    for batch in method.batches:
        assert batch.stored_x is not None and rows(batch.stored_x) <= training_inputs
        assert all(is_augmented_view(o, s, PADDING) for o, s in zip(batch.x, batch.stored_x))
    changed = sum(not torch.equal(o, s) for batch in method.batches for o, s in zip(batch.x, batch.stored_x))
    assert changed > 0.8 * sum(len(batch.y) for batch in method.batches)
    for x, out in method.replay_calls:  # replayed samples are drawn as stored, then augmented
        assert rows(x) <= training_inputs
        assert all(is_augmented_view(o, s, PADDING) for o, s in zip(out, x))
    # what the buffer holds are training samples as they came, not augmented views of them
    assert rows(method.buffer.get_all()["x"]) <= training_inputs
    # evaluation does not augment
    calls = len(method.augment_calls) + len(method.replay_calls)
    setting.evaluate(method, setting.prepare_tasks())
    assert len(method.augment_calls) + len(method.replay_calls) == calls


def test_spy_is_not_registered():
    assert AugmentationSpy not in METHODS.values()


def test_without_augmentation_batches_are_as_they_came():
    _, method = run_spy("none")
    assert method.augmentation is None
    assert all(batch.stored_x is None for batch in method.batches)
    assert all(torch.equal(x, out) for x, out in method.augment_calls + method.replay_calls)


CLASS_INCREMENTAL_METHODS = sorted(name for name, cls in METHODS.items()
                                   if cls.is_applicable(SETTINGS["class_incremental"]))


@pytest.mark.parametrize("method_name", CLASS_INCREMENTAL_METHODS)
def test_every_method_runs_with_augmentation(method_name):
    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting), augmentation="crop_flip",
                                      crop_padding=PADDING)
    method = METHODS[method_name]()
    results = setting.apply(method)
    assert results.complete and not math.isnan(results.final_average_accuracy)
    if method_name != "random":
        assert method.augmentation is not None and method.augmentation.generator is not None  # it drew


@dataclass
class FeatureSpy(Rehearsal):
    """Rehearsal whose backbone's features hold batch norm and dropout (so that training and
    evaluation modes give different features), recording every computation of the features a
    buffer stores: the inputs, what an evaluation-mode pass gives for them, what was returned,
    and whether the batch-norm running statistics and the training mode survived the call."""

    name: ClassVar[str] = ""

    def build_model(self) -> torch.nn.Module:
        model = super().build_model()
        width = model.feature_dim
        model.features = torch.nn.Sequential(model.features, torch.nn.BatchNorm1d(width), torch.nn.Dropout(0.5))
        return model

    def configure(self, run) -> None:
        super().configure(run)
        self.checks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool, bool]] = []

    def stored_features(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.model.features[1]
        statistics = [t.clone() for t in norm.buffers()]
        self.model.eval()
        with torch.no_grad():
            expected = self.model.features(x)
        self.model.train()
        features = super().stored_features(x)
        untouched = all(torch.equal(a, b) for a, b in zip(statistics, norm.buffers()))
        # kept on the CPU, where the test compares them with the training data and the buffer's rows
        self.checks.append((x.clone().cpu(), expected.cpu(), features.clone().cpu(), untouched, self.model.training))
        return features


@pytest.mark.parametrize("setting_name", ["class_incremental", "distributed"])
@pytest.mark.parametrize("policy, retrieval", [("herding", "uniform"), ("reservoir", "grasp")])
def test_stored_features_describe_the_samples_as_they_came_in_evaluation_mode(setting_name, policy, retrieval):
    """Policies that keep features get those of the stored (not augmented) inputs, without
    dropout and with the running batch statistics, in one process as through the distributed
    rehearsal strategy, and computing them neither updates those statistics nor leaves the
    network in evaluation mode."""
    setting_cls = SETTINGS[setting_name]
    setting = setting_cls(**tiny_options(setting_cls), augmentation="crop_flip", batch_size=8, crop_padding=PADDING)
    method = FeatureSpy(buffer_size=30, replay_size=8, buffer_policy=policy, buffer_retrieval=retrieval)
    assert setting.apply(method).complete
    training_inputs = rows(torch.cat([float_inputs(task.x_train) for task in setting.prepare_tasks()]))
    steps = sum(len(task.x_train) for task in setting.prepare_tasks()) // 8
    assert len(method.checks) >= steps  # once per step: the new samples
    for x, expected, features, untouched, training in method.checks:
        assert rows(x) <= training_inputs  # as they came, not augmented
        assert torch.allclose(features, expected, atol=1e-6)
        assert untouched and training
    if setting_name == "distributed":  # through the distributed rehearsal buffer
        assert method.runtime_stats()["replay_steps"] >= steps
    offered = {row.numpy().tobytes(): f for x, _, features, _, _ in method.checks for row, f in zip(x, features)}
    stored = method.buffer.get_all()
    assert len(stored["x"]) > 0
    for x_row, f_row in zip(stored["x"].cpu(), stored["features"].cpu()):  # the buffer keeps what it was given
        assert torch.equal(f_row, offered[x_row.numpy().tobytes()])
