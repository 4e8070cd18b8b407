"""The importances EWC and MAS weigh their anchors with (the diagonal Fisher information, the
sensitivity of the output): both ways of computing them agree with a plain loop over samples,
and the fast one is used only where it is exact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sylvan.methods.parts.importance import (
    diagonal_fisher,
    is_linear_stack,
    linear_stack_fisher,
    output_sensitivity,
    per_sample_fisher,
)
from sylvan.models import MLP, SmallCNN


def fisher_by_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """mean_n p(y_n|x_n) * (d log p(y_n|x_n) / dw)^2, one sample at a time."""
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for xi, yi in zip(x, y):
        model.zero_grad()
        log_p = F.log_softmax(model(xi[None]), dim=1)[0, yi]
        log_p.backward()
        for name, p in model.named_parameters():
            total[name] += log_p.exp().detach() * p.grad.pow(2)
    return {name: value / len(y) for name, value in total.items()}


def sensitivity_by_loop(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """mean_n |d ||f(x_n)||^2 / dw|, one sample at a time."""
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for xi in x:
        model.zero_grad()
        model(xi[None]).pow(2).sum().backward()
        for name, p in model.named_parameters():
            total[name] += p.grad.abs()
    return {name: value / len(x) for name, value in total.items()}


def assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_linear_stack_fisher_matches_a_loop_over_samples(batch_size):
    torch.manual_seed(0)
    model = MLP((1, 8, 8), 10, hidden_sizes=(16, 12)).eval()
    x, y = torch.rand(11, 1, 8, 8), torch.randint(0, 10, (11,))
    assert is_linear_stack(model)
    assert_same(diagonal_fisher(model, x, y, batch_size), fisher_by_loop(model, x, y))


def test_both_computations_agree_batch_by_batch():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 7), nn.Tanh(), nn.Linear(7, 7, bias=False), nn.ReLU(),
                          nn.Linear(7, 3)).eval()
    x, y = torch.randn(9, 4, 5), torch.randint(0, 3, (9,))
    fast = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    general = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    linear_stack_fisher(model, x, y, fast)
    per_sample_fisher(model, x, y, general)
    assert_same(fast, general)


def test_models_that_are_not_linear_stacks_take_the_general_way():
    torch.manual_seed(2)
    shared = nn.Linear(6, 6)

    class OwnForward(nn.Module):  # linear layers, but a forward that mixes the batch
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            return self.b(h - h.mean(0, keepdim=True))

    frozen = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))
    frozen[0].weight.requires_grad_(False)
    batch_norm = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    reused = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(6, 3))
    for model in (SmallCNN((1, 8, 8), 10), OwnForward(), batch_norm, reused, frozen):
        assert not is_linear_stack(model), type(model).__name__
    cnn = SmallCNN((1, 8, 8), 10).eval()
    x, y = torch.rand(5, 1, 8, 8), torch.randint(0, 10, (5,))
    assert_same(diagonal_fisher(cnn, x, y, 2), fisher_by_loop(cnn, x, y))
    batch_norm.eval()
    x, y = torch.randn(5, 6), torch.randint(0, 3, (5,))
    assert_same(diagonal_fisher(batch_norm, x, y, 4), fisher_by_loop(batch_norm, x, y))


def test_a_linear_layer_over_sequences_falls_back_to_per_sample_gradients():
    """A linear layer applied to every position of a sequence sums the outer products of a sample
    before squaring them: the fast way would be wrong, so the pass switches to the general one."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(15, 3)).eval()
    x, y = torch.randn(7, 3, 4), torch.randint(0, 3, (7,))
    assert is_linear_stack(model)
    assert_same(diagonal_fisher(model, x, y, 3), fisher_by_loop(model, x, y))


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_output_sensitivity_matches_a_loop_over_samples(batch_size):
    """Taken sample by sample: the absolute value of a batch's summed gradient would be smaller
    wherever samples pull a weight in opposite directions."""
    torch.manual_seed(4)
    mlp = MLP((1, 8, 8), 10, hidden_sizes=(16, 12)).eval()
    x = torch.rand(11, 1, 8, 8)
    expected = sensitivity_by_loop(mlp, x)
    assert_same(output_sensitivity(mlp, x, batch_size), expected)
    mlp.zero_grad()
    mlp(x).pow(2).sum().backward()
    batch_level = {name: p.grad.abs() / len(x) for name, p in mlp.named_parameters()}
    assert any((batch_level[name] < expected[name] - 1e-6).any() for name in expected)
    cnn = SmallCNN((1, 8, 8), 10).eval()  # the general way
    assert_same(output_sensitivity(cnn, x[:5], 2), sensitivity_by_loop(cnn, x[:5]))
