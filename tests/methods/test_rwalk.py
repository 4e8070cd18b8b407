"""`rwalk`: the running Fisher, the interval scores in the Fisher metric, their averaging over
tasks and their scaling into the penalty's importance, each checked against the quantities
written out for plain SGD steps; the gradients they are built from leave the penalty out."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import Batch, RWalk
from sylvan.methods.parts.importance import scaled_to_unit
from tests.methods.digits_samples import configured, samples
from tests.methods.test_zoo import plain_sgd_step


def batch(seed: int) -> Batch:
    return Batch(*samples([0, 1, 1, 0], seed), None)


def cross_entropy_gradients(method: RWalk, step: Batch) -> dict[str, torch.Tensor]:
    """The gradient of the cross-entropy alone, by parameter name."""
    method.model.zero_grad()
    F.cross_entropy(method.learner(step.x), step.y).backward()
    return {name: p.grad.clone() for name, p in method.model.named_parameters()}


def test_one_step_interval_folds_the_squared_gradient_into_the_fisher_and_scores_it_in_its_metric():
    method = configured(RWalk(score_interval=1, alpha=0.9, xi=1e-3))
    g = cross_entropy_gradients(method, batch(0))
    plain_sgd_step(method, batch(0), lr=0.1)
    for name, gradient in g.items():
        fisher = 0.9 * gradient.pow(2)
        torch.testing.assert_close(method.fisher[name], fisher)
        # plain SGD: the weight moved by -lr g, which lowered the loss by lr g^2 to first order
        expected = torch.relu(0.1 * gradient.pow(2) / (1e-3 + 0.5 * fisher * (0.1 * gradient).pow(2)))
        torch.testing.assert_close(method.task_score[name], expected)
    assert method.interval_steps == 0
    assert all(float(v.abs().sum()) == 0.0 for v in method.path.total.values()), "the next interval starts at 0"


def test_the_fisher_averages_an_intervals_squared_gradients_and_keeps_a_share_of_the_last():
    method = configured(RWalk(score_interval=2, alpha=0.5))
    first = cross_entropy_gradients(method, batch(0))
    plain_sgd_step(method, batch(0), lr=0.1)
    assert all(float(f.abs().sum()) == 0.0 for f in method.fisher.values()), "updated once the interval ends"
    second = cross_entropy_gradients(method, batch(1))
    plain_sgd_step(method, batch(1), lr=0.1)
    interval = {name: (first[name].pow(2) + second[name].pow(2)) / 2 for name in first}
    for name in first:
        torch.testing.assert_close(method.fisher[name], 0.5 * interval[name])
    third = cross_entropy_gradients(method, batch(2))
    plain_sgd_step(method, batch(2), lr=0.1)
    fourth = cross_entropy_gradients(method, batch(3))
    plain_sgd_step(method, batch(3), lr=0.1)
    for name in first:
        torch.testing.assert_close(
            method.fisher[name], 0.5 * 0.5 * interval[name] + 0.5 * (third[name].pow(2) + fourth[name].pow(2)) / 2)


def test_an_interval_is_scored_over_the_whole_distance_its_weights_moved():
    method = configured(RWalk(score_interval=2, alpha=1.0, xi=1e-3))
    first = cross_entropy_gradients(method, batch(0))
    plain_sgd_step(method, batch(0), lr=0.1)
    second = cross_entropy_gradients(method, batch(1))
    plain_sgd_step(method, batch(1), lr=0.1)
    for name in first:
        decrease = 0.1 * first[name].pow(2) + 0.1 * second[name].pow(2)
        moved = -0.1 * (first[name] + second[name])
        fisher = (first[name].pow(2) + second[name].pow(2)) / 2
        torch.testing.assert_close(method.task_score[name], torch.relu(decrease / (1e-3 + 0.5 * fisher * moved.pow(2))))


def test_the_fisher_and_the_scores_come_from_the_task_loss_not_the_penalty():
    method = configured(RWalk(score_interval=1, alpha=1.0, rwalk_lambda=5.0))
    plain_sgd_step(method, batch(0), lr=0.1)
    method.on_task_end(0)
    with torch.no_grad():  # far from the anchor: the penalty's gradient is large
        for p in method.model.parameters():
            p.add_(0.5)
    expected = cross_entropy_gradients(method, batch(1))
    method.model.zero_grad()
    method.training_step(batch(1)).backward()
    assert any(not torch.allclose(p.grad, expected[name]) for name, p in method.model.named_parameters())
    method.after_backward()
    for name, gradient in expected.items():
        torch.testing.assert_close(method.squared_gradients[name], gradient.pow(2), rtol=1e-4, atol=1e-7)


def test_a_task_end_scores_its_partial_interval_and_averages_the_tasks_scores():
    method = configured(RWalk(score_interval=100))
    plain_sgd_step(method, batch(0), lr=0.1)
    assert all(float(s.abs().sum()) == 0.0 for s in method.task_score.values())
    method.on_task_end(0)
    first = {name: s.clone() for name, s in method.score.items()}
    assert any(float(s.sum()) > 0 for s in first.values()), "the one-step interval was scored"
    assert all(float(s.abs().sum()) == 0.0 for s in method.task_score.values()), "the next task starts at 0"
    plain_sgd_step(method, batch(1), lr=0.1)
    plain_sgd_step(method, batch(2), lr=0.1)
    method.close_interval()
    second = {name: s.clone() for name, s in method.task_score.items()}
    method.on_task_end(1)
    for name in first:
        torch.testing.assert_close(method.score[name], (first[name] + second[name]) / 2)


def test_the_importance_is_the_sum_of_the_fisher_and_the_score_each_scaled_to_unit():
    method = configured(RWalk(score_interval=1))
    plain_sgd_step(method, batch(0), lr=0.1)
    plain_sgd_step(method, batch(1), lr=0.1)
    method.on_task_end(0)
    fisher, score = scaled_to_unit(method.fisher), scaled_to_unit(method.score)
    for name, weight in method.model.named_parameters():
        torch.testing.assert_close(method.importance[name], fisher[name] + score[name])
        torch.testing.assert_close(method.anchor[name], weight.detach())
    assert max(float(v.max()) for v in method.importance.values()) <= 2.0
    assert float(method.penalty().detach()) == 0.0, "at the anchor"


def test_scaling_to_unit_uses_the_extremes_of_all_the_tensors_together():
    scaled = scaled_to_unit({"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([5.0])})
    torch.testing.assert_close(scaled["a"], torch.tensor([0.0, 0.5]))
    torch.testing.assert_close(scaled["b"], torch.tensor([1.0]))
    flat = scaled_to_unit({"a": torch.full((2,), 4.0)})
    torch.testing.assert_close(flat["a"], torch.zeros(2))


def test_the_fisher_and_the_scores_survive_a_checkpoint():
    RWalk.check_resumable()
    # on the CPU: a checkpoint restores the networks onto the run's device, and both go on training
    # from the same CPU batches
    trained = configured(RWalk(score_interval=1), accelerator="cpu")
    plain_sgd_step(trained, batch(0), lr=0.1)
    trained.on_task_end(0)
    resumed = configured(RWalk(score_interval=1), accelerator="cpu")
    resumed.load_state_dict(copy.deepcopy(trained.state_dict()))  # as written to a file and read back
    for name in trained.fisher:
        torch.testing.assert_close(resumed.fisher[name], trained.fisher[name])
        torch.testing.assert_close(resumed.score[name], trained.score[name])
        torch.testing.assert_close(resumed.importance[name], trained.importance[name])
    for method in (trained, resumed):  # the next task trains the same way from both
        plain_sgd_step(method, batch(1), lr=0.1)
    for name in trained.fisher:
        torch.testing.assert_close(resumed.fisher[name], trained.fisher[name])
        torch.testing.assert_close(resumed.task_score[name], trained.task_score[name])


@pytest.mark.parametrize(("options", "flag"), [
    ({"alpha": 0.0}, "--alpha"), ({"alpha": 1.5}, "--alpha"), ({"score_interval": 0}, "--score_interval"),
    ({"xi": 0.0}, "--xi"), ({"rwalk_lambda": -1.0}, "--rwalk_lambda"),
])
def test_nonsense_hyperparameters_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        RWalk(**options)
