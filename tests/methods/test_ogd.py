"""`ogd`: the output gradients against autograd sample by sample, the basis's growth (orthonormal,
spanning what it was given, nothing for what it already spans), steps projected out of it that
leave the finished task's outputs as they were where unprojected steps move them, and the
refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods import OGD, Batch
from sylvan.methods.parts.gradient_projection import grown_basis, logit_gradients
from sylvan.settings import ClassIncrementalSetting, TaskIncrementalSetting
from tests.methods.digits_samples import DIGITS, configured, samples


def small_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 7), nn.Tanh(), nn.Linear(7, 5))


def autograd_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """What `logit_gradients` gives, one backward pass per output written out."""
    parameters = list(model.parameters())
    rows = []
    for sample, label in zip(x, y):
        logits = model(sample.unsqueeze(0))[0]
        outputs = {"ground_truth": [logits[label]], "average": [logits.mean()], "all": list(logits)}[kind]
        for output in outputs:
            gradients = torch.autograd.grad(output, parameters, retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in gradients]))
    return torch.stack(rows)


@pytest.mark.parametrize("kind", ["ground_truth", "all", "average"])
def test_the_output_gradients_are_each_samples_own(kind):
    model = small_network()
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 4, 2, 2, 1, 3])
    rows = logit_gradients(model, x, y, kind)
    assert rows.shape == (6 * (5 if kind == "all" else 1), sum(p.numel() for p in model.parameters()))
    torch.testing.assert_close(rows, autograd_rows(model, x, y, kind))


def test_the_output_gradients_cover_frozen_weights_not():
    model = small_network()
    model[1].weight.requires_grad_(False)
    rows = logit_gradients(model, torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2]), "ground_truth")
    assert rows.shape[1] == 7 + 7 * 5 + 5


def assert_orthonormal(basis: torch.Tensor) -> None:
    torch.testing.assert_close(basis @ basis.T, torch.eye(len(basis)), atol=1e-5, rtol=0)


def in_span(basis: torch.Tensor, vectors: torch.Tensor) -> bool:
    residual = vectors - (vectors @ basis.T) @ basis
    return bool(residual.norm(dim=1).max() <= 1e-4 * vectors.norm(dim=1).max())


def test_the_basis_is_orthonormal_and_spans_the_vectors_it_was_given():
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(8, 40, generator=generator)
    basis = grown_basis(None, first)
    assert basis.shape == (8, 40)
    assert_orthonormal(basis)
    assert in_span(basis, first)
    second = torch.randn(5, 40, generator=generator)
    grown = grown_basis(basis, second)
    assert grown.shape == (13, 40)
    torch.testing.assert_close(grown[:8], basis)  # the directions kept stay as they were
    assert_orthonormal(grown)
    assert in_span(grown, second)
    assert not in_span(basis, second)


def test_vectors_the_basis_spans_add_nothing_and_dependent_ones_add_their_rank():
    generator = torch.Generator().manual_seed(1)
    basis = grown_basis(None, torch.randn(6, 30, generator=generator))
    combinations = torch.randn(4, 6, generator=generator) @ basis * 3.0
    assert grown_basis(basis, combinations) is basis  # kept as it is, not copied
    rank_two = torch.randn(5, 2, generator=generator) @ torch.randn(2, 30, generator=generator)
    grown = grown_basis(basis, torch.cat([rank_two, combinations]))
    assert grown.shape == (8, 30)
    assert_orthonormal(grown)
    assert in_span(grown, rank_two)
    assert grown_basis(None, torch.zeros(3, 30)) is None


def test_the_basis_never_has_more_rows_than_the_space_has_dimensions():
    generator = torch.Generator().manual_seed(2)
    basis = grown_basis(None, torch.randn(12, 10, generator=generator))
    assert basis.shape == (10, 10)
    assert_orthonormal(basis)
    assert grown_basis(basis, torch.randn(3, 10, generator=generator)).shape == (10, 10)


def sgd_step(method: OGD, batch: Batch, lr: float) -> None:
    """The learner's update with plain SGD: backward, the method's projection, the step."""
    method.model.zero_grad()
    method.training_step(batch).backward()
    method.after_backward()
    with torch.no_grad():
        for p in method.model.parameters():
            if p.grad is not None:
                p -= lr * p.grad


def finished_first_task(method: OGD) -> tuple[torch.Tensor, torch.Tensor]:
    """`method` configured on digits and past the end of a first task of classes 0 and 1 (its
    gradients taken on all 12 samples); those samples."""
    configured(method)
    x, y = samples([0, 1] * 6, 0)
    sgd_step(method, Batch(x, y), 0.1)
    method._task_data = torch.utils.data.TensorDataset(x, y)
    method.on_task_end(0)
    return x, y


def label_logits(method: OGD, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return method.model(x).detach().gather(1, y[:, None])[:, 0]


@pytest.mark.parametrize("kind", ["ground_truth", "all"])
def test_projected_steps_leave_the_finished_tasks_outputs_as_they_were(kind):
    method = OGD(memory_per_task=12, logit_gradients=kind)
    x, y = finished_first_task(method)
    assert method.basis.shape[0] == (12 if kind == "ground_truth" else 120)
    before = method.model(x).detach()
    for seed in range(5):
        sgd_step(method, Batch(*samples([2, 3, 2, 3], seed + 1)), 0.01)
    after = method.model(x).detach()
    kept = (after - before).gather(1, y[:, None]) if kind == "ground_truth" else after - before
    unprotected = OGD(memory_per_task=12, logit_gradients=kind)
    finished_first_task(unprotected)
    unprotected.basis = None
    for seed in range(5):
        sgd_step(unprotected, Batch(*samples([2, 3, 2, 3], seed + 1)), 0.01)
    moved = unprotected.model(x).detach() - before
    moved = moved.gather(1, y[:, None]) if kind == "ground_truth" else moved
    # what is left comes from the weights the steps moved (the basis holds the outputs' gradients
    # at the task's end) and from ReLUs the steps switched: a small fraction of the unprojected change
    assert float(kept.abs().max()) < 0.1 * float(moved.abs().max())
    assert float(moved.abs().max()) > 1e-2


def test_the_projected_gradient_is_the_gradient_minus_its_part_in_the_basis():
    method = OGD(memory_per_task=12)
    finished_first_task(method)
    method.model.zero_grad()
    method.training_step(Batch(*samples([2, 3, 2, 3], 9))).backward()
    raw = torch.cat([p.grad.reshape(-1) for p in method.model.parameters()])
    method.after_backward()
    projected = torch.cat([p.grad.reshape(-1) for p in method.model.parameters()])
    basis = method.basis
    torch.testing.assert_close(projected, raw - basis.T @ (basis @ raw))
    assert float((basis @ projected).abs().max()) < 1e-5 * float(raw.norm())
    assert float((projected - raw).norm()) > 1e-3 * float(raw.norm())


def test_the_basis_grows_with_each_task_but_the_last_and_is_checkpointed():
    method = OGD(memory_per_task=12)
    finished_first_task(method)
    assert method.basis.shape[0] == 12 and method.tasks_done == 1
    for task, labels in enumerate([[2, 3], [4, 5], [6, 7], [8, 9]], start=1):
        x, y = samples(labels * 6, task)
        method._task_data = torch.utils.data.TensorDataset(x, y)
        method.on_task_end(task)
        assert method.basis.shape[0] == 12 * min(task + 1, 4), task  # the fifth task protects nothing
    assert_orthonormal(method.basis)
    restored = configured(OGD(memory_per_task=12))
    restored.load_state_dict(method.state_dict())
    assert restored.tasks_done == 5
    torch.testing.assert_close(restored.basis, method.basis)


def test_the_samples_are_drawn_with_the_runs_seed_whatever_the_global_generator():
    method = configured(OGD(memory_per_task=5))
    dataset = torch.utils.data.TensorDataset(*samples(list(range(10)) * 3, 0))
    torch.manual_seed(1)
    first = method.task_samples(dataset)
    torch.manual_seed(2)
    second = method.task_samples(dataset)
    assert len(first[0]) == 5
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.parametrize(("options", "message"), [
    (dict(optimizer="adam"), "--optimizer sgd"),
    (dict(weight_decay=1e-4), "--weight_decay"),
    (dict(memory_per_task=0), "--memory_per_task"),
    (dict(basis_memory_gib=0), "--basis_memory_gib"),
    (dict(logit_gradients="logits"), "--logit_gradients"),
])
def test_nonsense_options_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        OGD(**options)


def test_a_basis_larger_than_allowed_is_refused_before_the_run():
    setting = TaskIncrementalSetting(**DIGITS)
    OGD(memory_per_task=200).validate_for(setting)
    # the digits MLP's 17,610 weights x 200 samples x 10 classes x 4 tasks: 0.5 GiB
    with pytest.raises(ConfigurationError, match=r"8,000 vectors of 17,610 weights .*--basis_memory_gib 0.1"):
        OGD(logit_gradients="all", basis_memory_gib=0.1).validate_for(setting)
    OGD(logit_gradients="all", basis_memory_gib=1).validate_for(setting)


def test_ogd_keeps_task_aware_accuracy_where_naive_forgets():
    setting = ClassIncrementalSetting(**{**DIGITS, "epochs": 2})
    from sylvan.methods import Naive

    naive = setting.apply(Naive(lr=0.1))
    ogd = setting.apply(OGD(lr=0.1))
    assert ogd.task_aware_accuracy > naive.task_aware_accuracy + 0.02
    assert ogd.task_aware_accuracy > 0.9
