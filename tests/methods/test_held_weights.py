"""`HeldWeights`: held weights keep their values through optimizer steps that move a weight
without a gradient (momentum, weight decay); the others train as they would alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sylvan.methods.parts.held_weights import HeldWeights


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_held_weights_stay_where_momentum_and_weight_decay_would_move_them(optimizer):
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    mask = torch.tensor([[True, False, False, True]] * 3)
    held = HeldWeights()
    held.hold({layer.weight: mask, layer.bias: torch.zeros(3, dtype=torch.bool)})
    start = layer.weight.detach().clone()
    if optimizer == "adam":
        opt = torch.optim.Adam(layer.parameters(), lr=0.1, weight_decay=0.1)
    else:
        opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    x = torch.randn(8, 4)
    for _ in range(5):
        opt.zero_grad()
        layer(x).pow(2).sum().backward()
        gradient = layer.weight.grad.clone()
        held.zero_gradients()
        assert bool((layer.weight.grad[mask] == 0).all())
        assert torch.equal(layer.weight.grad[~mask], gradient[~mask])
        opt.step()
        held.restore()
        assert torch.equal(layer.weight.detach()[mask], start[mask])
    assert bool((layer.weight.detach()[~mask] != start[~mask]).all())


def test_release_lets_every_weight_train_again():
    layer = nn.Linear(2, 2)
    held = HeldWeights()
    held.hold({layer.weight: torch.ones(2, 2, dtype=torch.bool), layer.bias: torch.zeros(2, dtype=torch.bool)})
    assert held
    held.release()
    assert not held
    with torch.no_grad():
        layer.weight.add_(1.0)
    before = layer.weight.detach().clone()
    held.restore()
    assert torch.equal(layer.weight.detach(), before)


def test_batch_norm_statistics_stay_through_training_steps_while_held_and_modes_come_back():
    from sylvan.methods.parts.held_weights import batch_norm_statistics_held

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2)).train()
    norm = model[1]
    model(torch.randn(8, 1, 8, 8))
    mean, var, batches = norm.running_mean.clone(), norm.running_var.clone(), int(norm.num_batches_tracked)
    with batch_norm_statistics_held(model):
        model(torch.randn(8, 1, 8, 8) + 3.0).sum().backward()
        assert model.training and model[4].training  # only the batch norm layers are switched
    assert torch.equal(norm.running_mean, mean) and torch.equal(norm.running_var, var)
    assert int(norm.num_batches_tracked) == batches
    assert norm.training  # back in training mode: the next task's training updates the statistics
    model(torch.randn(8, 1, 8, 8) + 3.0)
    assert not torch.equal(norm.running_mean, mean)
