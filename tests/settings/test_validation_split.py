"""`--validation_fraction`: a class-stratified split of the training set stands in for the test
set, which the run then never reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from continuum.datasets import InMemoryDataset

from sylvan.errors import ConfigurationError
from sylvan.methods import Method
from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting, OnlineSetting, Setting
from sylvan.settings.data.streams import holdout
from tests.conftest import tiny_options


def labelled(counts: list[int]) -> InMemoryDataset:
    y = np.concatenate([np.full(n, label) for label, n in enumerate(counts)])
    x = np.arange(len(y), dtype=np.float32)[:, None]  # x identifies the sample
    return InMemoryDataset(x, y)


def test_holdout_is_a_seeded_class_stratified_partition():
    dataset = labelled([50, 20, 7, 2])
    train, validation = holdout(dataset, 0.2, seed=3)
    (x_train, y_train, _), (x_val, y_val, _) = train.get_data(), validation.get_data()
    assert sorted(np.concatenate([x_train, x_val])[:, 0].tolist()) == list(range(79))  # a partition
    assert np.bincount(y_val).tolist() == [10, 4, 1, 1]  # 20% rounded, at least one, one left to train
    assert np.bincount(y_train).tolist() == [40, 16, 6, 1]
    again = holdout(dataset, 0.2, seed=3)[1].get_data()[0]
    other = holdout(dataset, 0.2, seed=4)[1].get_data()[0]
    assert np.array_equal(again, x_val) and not np.array_equal(other, x_val)


def test_a_class_too_small_to_hold_out_from_is_refused():
    with pytest.raises(ConfigurationError, match="at least 2"):
        holdout(labelled([5, 1]), 0.5, seed=0)


@dataclass
class Recorder(Method):
    """Records the inputs it trains on and the inputs it is evaluated on."""

    name: ClassVar[str] = ""  # not registered
    target_setting: ClassVar[type] = Setting

    def configure(self, run):
        super().configure(run)
        self.trained: list[torch.Tensor] = []
        self.evaluated: list[torch.Tensor] = []

    def fit(self, train_data, val_data=None):
        self.trained.extend(batch[0] for batch in train_data)

    def predict(self, x, task_labels=None):
        self.evaluated.append(x)
        return torch.zeros(len(x), self.run.num_classes)


def rows(tensors: list[torch.Tensor]) -> set[bytes]:
    return {row.numpy().tobytes() for row in torch.cat(tensors).flatten(1)}


@pytest.mark.parametrize("setting_cls", [OnlineSetting, ClassIncrementalSetting, DomainIncrementalSetting])
def test_the_run_evaluates_on_held_out_training_samples_and_never_reads_the_test_set(setting_cls):
    options = {**tiny_options(setting_cls), "dataset": "digits", "train_samples": 300}
    plain, held_out = Recorder(), Recorder()
    setting_cls(**options).apply(plain)
    results = setting_cls(**options, validation_fraction=0.2).apply(held_out)
    assert results.evaluation_split == "validation"
    trained, evaluated = rows(held_out.trained), rows(held_out.evaluated)
    assert not trained & evaluated  # validation samples are not trained on
    assert evaluated <= rows(plain.trained)  # they come out of the training set
    assert not evaluated & rows(plain.evaluated)  # and the test set is not read
    assert len(trained) == pytest.approx(0.8 * len(rows(plain.trained)), abs=10)


def test_results_say_what_they_were_measured_on(tmp_path):
    from sylvan.methods import Naive
    from sylvan.run.experiment import RunOptions, run_experiment

    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting), validation_fraction=0.25)
    results = run_experiment(setting, Naive(), RunOptions(results_dir=str(tmp_path), run_name="held_out"))
    assert "(on the validation split)" in results.table().splitlines()[0]
    saved = json.loads((tmp_path / "held_out" / "results.json").read_text())
    assert saved["evaluation_split"] == "validation"


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_fractions_outside_0_1_are_refused(fraction):
    with pytest.raises(ConfigurationError, match="--validation_fraction"):
        OnlineSetting(validation_fraction=fraction)
