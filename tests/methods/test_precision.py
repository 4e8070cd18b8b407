"""`--precision`: training under Lightning's mixed-precision plugins, evaluation in float32."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError, UnknownNameError
from sylvan.methods import AGEM, DER, FDR, GEM, METHODS, MIR, RWalk
from sylvan.methods.naive import Naive
from sylvan.run.engine import step_overflowed
from sylvan.settings import SETTINGS, ClassIncrementalSetting, OnlineSetting
from tests.conftest import tiny_options


@dataclass
class PrecisionSpy(Naive):
    """Fine-tuning that records the dtype of its logits in training and at evaluation, and the
    gradients it is shown before each optimizer step."""

    name: ClassVar[str] = ""  # not registered

    def configure(self, run):
        super().configure(run)
        self.training_dtypes: set[torch.dtype] = set()
        self.scoring_dtypes: set[torch.dtype] = set()
        self.gradient_norms: list[float] = []

    def training_step(self, batch):
        logits = self.learner(batch.x)
        self.training_dtypes.add(logits.dtype)
        return F.cross_entropy(logits, batch.y)

    def after_backward(self):
        gradients = [p.grad for p in self.model.parameters() if p.grad is not None]
        self.gradient_norms.append(float(torch.cat([g.flatten() for g in gradients]).norm()))
        assert all(g.dtype == torch.float32 for g in gradients)  # the weights stay float32

    def scores(self, x, task_labels):
        scores = super().scores(x, task_labels)
        self.scoring_dtypes.add(scores.dtype)
        return scores


@pytest.mark.parametrize(("precision", "training_dtype"), [("32-true", torch.float32), ("bf16-mixed", torch.bfloat16)])
def test_training_runs_at_the_precision_asked_and_evaluation_in_float32(precision, training_dtype):
    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting), accelerator="cpu", precision=precision)
    spy = PrecisionSpy()
    results = setting.apply(spy)
    assert spy.training_dtypes == {training_dtype}
    assert spy.scoring_dtypes == {torch.float32}
    assert spy.gradient_norms and all(0 < norm < float("inf") for norm in spy.gradient_norms)
    assert results.accuracy_matrix[-1][-1] > 0.4  # it learned the last task (chance: 0.1)


def bf16_runs() -> list[tuple[str, str]]:
    """Every registered supervised method, on the first of class_incremental and task_incremental
    it applies to."""
    runs = []
    for name, cls in sorted(METHODS.items()):
        setting = next((s for s in ("class_incremental", "task_incremental") if cls.is_applicable(SETTINGS[s])), None)
        if setting is not None:
            runs.append((setting, name))
    return runs


@pytest.mark.parametrize(("setting_name", "method_name"), bf16_runs())
def test_every_supervised_method_trains_under_bf16_mixed(setting_name, method_name):
    """Losses a method computes past the network (similarities, masks at the float32 minimum,
    its own gradients) must run under autocast's bfloat16 as under float32."""
    setting_cls = SETTINGS[setting_name]
    setting = setting_cls(**tiny_options(setting_cls), accelerator="cpu", precision="bf16-mixed")
    results = setting.apply(METHODS[method_name]())
    assert results.complete and not math.isnan(results.final_average_accuracy)


def test_bf16_training_learns_as_float32_does():
    """DER stores the logits of its training steps: bfloat16 ones under bf16-mixed, a dtype the
    CPU buffer writes through torch rather than NumPy. The run must still learn what float32
    learns, within a few points."""
    accuracies = {}
    for precision in ("32-true", "bf16-mixed"):
        setting = ClassIncrementalSetting(
            **{**tiny_options(ClassIncrementalSetting), "train_samples": 1000, "epochs": 2},
            accelerator="cpu", precision=precision,
        )
        method = DER(buffer_size=60)
        accuracies[precision] = setting.apply(method).final_average_accuracy
        expected = torch.bfloat16 if precision == "bf16-mixed" else torch.float32
        assert method.buffer.storage["logits"].dtype == expected
    assert accuracies["32-true"] > 0.6  # the first task is partly kept (naive: 0.5 at most)
    assert abs(accuracies["bf16-mixed"] - accuracies["32-true"]) < 0.1, accuracies


def test_precisions_are_checked():
    with pytest.raises(UnknownNameError, match="valid precisions"):
        OnlineSetting(precision="fp8")
    with pytest.raises(ConfigurationError, match="needs a GPU"):
        OnlineSetting(precision="16-mixed", accelerator="cpu")



