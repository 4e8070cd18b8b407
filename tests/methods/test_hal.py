"""`hal`: its step (experience replay's, plus the anchors' output change, checked against the
reference code's two steps taken by hand), its running feature mean, and its anchors (one per
class of a finished task, learned to the objective, the network left as it was)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from sylvan.errors import ConfigurationError
from sylvan.methods import HAL
from tests.methods.test_zoo import configured, digits_batch, plain_sgd_step


def with_buffer(method: HAL, labels: list[int], seed: int = 0) -> HAL:
    method.buffer.add(**digits_batch(labels, seed=seed).fields())
    return method


def test_a_step_is_the_replay_step_and_the_anchor_step_from_the_weights_before_it():
    """The reference code steps on the replay loss, then goes back to the weights before that
    step and steps on hal_lambda times the mean squared change of the anchors' outputs, with the
    replay's gradient still accumulated: with plain SGD, one update of the summed gradients."""
    lr, hal_lambda = 0.1, 0.3
    method, _ = configured(HAL(lr=lr, hal_lambda=hal_lambda, replay_size=6))
    with_buffer(method, [0, 1, 2, 3, 4, 5, 6, 7])
    method.anchors = torch.rand(3, 1, 8, 8)
    replay = method.buffer.sample(6)
    method.buffer.sample = lambda n: replay
    batch = digits_batch([2, 3, 2, 3], seed=1)

    reference = copy.deepcopy(method.model)
    before = copy.deepcopy(reference)
    loss = F.cross_entropy(reference(torch.cat([batch.x, replay["x"]])), torch.cat([batch.y, replay["y"]]))
    replay_gradients = torch.autograd.grad(loss, list(reference.parameters()))
    with torch.no_grad():
        for p, g in zip(reference.parameters(), replay_gradients):
            p.sub_(lr * g)
        ahead = reference(method.anchors)
    change = hal_lambda * (ahead - before(method.anchors)).pow(2).mean()
    anchor_gradients = torch.autograd.grad(change, list(before.parameters()))
    with torch.no_grad():
        for p, g1, g2 in zip(before.parameters(), replay_gradients, anchor_gradients):
            p.sub_(lr * (g1 + g2))
    assert float(change.detach()) > 0

    plain_sgd_step(method, batch, lr)
    for ours, theirs in zip(method.model.parameters(), before.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_phi_is_a_running_mean_of_the_new_samples_features():
    method, _ = configured(HAL(beta=0.6))
    features = []
    for seed in range(3):
        batch = digits_batch([0, 1, 2, 3], seed=seed)
        method.training_step(batch)
        method.after_step()
        with torch.no_grad():
            features.append(method.model.features(batch.x).mean(0))
    expected = torch.zeros_like(features[0])
    for mean in features:
        expected = 0.6 * expected + 0.4 * mean
    torch.testing.assert_close(method.phi, expected)


def test_a_finished_task_gives_one_learned_anchor_per_class_and_leaves_the_network_alone():
    method, _ = configured(HAL(lr=0.1, anchor_steps=30, gamma=0.5))
    with_buffer(method, list(range(10)) * 3)
    for seed in range(2):
        method.training_step(digits_batch([4, 5, 4, 5], seed=seed))
        method.after_step()
    weights = copy.deepcopy(method.model.state_dict())
    method.on_task_end(0)
    assert method.anchor_labels.tolist() == [4, 5] and method.anchors.shape == (2, 1, 8, 8)
    for name, value in method.model.state_dict().items():
        assert torch.equal(value, weights[name]), f"{name} changed"
    assert not method.task_classes_seen.any(), "the next task's classes are its own"

    forgetful = method.finetuned_weights()
    assert any(not torch.equal(forgetful[n], p) for n, p in method.model.named_parameters())

    def objective(anchor: torch.Tensor, label: int) -> float:
        target = torch.tensor([label])
        with torch.no_grad():
            return float(
                F.cross_entropy(method.model(anchor), target)
                - F.cross_entropy(functional_call(method.model, forgetful, (anchor,)), target)
                + 0.5 * (method.model.features(anchor) - method.phi).pow(2).sum()
            )

    start = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    learned = method.learn_anchor(4, forgetful, torch.Generator().manual_seed(5))
    assert objective(learned.unsqueeze(0), 4) < objective(start, 4)

    method.training_step(digits_batch([6, 7], seed=3))
    method.after_step()
    method.on_task_end(1)
    assert method.anchor_labels.tolist() == [4, 5, 6, 7]


def test_no_anchor_no_change_to_the_replay_gradient():
    method, _ = configured(HAL(replay_size=4))
    with_buffer(method, [0, 1, 2, 3])
    method.model.zero_grad()
    method.training_step(digits_batch([0, 1], seed=2)).backward()
    before = [p.grad.clone() for p in method.model.parameters()]
    method.after_backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(before, method.model.parameters()))


@pytest.mark.parametrize(("options", "message"), [
    (dict(beta=1.0), "--beta"), (dict(anchor_steps=0), "--anchor_steps"), (dict(hal_lambda=-1), "--hal_lambda"),
    (dict(finetune_steps=0), "--finetune_steps"),
])
def test_invalid_options_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        HAL(**options)
