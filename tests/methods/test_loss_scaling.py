"""Gradients a method takes itself (GEM's and A-GEM's memory losses, MIR's virtual step) keep their
true size under float16 mixed precision: they are taken under the run's loss scale, as Lightning
takes the training loss's. The float16 forward passes run under the CPU's autocast, with the
CPU's gradient scaler standing in for the one Lightning makes on a GPU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sylvan.methods import AGEM, GEM, MIR, Batch
from sylvan.methods.core.episodic_memory import flat_gradient, trainable_parameters
from sylvan.methods.parts.loss_scaling import unscaled_gradients
from sylvan.run.engine import Engine
from sylvan.settings import ClassIncrementalSetting, OnlineSetting


def float16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.float16)


def relative_error(gradients, expected) -> float:
    got, want = torch.cat([g.flatten() for g in gradients]), torch.cat([g.flatten() for g in expected])
    return float((got - want).norm() / want.norm())


def shrink_last_layer(model: nn.Module, factor: float) -> None:
    """Multiply the weights of `model`'s last layer by `factor`, and so the gradients behind it."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(factor)


def network_with_tiny_gradients() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A network whose last layer is so small that the gradients flowing back into the layer
    before it are about 1e-7: below what float16 represents with any precision (normal values
    start at 6e-5, and the subnormals below are spaced 6e-8 apart)."""
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 10))
    shrink_last_layer(model, 1e-5)
    return model, torch.randn(64, 20, generator=generator), torch.randint(0, 10, (64,), generator=generator)


def test_the_loss_scale_keeps_what_float16_loses():
    model, x, y = network_with_tiny_gradients()
    parameters = list(model.parameters())
    expected = torch.autograd.grad(F.cross_entropy(model(x), y), parameters)  # float32 throughout
    with float16():
        loss = F.cross_entropy(model(x), y)
    unscaled = unscaled_gradients(loss, parameters, None, retain_graph=True)
    scaled = unscaled_gradients(loss, parameters, torch.amp.GradScaler("cpu", init_scale=2.0**16))
    # the first layer's gradients underflow to zero; the scaled ones keep float16's precision
    assert relative_error(unscaled[:2], expected[:2]) > 0.9
    assert relative_error(scaled[:2], expected[:2]) < 0.05
    assert relative_error(scaled[2:], expected[2:]) < 0.01


def test_without_float16_the_scale_changes_nothing():
    model, x, y = network_with_tiny_gradients()
    parameters = list(model.parameters())
    loss = F.cross_entropy(model(x), y)
    plain = torch.autograd.grad(loss, parameters, retain_graph=True)
    assert all(torch.equal(a, b) for a, b in zip(unscaled_gradients(loss, parameters, None, retain_graph=True), plain))
    scaled = unscaled_gradients(loss, parameters, torch.amp.GradScaler("cpu", init_scale=2.0**16))
    assert all(torch.equal(a, b) for a, b in zip(scaled, plain))  # a power of two scales exactly


def test_gradients_that_overflow_the_scale_are_taken_again_unscaled():
    model, x, y = network_with_tiny_gradients()
    parameters = list(model.parameters())
    with float16():
        loss = F.cross_entropy(model(x), y)
    too_large = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # float16 ends at 65504
    unscaled = unscaled_gradients(loss, parameters, None, retain_graph=True)
    overflowed = unscaled_gradients(loss, parameters, too_large, retain_graph=True, require_finite=False)
    assert not all(bool(g.isfinite().all()) for g in overflowed)
    retried = unscaled_gradients(loss, parameters, too_large)
    assert all(torch.equal(a, b) for a, b in zip(retried, unscaled))


def test_unused_inputs_have_no_gradient():
    model, x, y = network_with_tiny_gradients()
    unused = nn.Parameter(torch.zeros(3))
    with float16():
        loss = F.cross_entropy(model(x), y)
    gradients = unscaled_gradients(loss, [*model.parameters(), unused], torch.amp.GradScaler("cpu"))
    assert gradients[-1] is None and all(g is not None for g in gradients[:-1])


def test_a_run_has_a_scaler_only_under_float16_mixed_precision():
    assert Engine("cpu", "32-true").loss_scaler is None
    assert Engine("cpu", "bf16-mixed").loss_scaler is None
    engine = Engine("cpu", "32-true")
    engine.fabric.strategy.precision.scaler = torch.amp.GradScaler("cpu", enabled=False)
    assert engine.loss_scaler is None
    scaler = engine.fabric.strategy.precision.scaler = torch.amp.GradScaler("cpu")
    assert engine.loss_scaler is scaler


def under_float16_training(method, scaler: torch.amp.GradScaler | None) -> None:
    """Give `method`'s run a stand-in for an engine whose precision has `scaler` (16-mixed on a
    GPU has one; 32-true and bf16-mixed do not)."""
    method.run._engine = SimpleNamespace(loss_scaler=scaler, optimizer=None, current_fit=None)


@pytest.mark.parametrize("method_cls", [GEM, AGEM])
def test_memory_gradients_are_taken_under_the_loss_scale(method_cls):
    torch.manual_seed(0)  # the network's initial weights
    setting = ClassIncrementalSetting(dataset="digits", nb_tasks=5, batch_size=16, progress_bar=False)
    method = method_cls(buffer_size=50)
    method.configure(setting)
    generator = torch.Generator().manual_seed(0)
    for task in (0, 1):
        method.on_task_start(task)
        y = torch.tensor([2 * task, 2 * task + 1] * 8)
        method.remember(Batch(torch.rand(16, 1, 8, 8, generator=generator), y, torch.full_like(y, task)))
        method.on_task_end(task)
    shrink_last_layer(method.model, 1e-5)
    memory_state = method.memory.state_dict()  # A-GEM draws its reference batch: the same one each time

    def memory_gradients(scaler, precision16: bool) -> torch.Tensor:
        method.memory.load_state_dict(memory_state)
        under_float16_training(method, scaler)
        if not precision16:
            return method.memory_gradients()
        with float16():
            return method.memory_gradients()

    expected = memory_gradients(None, precision16=False)
    first_layer = trainable_parameters(method.model)[0].numel()  # its weights: where gradients underflow
    unscaled = memory_gradients(None, precision16=True)
    scaled = memory_gradients(torch.amp.GradScaler("cpu"), precision16=True)
    # unscaled, the first layer's gradients lose a sixth or more of their size (0.17 to 0.46 over seeds)
    assert relative_error([unscaled[..., :first_layer]], [expected[..., :first_layer]]) > 0.1
    assert relative_error([scaled[..., :first_layer]], [expected[..., :first_layer]]) < 0.05
    assert relative_error([scaled], [expected]) < 0.05


def test_mirs_virtual_step_is_taken_under_the_loss_scale(monkeypatch):
    torch.manual_seed(0)
    method = MIR()
    method.configure(OnlineSetting(dataset="digits", nb_tasks=5, batch_size=10, progress_bar=False))
    scaler = torch.amp.GradScaler("cpu")
    under_float16_training(method, scaler)
    shrink_last_layer(method.model, 1e-5)
    x, y = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(10)
    taken = []
    gradients = method.gradients

    def recording(loss, inputs, **options):
        result = gradients(loss, inputs, **options)
        taken.append(result)
        return result

    monkeypatch.setattr(method, "gradients", recording)
    parameters = trainable_parameters(method.model)
    expected = torch.autograd.grad(F.cross_entropy(method.learner(x), y), parameters)
    with float16():
        unscaled = torch.autograd.grad(F.cross_entropy(method.learner(x), y), parameters)
    with float16():
        loss = F.cross_entropy(method.learner(x), y)
    method.interference(loss, x, y)
    assert len(taken) == 1
    # the first layer's weights, whose gradients lose a third of their size unscaled
    assert relative_error(unscaled[:1], expected[:1]) > 0.2
    assert relative_error(taken[0][:1], expected[:1]) < 0.05
    # the loss's graph is kept for the training step's own backward pass
    loss.backward()
    assert flat_gradient([p.grad for p in parameters], parameters).norm() > 0
