"""The plain-loop GSS memory, EWC and HAL of benchmarks/er_reference_loop.py must do what the DER
paper's code does, or their cross-check of sylvan's figures would compare different rules."""

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from er_reference_loop import ReferenceEWC, ReferenceGSS, ReferenceHAL  # noqa: E402

from sylvan.models import MLP  # noqa: E402


def memory(capacity: int, compared: int = 4) -> ReferenceGSS:
    """A GSS memory of a two-class linear model with zero weights: every prediction is (0.5, 0.5),
    so the gradients of two samples with the same input agree when their labels do and are
    opposite when they do not."""
    net = nn.Linear(3, 2)
    nn.init.zeros_(net.weight)
    nn.init.zeros_(net.bias)
    return ReferenceGSS(net, torch.zeros(capacity, 3), torch.zeros(capacity, dtype=torch.long), compared)


def batch(label: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(size, 3), torch.full((size,), label)


def test_it_fills_its_room_scoring_each_minibatch_as_a_whole():
    np.random.seed(0)
    gss = memory(6)
    gss.add(*batch(0, 4))
    gss.add(*batch(0, 4))  # the first two fill the room, scored by the batch: aligned with what is stored
    assert gss.seen == 8 and gss.replaced == 0
    assert gss.stored_y.tolist() == [0] * 6
    assert gss.scores[:4].tolist() == pytest.approx([ReferenceGSS.FIRST_BATCH_SCORE] * 4)
    assert gss.scores[4:].tolist() == pytest.approx([2.0, 2.0])


def test_a_full_memory_turns_away_a_minibatch_aligned_with_a_stored_sample():
    np.random.seed(0)
    gss = memory(4)
    gss.add(*batch(0, 4))
    for _ in range(50):  # were they let in, each would replace a sample with probability 0.1 / 2.1
        gss.add(*batch(0, 4))
    assert gss.replaced == 0 and gss.batches_admitted == 0
    assert gss.stored_y.tolist() == [0] * 4


def test_a_full_memory_admits_a_minibatch_opposed_to_every_compared_sample():
    np.random.seed(0)
    gss = memory(4)
    gss.add(*batch(0, 4))
    gss.add(*batch(1, 2))  # opposed: c = 0, and each sample's own score 0 makes its replacement certain
    assert gss.batches_admitted == 1 and gss.replaced == 2
    assert sorted(gss.stored_y.tolist()) == [0, 0, 1, 1]
    assert sorted(gss.scores.tolist()) == pytest.approx([0.0, 0.0, 0.1, 0.1], abs=1e-6)


def test_hal_steps_once_on_the_replay_and_anchor_gradients_taken_from_the_weights_before():
    torch.manual_seed(0)
    net = MLP((1, 2, 2), 3, hidden_sizes=(5,))
    lr, hal_lambda, beta = 0.1, 0.3, 0.5
    hal = ReferenceHAL(net, lr, hal_lambda, beta, gamma=0.1)
    hal.anchors = torch.rand(3, 1, 2, 2)
    x, y = torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 2, 1])
    x_all, y_all = torch.cat([x, torch.rand(2, 1, 2, 2)]), torch.cat([y, torch.tensor([2, 0])])
    before = [p.detach().clone() for p in net.parameters()]

    first = torch.autograd.grad(nn.functional.cross_entropy(net(x_all), y_all), list(net.parameters()))
    stepped = copy_with(net, [w - lr * g for w, g in zip(before, first)])
    with torch.no_grad():
        moved = stepped(hal.anchors)
    anchor = torch.autograd.grad(hal_lambda * ((moved - net(hal.anchors)) ** 2).mean(), list(net.parameters()))
    expected = [w - lr * (g1 + g2) for w, g1, g2 in zip(before, first, anchor)]
    features = copy_with(net, expected).features(x).mean(0)

    hal.step(x_all, y_all, x, torch.optim.SGD(net.parameters(), lr=lr))
    for parameter, value in zip(net.parameters(), expected):
        assert torch.allclose(parameter, value, atol=1e-6)
    assert torch.allclose(hal.phi, (1 - beta) * features, atol=1e-6)  # from 0, after the step


def test_hal_adds_one_anchor_per_class_of_the_task_and_starts_phi_again():
    torch.manual_seed(0)
    np.random.seed(0)
    net = MLP((1, 2, 2), 3, hidden_sizes=(5,))
    hal = ReferenceHAL(net, 0.1, 0.1, 0.5, gamma=0.1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    stored_x, stored_y = torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 0, 1, 0, 1])
    hal.step(stored_x, stored_y, stored_x, optimizer)
    weights = [p.detach().clone() for p in net.parameters()]
    hal.end_task(stored_x, stored_y, [0, 1], batch_size=4)
    assert hal.anchors.shape == (2, 1, 2, 2) and hal.phi is None
    assert all(torch.equal(p, w) for p, w in zip(net.parameters(), weights))  # a copy was fine-tuned
    hal.step(stored_x, stored_y, stored_x, optimizer)
    hal.end_task(stored_x, stored_y, [2], batch_size=4)
    assert hal.anchors.shape == (3, 1, 2, 2)


def copy_with(net: nn.Module, weights: list[torch.Tensor]) -> nn.Module:
    """A copy of `net` holding `weights`."""
    other = copy.deepcopy(net)
    with torch.no_grad():
        for parameter, value in zip(other.parameters(), weights):
            parameter.copy_(value)
    return other


def test_ewc_fisher_is_the_reference_codes_one_sample_at_a_time_and_decays_with_gamma():
    torch.manual_seed(0)
    net = MLP((1, 2, 2), 3, hidden_sizes=(5,))
    x, y = torch.rand(7, 1, 2, 2), torch.tensor([0, 1, 2, 1, 0, 2, 2])
    expected = torch.zeros(sum(p.numel() for p in net.parameters()))
    for sample, label in zip(x, y):  # the reference code's loop, with a batch size of 4: 2 batches
        net.zero_grad()
        log_p = nn.functional.log_softmax(net(sample[None]), 1)[0, label]
        log_p.backward()
        expected += log_p.detach().exp() * torch.cat([p.grad.flatten() for p in net.parameters()]) ** 2
    expected /= 2 * 4
    ewc = ReferenceEWC(net, e_lambda=0.7, gamma=0.5, chunk=3)
    ewc.end_task(x, y, batch_size=4)
    assert torch.allclose(ewc.fisher, expected, atol=1e-7)
    assert torch.equal(ewc.anchor, torch.cat([p.detach().flatten() for p in net.parameters()]))
    ewc.end_task(x, y, batch_size=4)
    assert torch.allclose(ewc.fisher, 1.5 * expected, atol=1e-7)
