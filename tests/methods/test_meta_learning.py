"""The meta-learners of osaka (`maml`, `anil`, `continual_maml`) and their inner loop: fast
weights are plain SGD steps, MAML's outer gradient goes through them (second order) or around
them (first order), ANIL moves the classifier alone, and Continual-MAML detects a switch by its
losses, restarts its fast weights there and meta-learns between switches only."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sylvan.methods import METHODS
from sylvan.methods.parts.fast_weights import FastWeights, support_and_query
from sylvan.settings import OsakaSetting


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def batch(seed: int = 1, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=generator), torch.arange(n) % 3


def test_fast_weights_are_plain_sgd_steps_and_leave_the_network_as_it_was():
    net = network()
    before = copy.deepcopy(net.state_dict())
    inner = FastWeights(net, step_size=0.3, steps=3)
    x, y = batch()
    fast = inner.adapt(inner.slow(detached=True), x, y)
    reference = copy.deepcopy(net)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.3)
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        optimizer.step()
    for name, p in reference.named_parameters():
        assert torch.allclose(fast[name], p, atol=1e-6)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def manual_meta_gradient(net: nn.Module, support, query, lr: float, second_order: bool) -> list[torch.Tensor]:
    """MAML's outer gradient with torch.autograd, one inner step."""
    params = list(net.parameters())
    loss = F.cross_entropy(net(support[0]), support[1])
    grads = torch.autograd.grad(loss, params, create_graph=second_order)
    fast = [p - lr * (g if second_order else g.detach()) for p, g in zip(params, grads)]
    h = torch.tanh(query[0] @ fast[0].T + fast[1])
    outer = F.cross_entropy(h @ fast[2].T + fast[3], query[1])
    return list(torch.autograd.grad(outer, params))


@pytest.mark.parametrize("second_order", [True, False])
def test_the_outer_gradient_goes_through_the_inner_step_or_around_it(second_order):
    net = network()
    inner = FastWeights(net, step_size=0.5, steps=1)
    support, query = batch(1), batch(2)
    loss = inner.meta_loss(support, query, second_order=second_order)
    got = torch.autograd.grad(loss, list(net.parameters()))
    expected = manual_meta_gradient(net, support, query, 0.5, second_order)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, atol=1e-6)
    if second_order:  # the two differ: the test can tell them apart
        first = manual_meta_gradient(net, support, query, 0.5, False)
        assert not all(torch.allclose(g, f, atol=1e-6) for g, f in zip(got, first))


def test_learned_step_sizes_receive_a_gradient_and_fixed_ones_are_not_meta_parameters():
    net = network()
    learned = FastWeights(net, step_size=0.1, steps=2, learn_step_size=True)
    assert learned.step_sizes.shape == (4,) and learned.step_sizes is learned.meta_parameters()[-1]
    learned.meta_loss(batch(1), batch(2), second_order=True).backward()
    assert learned.step_sizes.grad is not None and learned.step_sizes.grad.abs().sum() > 0
    fixed = FastWeights(network(), step_size=0.1, steps=2)
    assert len(fixed.meta_parameters()) == 4


def test_an_inner_loop_on_the_classifier_moves_nothing_else():
    net = network()
    inner = FastWeights(net, step_size=0.5, steps=2, adapted=lambda name: name.startswith("2."))
    slow = inner.slow(detached=True)
    fast = inner.adapt(slow, *batch())
    assert inner.adapted == ["2.weight", "2.bias"]
    assert torch.equal(fast["0.weight"], slow["0.weight"]) and not torch.equal(fast["2.weight"], slow["2.weight"])


def test_support_and_query_split_each_class_in_its_first_and_second_half():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])[torch.tensor([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])]
    support, query = support_and_query(labels)
    assert support.tolist() == [0, 1, 2, 3, 4, 5] and query.tolist() == [6, 7, 8, 9, 10, 11]


