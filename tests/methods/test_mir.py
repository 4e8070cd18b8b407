"""MIR: each candidate's score is the rise of its loss under a virtual SGD step on the minibatch,
the r highest are replayed, and scoring changes nothing in the network."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import MIR, Batch
from sylvan.settings import OnlineSetting

DIGITS = dict(dataset="digits", nb_tasks=5, batch_size=10, progress_bar=False)


def configured_mir(**options) -> MIR:
    method = MIR(**options)
    method.configure(OnlineSetting(**DIGITS))
    return method


def batch_of(labels: list[int], seed: int) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels)
    return Batch(torch.rand(len(y), 1, 8, 8, generator=generator), y)


def test_interference_is_the_rise_of_each_loss_under_a_virtual_sgd_step():
    method = configured_mir(lr=0.05, backbone="resnet18_reduced")  # batch norm: scoring must not touch it
    model = method.model
    batch, candidates = batch_of([2, 3, 2, 3], seed=0), batch_of([0, 1, 2, 3, 4, 5], seed=1)
    loss = F.cross_entropy(method.learner(batch.x), batch.y)
    state = copy.deepcopy(model.state_dict())
    expected_model = copy.deepcopy(model)
    scores = method.interference(loss, candidates.x, candidates.y)
    # the network as it was: weights, batch-norm statistics, training mode
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert model.training
    # the same step taken for real on a copy
    expected_model.zero_grad()
    F.cross_entropy(expected_model(batch.x), batch.y).backward()
    expected_model.load_state_dict(state)  # the batch-norm statistics before this second forward pass
    expected_model.eval()
    with torch.no_grad():
        before = F.cross_entropy(expected_model(candidates.x), candidates.y, reduction="none")
        for p in expected_model.parameters():
            p -= 0.05 * p.grad
        after = F.cross_entropy(expected_model(candidates.x), candidates.y, reduction="none")
    torch.testing.assert_close(scores, after - before, rtol=1e-4, atol=1e-5)
    loss.backward()  # the minibatch's graph was kept for the real backward pass


def test_the_most_interfered_candidates_are_replayed():
    method = configured_mir(replay_size=3, candidates=50)
    method.remember(batch_of([0, 1, 0, 1, 4, 5, 6, 7], seed=1).fields())  # 8 stored: every one is a candidate
    batch = batch_of([2, 3, 2, 3], seed=0)
    loss = method.training_step(batch)
    stored = {k: v[:8] for k, v in method.buffer.get_all().items()}
    new_loss = F.cross_entropy(method.learner(batch.x), batch.y)
    scores = method.interference(new_loss, stored["x"], stored["y"])
    top = scores.topk(3).indices
    assert scores.unique().numel() == 8, "ties would make the choice ambiguous"
    expected = new_loss + F.cross_entropy(method.learner(stored["x"][top]), stored["y"][top])
    torch.testing.assert_close(loss, expected)
    # and not any other three
    bottom = scores.topk(3, largest=False).indices
    other = new_loss + F.cross_entropy(method.learner(stored["x"][bottom]), stored["y"][bottom])
    assert not torch.allclose(loss, other)


def test_without_a_memory_the_loss_is_the_minibatchs():
    method = configured_mir()
    batch = batch_of([2, 3], seed=0)
    torch.testing.assert_close(method.training_step(batch), F.cross_entropy(method.learner(batch.x), batch.y))
    assert len(method.buffer) == 2


@pytest.mark.parametrize(("options", "message"), [
    (dict(candidates=0), "--candidates must be >= 1"),
    (dict(candidates=5, replay_size=10), r"--candidates \(5\) must be at least the 10 samples replayed"),
    (dict(candidates=5, replay_size=0), r"--candidates \(5\) must be at least the 10 samples replayed"),
])
def test_too_few_candidates_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        OnlineSetting(**DIGITS).apply(MIR(**options))