@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_16_mixed_hands_methods_unscaled_gradients():
    """Under float16 with loss scaling, the gradients a method clips, projects or records must be
    the true ones, not the ones multiplied by the loss scale (2**16 at the start)."""
    norms = {}
    for precision in ("32-true", "16-mixed"):
        options = dict(tiny_options(ClassIncrementalSetting), accelerator="gpu", precision=precision)
        spy = PrecisionSpy()
        ClassIncrementalSetting(**options).apply(spy)
        finite = [norm for norm in spy.gradient_norms if norm < float("inf")]
        norms[precision] = float(torch.tensor(finite).median())
    assert spy.training_dtypes == {torch.float16}
    assert 0.5 < norms["16-mixed"] / norms["32-true"] < 2, norms


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("method_cls", [GEM, AGEM, MIR, FDR])
def test_16_mixed_takes_a_methods_own_gradients_under_the_loss_scale(method_cls):
    """GEM's and A-GEM's memory gradients, MIR's virtual step and FDR's function distance are taken
    under the engine's loss scale, and the runs learn as float32 ones do
    (`tests/methods/test_loss_scaling.py` checks the gradients themselves, on the CPU)."""
    accuracies, scaled = {}, []
    for precision in ("32-true", "16-mixed"):
        options = dict(tiny_options(ClassIncrementalSetting), accelerator="gpu", precision=precision)
        method = method_cls()
        original = method.gradients

        def recording(loss, inputs, _method=method, _original=original, _precision=precision, **kwargs):
            scaled.append((_precision, _method.run.engine.loss_scaler is not None))
            return _original(loss, inputs, **kwargs)

        method.gradients = recording
        accuracies[precision] = ClassIncrementalSetting(**options).apply(method).final_average_accuracy
    assert {("32-true", False), ("16-mixed", True)} == set(scaled)
    assert abs(accuracies["16-mixed"] - accuracies["32-true"]) < 0.2, accuracies  # tiny test sets: a sanity bound


@pytest.mark.parametrize("overflowed", [True, False])
def test_a_step_the_loss_scaler_skips_is_hidden_from_the_methods_hooks(overflowed):
    """Under 16-mixed the scaler skips the optimizer's step where the gradients overflowed. SI
    and RWalk record each step's gradient times the weights' move: an infinite gradient and a
    move of zero would make their importances NaN. The learner hides such a step from
    `after_backward` and `after_step` (the CPU's gradient scaler stands in for a GPU run's)."""
    method = RWalk(score_interval=1)
    method.configure(ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting)))
    learner = method.learner
    for p in method.model.parameters():
        p.grad = torch.full_like(p, float("inf") if overflowed else 0.5)
    scaler, optimizer = torch.amp.GradScaler("cpu", init_scale=1.0), torch.optim.SGD(method.model.parameters())
    scaler.scale(torch.ones(()))  # as a loss is, before its backward pass
    scaler.unscale_(optimizer)
    skipped = step_overflowed(optimizer, scaler)
    assert skipped is overflowed
    learner.gradients_ready(skipped)
    learner.minibatch_trained(skipped)  # the scaler skipped the step: the weights did not move
    fisher = torch.cat([f.flatten() for f in method.fisher.values()])
    if overflowed:
        assert float(fisher.abs().sum()) == 0.0, "nothing was recorded"
    else:
        torch.testing.assert_close(fisher, torch.full_like(fisher, 0.9 * 0.25))  # alpha * g^2
    assert bool(torch.cat([s.flatten() for s in method.task_score.values()]).isfinite().all())


def test_an_overflow_is_read_from_what_the_scalers_unscale_found():
    """The engine asks the scaler, after `unscale_`, whether it will skip the step: one infinite
    gradient among the optimizer's parameters is enough; without a scaler nothing is checked; a
    scaler that has not unscaled the optimizer's gradients cannot say, and is refused."""
    layers = [torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)]
    optimizer = torch.optim.SGD([p for layer in layers for p in layer.parameters()], lr=0.1)
    for p in optimizer.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    scaler.scale(torch.ones(()))  # as a loss is, before its backward pass
    with pytest.raises(RuntimeError, match="unscale_"):
        step_overflowed(optimizer, scaler)
    scaler.unscale_(optimizer)
    assert step_overflowed(optimizer, scaler) is False
    assert torch.equal(layers[0].weight.grad, torch.full_like(layers[0].weight, 0.25))  # divided by the scale
    scaler.update()
    layers[1].bias.grad = torch.tensor([1.0, float("nan")])
    scaler.unscale_(optimizer)
    assert step_overflowed(optimizer, scaler) is True
    assert step_overflowed(optimizer, None) is False