def configured(name: str, **options):
    setting = OsakaSetting(stream_steps=10, pretraining_tasks=0, progress_bar=False, accelerator="cpu")
    method = METHODS[name](**options)
    method.configure(setting)
    return method


def stream_batch(seed: int, relabel: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """25 inputs of a fixed 5-class task (class c: a bright row c of the 8x8 image), labels
    permuted by `relabel` (a new context of the same classes)."""
    generator = torch.Generator().manual_seed(seed)
    classes = torch.arange(25) // 5
    x = torch.rand(25, 1, 8, 8, generator=generator) * 0.2
    x[torch.arange(25), 0, classes] += 1.0
    y = classes if relabel is None else torch.tensor(relabel)[classes]
    return x, y


def test_maml_keeps_its_slow_weights_in_the_stream_and_continual_maml_learns_them():
    for name, moves in (("maml", False), ("anil", False), ("continual_maml", True)):
        method = configured(name, collect_limit=2) if name == "continual_maml" else configured(name)
        before = copy.deepcopy(method.model.state_dict())
        for step in range(8):
            method.fit([stream_batch(step)])
        changed = any(not torch.equal(before[k], v) for k, v in method.model.state_dict().items())
        assert changed == moves, name
        assert method.fast is not None


def learn(method, x, y):
    """`method` (continual_maml) learns from one stream batch, as its fit does: a step of its loop."""
    with method.run.engine.loop(1, unit="adapt") as loop:
        method.learn_from(loop, (x, y), x, y)


def test_continual_maml_detects_a_switch_restarts_its_fast_weights_and_updates_on_the_task_before():
    method = configured("continual_maml", step_size=0.5, inner_steps=3, boundary_threshold=0.5, collect_limit=100)
    updates = []
    update = method.meta_update
    method.meta_update = lambda tasks, weight=None: (updates.append(tasks), update(tasks, weight))
    for step in range(6):  # one context: its batches are collected
        learn(method, *stream_batch(step))
    assert method.boundaries == 0 and len(method.collected) == 6 and not updates
    switched = stream_batch(6, relabel=[4, 3, 2, 1, 0])
    learn(method, *switched)  # the same classes relabelled: a new context
    assert method.boundaries == 1 and method.restart
    assert len(updates) == 1 and method.collected == []
    (support, query), = updates[0]
    assert len(support[1]) + len(query[1]) == 6 * 25  # the six batches of the context before
    assert not any(torch.equal(part[0][i:i + 25], switched[0]) for part in (support, query)
               for i in range(0, len(part[1]), 25))  # the switching batch is not among them
    learn(method, *stream_batch(7, relabel=[4, 3, 2, 1, 0]))  # restarted from the slow weights
    assert not method.restart and len(method.collected) == 1


def test_the_meta_update_is_weighted_by_one_minus_exp_of_minus_lambda_times_the_loss():
    method = configured("continual_maml", update_weight_scale=2.0)
    loss = torch.tensor(0.3)
    assert method.loss_weight(loss) == pytest.approx(1 - torch.exp(torch.tensor(-0.6)).item())


def test_without_prolonged_adaptation_each_batch_without_a_boundary_updates_on_the_batch_before():
    method = configured("continual_maml", step_size=0.5, inner_steps=3, boundary_threshold=0.5,
                        prolonged_adaptation=False)
    updates = []
    update = method.meta_update
    method.meta_update = lambda tasks, weight=None: (updates.append(tasks), update(tasks, weight))
    batches = [stream_batch(step) for step in range(4)]
    for x, y in batches:
        learn(method, x, y)
    assert len(updates) == 3 and method.collected == []
    for (support, query), earlier, later in zip((tasks[0] for tasks in updates), batches, batches[1:]):
        assert torch.equal(support[0], earlier[0]) and torch.equal(query[0], later[0])
    learn(method, *stream_batch(4, relabel=[4, 3, 2, 1, 0]))  # a boundary: no update on it
    assert method.boundaries == 1 and len(updates) == 3
