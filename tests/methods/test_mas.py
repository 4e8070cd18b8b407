"""`mas`: its importance is the output's sensitivity on the task's inputs (checked against a loop
in `test_importance.py`), summed over tasks, and its penalty holds the important weights: after a
second task they have moved less, measured by that importance, than under fine-tuning from the
same start."""

from __future__ import annotations

import pytest
import torch

from sylvan.errors import ConfigurationError
from sylvan.methods import MAS, Naive
from sylvan.methods.core.regularization import weighted_squared_distance
from sylvan.methods.parts.importance import output_sensitivity
from sylvan.settings import ClassIncrementalSetting

TWO_TASKS = dict(dataset="digits", nb_tasks=2, epochs=3, batch_size=16, progress_bar=False, seed=0)


class AfterFirstTask(MAS):
    """MAS that keeps a copy of its importance and anchor as the first task left them."""

    name = ""  # not registered

    def on_task_end(self, task_id):
        super().on_task_end(task_id)
        if not hasattr(self, "first"):
            self.first = ({k: v.clone() for k, v in self.importance.items()},
                          {k: v.clone() for k, v in self.anchor.items()})


def test_the_penalty_holds_the_weights_the_output_is_sensitive_to():
    mas = AfterFirstTask(lr=0.1, mas_lambda=0.1)
    ClassIncrementalSetting(**TWO_TASKS).apply(mas)
    naive = Naive(lr=0.1)  # the same initial weights and data order: the same first task
    ClassIncrementalSetting(**TWO_TASKS).apply(naive)
    importance, anchor = mas.first
    held = float(weighted_squared_distance(mas.model, dict(importance), dict(anchor)).detach())
    drifted = float(weighted_squared_distance(naive.model, dict(importance), dict(anchor)).detach())
    assert held < 0.5 * drifted, (held, drifted)


def test_importances_of_the_tasks_add_up():
    mas = MAS()
    setting = ClassIncrementalSetting(**TWO_TASKS)
    mas.configure(setting)
    x = torch.rand(6, 1, 8, 8)
    for _ in range(2):
        mas._task_inputs = x
        mas.on_task_end(None)
    once = output_sensitivity(mas.model.eval(), x)
    for name, value in mas.importance.items():
        torch.testing.assert_close(value, 2 * once[name])


@pytest.mark.parametrize(("options", "flag"), [(dict(mas_lambda=-1), "--mas_lambda"),
                                               (dict(importance_batch_size=0), "--importance_batch_size")])
def test_nonsense_hyperparameters_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        MAS(**options)
