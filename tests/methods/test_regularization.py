"""`WeightRegularization`, the base of `ewc`, `mas`, `si` and `rwalk`: a method that only measures each
task's importance gets the anchoring penalty, the loss and the checkpointed state from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F

from sylvan.methods import EWC, MAS, SI, Batch, RWalk
from sylvan.methods.core.regularization import WeightRegularization
from sylvan.settings import ClassIncrementalSetting
from sylvan.settings.base import Setting

DIGITS = dict(dataset="digits", nb_tasks=5, epochs=1, batch_size=16, progress_bar=False)


@dataclass
class UniformImportance(WeightRegularization):
    """Every weight equally important, `weight` per task: the L2 pull toward the last task's weights."""

    name: ClassVar[str] = ""  # not registered: the generated method matrix must not run it
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting
    checkpoint_complete: ClassVar[bool] = True

    strength: float = 0.5
    weight: float = 2.0
    decay: float = 0.25

    @property
    def penalty_strength(self) -> float:
        return self.strength

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        self.consolidate({k: torch.full_like(v, self.weight) for k, v in self.model.named_parameters()},
                         decay=self.decay)


def configured(method: WeightRegularization, **options) -> WeightRegularization:
    method.configure(ClassIncrementalSetting(**{**DIGITS, **options}))
    return method


def batch() -> Batch:
    generator = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 1, 2, 3])
    return Batch(torch.rand(4, 1, 8, 8, generator=generator), y, None)


def shift_weights(method: WeightRegularization, by: float) -> None:
    with torch.no_grad():
        for p in method.model.parameters():
            p.add_(by)


def test_before_the_first_consolidation_the_loss_is_the_cross_entropy():
    method = configured(UniformImportance())
    assert method.importance is None and method.anchor is None
    assert float(method.penalty().detach()) == 0.0
    step = batch()
    torch.testing.assert_close(method.training_step(step), F.cross_entropy(method.learner(step.x), step.y))


def test_the_loss_adds_the_strength_times_the_importance_weighted_distance_to_the_anchor():
    method = configured(UniformImportance())
    method.on_task_end(0)
    assert float(method.penalty().detach()) == 0.0  # at the anchor
    shift_weights(method, 0.1)
    count = sum(p.numel() for p in method.model.parameters())
    torch.testing.assert_close(method.penalty(), torch.tensor(2.0 * 0.1**2 * count), rtol=1e-4, atol=0.0)
    step = batch()
    expected = F.cross_entropy(method.learner(step.x), step.y) + 0.5 * method.penalty()
    torch.testing.assert_close(method.training_step(step), expected)


def test_consolidation_decays_the_running_importance_and_moves_the_anchor_to_a_copy_of_the_weights():
    method = configured(UniformImportance())
    method.on_task_end(0)
    shift_weights(method, 0.1)
    method.on_task_end(1)
    for name, weight in method.model.named_parameters():
        torch.testing.assert_close(method.importance[name], torch.full_like(weight, 0.25 * 2.0 + 2.0))
        torch.testing.assert_close(method.anchor[name], weight.detach())
    shift_weights(method, 0.1)  # the anchor is a copy: it stays where the task ended
    assert float(method.penalty().detach()) > 0.0


def test_a_zero_strength_leaves_the_cross_entropy_alone():
    method = configured(UniformImportance(strength=0.0))
    method.on_task_end(0)
    shift_weights(method, 0.1)
    step = batch()
    torch.testing.assert_close(method.training_step(step), F.cross_entropy(method.learner(step.x), step.y))


def test_the_importance_and_the_anchor_survive_a_checkpoint():
    UniformImportance.check_resumable()  # refuses a method whose state a checkpoint might miss
    # on the CPU: a checkpoint restores the networks onto the run's device, and the penalties are compared
    # with the trained method's, computed on the CPU
    trained = configured(UniformImportance(), accelerator="cpu")
    trained.on_task_end(0)
    shift_weights(trained, 0.1)
    state = trained.state_dict()
    resumed = configured(UniformImportance(), accelerator="cpu")
    resumed.load_state_dict(state)
    for name in trained.importance:
        torch.testing.assert_close(resumed.importance[name], trained.importance[name])
        torch.testing.assert_close(resumed.anchor[name], trained.anchor[name])
    torch.testing.assert_close(resumed.penalty(), trained.penalty())


@pytest.mark.parametrize(
    "method_cls,strength", [(EWC, "ewc_lambda"), (MAS, "mas_lambda"), (SI, "c"), (RWalk, "rwalk_lambda")]
)
def test_each_regularization_method_weighs_its_penalty_with_its_own_flag(method_cls, strength):
    method = configured(method_cls(**{strength: 3.5}))
    assert method.penalty_strength == 3.5
    method_cls.check_resumable()


@pytest.mark.parametrize("method_name", ["ewc", "mas", "si", "rwalk"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_an_sgd_step_on_the_penalty_never_overshoots_the_anchor_whatever_the_importance(method_name, momentum):
    """An importance beyond 1 / (2 lr lambda) made the penalty's SGD step overshoot the anchor by
    more than it started from (|1 - 2 lr lambda Omega| > 1): the weight oscillated away from it
    until training diverged (ewc at its defaults on the CTrL streams). However large the
    importance, the penalty alone brings every weight back toward its anchor."""
    from sylvan.methods import METHODS
    from sylvan.run.context import RunContext
    from sylvan.settings import ClassIncrementalSetting

    method = METHODS[method_name](momentum=momentum)
    method.configure(RunContext.standalone(ClassIncrementalSetting(dataset="digits", nb_tasks=5)))
    model = method.model
    method.anchor = {name: w.detach().clone() for name, w in model.named_parameters()}
    method.importance = {name: torch.full_like(w, 1e6) for name, w in model.named_parameters()}
    with torch.no_grad():
        for w in model.parameters():
            w.add_(0.01)
    optimizer = torch.optim.SGD(model.parameters(), lr=method.lr, momentum=momentum)
    before = max(float((w - method.anchor[n]).abs().max()) for n, w in model.named_parameters())
    for _ in range(50):
        optimizer.zero_grad()
        (method.penalty_strength * method.penalty()).backward()
        optimizer.step()
    after = max(float((w - method.anchor[n]).abs().max()) for n, w in model.named_parameters())
    assert after < before


def test_ewc_at_its_defaults_learns_the_offline_ctrl_stream_it_diverged_on(mnist_root):
    """S_in, seed 2, 3 epochs per task, batch 32 (the modular benchmark's protocol): training
    diverged at the third task."""
    from sylvan.methods import METHODS
    from sylvan.settings import DatasetStreamSetting

    setting = DatasetStreamSetting(stream="s_in_offline", data_dir=str(mnist_root), epochs=3, batch_size=32, seed=2,
                                   progress_bar=False, forward_transfer=False)
    results = setting.apply(METHODS["ewc"]())
    assert results.complete and results.final_average_accuracy > 0.3
