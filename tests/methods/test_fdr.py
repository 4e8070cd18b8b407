"""`fdr`: its memory (equal shares of the finished tasks, each sample with the output the network
gave it when its task ended) and its step (the minibatch's step, then the function-distance step
from where the first leads), checked against the two steps taken by hand."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import FDR
from sylvan.methods.fdr import function_distance
from tests.methods.test_zoo import configured, digits_batch, plain_sgd_step


def finish_task(method: FDR, labels: list[int], seed: int) -> None:
    """`method` trains nothing but sees one batch of `labels` during a task that then ends."""
    method.on_task_start(None)
    method._task_samples.insert(digits_batch(labels, seed=seed).fields())
    method.on_task_end(None)


def test_each_finished_task_keeps_an_equal_share_with_its_outputs_at_its_end():
    method, _ = configured(FDR(buffer_size=12))
    finish_task(method, list(range(10)) * 2, seed=0)  # 20 samples of task 0: a reservoir of 12 keeps 12
    first = method.memory.stored()
    assert len(method.memory) == 12 and set(first["task"].tolist()) == {0}
    with torch.no_grad():
        torch.testing.assert_close(first["logits"], method.model(first["x"]))
        for p in method.model.parameters():  # the network moves on during the next task
            p.add_(0.05)
    finish_task(method, [0, 1, 2, 3, 4, 5, 6, 7], seed=1)
    stored = method.memory.stored()
    assert stored["task"].bincount().tolist() == [6, 6]  # 12 // 2 each: task 0 gave up 6 random samples
    old, new = stored["task"] == 0, stored["task"] == 1
    # task 0's samples keep the outputs of the end of task 0; task 1's are the network's now
    for x, logits in zip(stored["x"][old], stored["logits"][old]):
        row = (first["x"] == x).flatten(1).all(1).nonzero().item()
        torch.testing.assert_close(logits, first["logits"][row])
    with torch.no_grad():
        torch.testing.assert_close(stored["logits"][new], method.model(stored["x"][new]))
    finish_task(method, [8, 9, 8, 9, 8, 9], seed=2)
    assert method.memory.stored()["task"].bincount().tolist() == [4, 4, 4]


def test_a_step_is_the_minibatch_step_then_the_function_distance_step():
    """With plain SGD, the one update the method makes equals the paper's two consecutive steps."""
    lr, alpha = 0.1, 0.7
    method, _ = configured(FDR(lr=lr, alpha=alpha, buffer_size=20, replay_size=8))
    finish_task(method, list(range(10)) * 2, seed=0)
    with torch.no_grad():
        for p in method.model.parameters():  # away from the stored outputs, so the distance pulls
            p.add_(0.1 * torch.randn_like(p))
    replay = method.memory.take(8)
    method.memory.take = lambda n: replay
    batch = digits_batch([0, 1, 2, 3, 4, 5], seed=3)

    reference = copy.deepcopy(method.model)
    loss = F.cross_entropy(reference(batch.x), batch.y)
    gradients = torch.autograd.grad(loss, list(reference.parameters()))
    with torch.no_grad():
        for p, g in zip(reference.parameters(), gradients):
            p.sub_(lr * g)
    distance = function_distance(reference(replay["x"]), replay["logits"])
    gradients = torch.autograd.grad(alpha * distance, list(reference.parameters()))
    with torch.no_grad():
        for p, g in zip(reference.parameters(), gradients):
            p.sub_(lr * g)

    plain_sgd_step(method, batch, lr)
    assert float(method.last_distance) == pytest.approx(float(distance.detach()), rel=1e-5)
    for ours, theirs in zip(method.model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_without_a_memory_the_step_is_the_minibatchs():
    method, _ = configured(FDR())
    batch = digits_batch([0, 1, 2, 3])
    method.model.zero_grad()
    method.training_step(batch).backward()
    before = [p.grad.clone() for p in method.model.parameters()]
    method.after_backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(before, method.model.parameters()))
    assert method.last_distance is None


@pytest.mark.parametrize(("options", "flag"), [
    (dict(replay_size=0), "--replay_size"), (dict(alpha=-1), "--alpha"), (dict(buffer_size=-1), "--buffer_size"),
])
def test_nonsense_hyperparameters_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        FDR(**options)


def test_a_memory_too_small_for_the_tasks_is_refused():
    with pytest.raises(ConfigurationError, match="leave none for some"):
        configured(FDR(buffer_size=3))
