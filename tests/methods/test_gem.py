"""GEM: its quadratic program is solved exactly, its update is the closest one that conflicts
with no finished task, its memory holds an equal share of each task, and on digits it keeps the
old classes that fine-tuning forgets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sylvan.errors import ConfigurationError
from sylvan.methods import AGEM, GEM, Batch, Naive
from sylvan.methods.agem import project_conflicting
from sylvan.methods.core.episodic_memory import flat_gradient, trainable_parameters
from sylvan.methods.gem import RIDGE, nonnegative_quadratic_minimum, project_to_cone
from sylvan.settings import ClassIncrementalSetting

DIGITS = dict(dataset="digits", nb_tasks=5, epochs=3, batch_size=16, progress_bar=False)


def brute_force_minimum(matrix: np.ndarray, linear: np.ndarray) -> float:
    """The least objective over every choice of variables held at zero (exact for small n)."""
    n = len(linear)
    best = np.inf
    for free in itertools.product([False, True], repeat=n):
        chosen = np.flatnonzero(free)
        point = np.zeros(n)
        if len(chosen):
            point[chosen] = np.linalg.solve(matrix[np.ix_(chosen, chosen)], -linear[chosen])
        if (point >= 0).all():
            best = min(best, 0.5 * point @ matrix @ point + linear @ point)
    return best


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(1, 10), st.integers(0, 2**31 - 1), st.sampled_from([1e-6, 1.0, 1e4]))
def test_quadratic_program_is_solved_exactly(n, dim, seed, scale):
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(n, dim))
    matrix = factor @ factor.T + RIDGE * np.eye(n)  # rank-deficient where dim < n, as gradients may be
    linear = rng.normal(size=n) * scale
    solution = nonnegative_quadratic_minimum(matrix, linear)
    gradient = matrix @ solution + linear
    tolerance = 1e-9 * np.abs(linear).max()
    # the optimality conditions of a convex program: feasible, no descent direction, complementary
    assert (solution >= 0).all()
    assert (gradient >= -tolerance).all()
    assert np.abs(solution * gradient).max() <= tolerance * max(1.0, np.abs(solution).max())
    objective = 0.5 * solution @ matrix @ solution + linear @ solution
    assert objective <= brute_force_minimum(matrix, linear) + tolerance * max(1.0, np.abs(solution).max())


def test_one_memory_and_no_margin_is_a_gems_projection():
    """With a single finished task, the closest non-conflicting update is A-GEM's projection."""
    generator = torch.Generator().manual_seed(0)
    gradient, memory = torch.randn(40, generator=generator), 10 * torch.randn(40, generator=generator)
    if torch.dot(gradient, memory) > 0:
        gradient = -gradient
    projected = project_to_cone(gradient, memory[None], margin=0.0)
    torch.testing.assert_close(projected, project_conflicting(gradient, memory), rtol=0, atol=1e-5)
    assert abs(float(torch.dot(projected, memory))) < 1e-3


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1), st.sampled_from([0.0, 0.5]))
def test_projected_update_conflicts_with_no_memory_and_is_the_closest(tasks, seed, margin):
    generator = torch.Generator().manual_seed(seed)
    memories = torch.randn(tasks, 30, generator=generator, dtype=torch.float64)
    gradient = torch.randn(30, generator=generator, dtype=torch.float64)
    projected = project_to_cone(gradient, memories, margin)
    # the update moved along the memories, each with a weight of at least the margin
    weights = torch.linalg.lstsq(memories.T, projected - gradient).solution
    torch.testing.assert_close(memories.T @ weights, projected - gradient)
    assert float(weights.min()) >= margin - 1e-8
    # the weights are the dual program's optimum: no lower objective with every weight >= margin
    ridged = memories @ memories.T + RIDGE * torch.eye(tasks, dtype=torch.float64)
    dual_gradient = ridged @ weights + memories @ gradient
    assert float(dual_gradient.min()) >= -1e-8
    torch.testing.assert_close((weights - margin) * dual_gradient, torch.zeros_like(weights), rtol=0, atol=1e-8)
    # ... and, the ridge aside, agrees with every one of them
    agreement = memories @ projected
    assert float((agreement + RIDGE * weights).min()) >= -1e-8
    if margin == 0.0:  # closest: a memory with a positive weight is met exactly, at the boundary
        active = weights > 1e-6
        torch.testing.assert_close(agreement[active], -RIDGE * weights[active], rtol=0, atol=1e-8)


def configured_gem(**options) -> tuple[GEM, ClassIncrementalSetting]:
    """A GEM configured outside a run: its network is drawn from torch's global generator, seeded
    here so that a test does not depend on which tests ran before it in its process."""
    torch.manual_seed(0)
    setting = ClassIncrementalSetting(**DIGITS)
    method = GEM(**options)
    method.configure(setting)
    return method, setting


def batch_of(labels: list[int], task: int, seed: int) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels)
    return Batch(torch.rand(len(y), 1, 8, 8, generator=generator), y, torch.full_like(y, task))


def test_memory_gradients_are_one_per_finished_task():
    method, _ = configured_gem(buffer_size=50)
    assert method.memory_gradients() is None
    for task, labels in enumerate([[0, 1, 0, 1], [2, 3, 3, 2]]):
        method.on_task_start(task)
        method.remember(batch_of(labels, task, seed=task))
        method.on_task_end(task)
    rows = method.memory_gradients()
    stored = method.memory.get_all()
    parameters = trainable_parameters(method.model)
    assert rows.shape == (2, sum(p.numel() for p in parameters))
    for task in (0, 1):
        chosen = stored["t"] == task
        loss = F.cross_entropy(method.learner(stored["x"][chosen]), stored["y"][chosen])
        expected = flat_gradient(list(torch.autograd.grad(loss, parameters)), parameters)
        torch.testing.assert_close(rows[task], expected)


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_step_is_projected_only_when_it_conflicts_with_a_memory(margin):
    method, _ = configured_gem(buffer_size=50, margin=margin)
    method.on_task_start(0)
    method.remember(batch_of([0, 1, 0, 1, 0, 1], 0, seed=0))
    method.on_task_end(0)
    parameters = trainable_parameters(method.model)
    seen = set()
    for seed, labels in enumerate([[2, 3, 2, 3], [0, 1, 1, 0]] * 3):  # new classes pull against the memory
        method.model.zero_grad()
        method.training_step(batch_of(labels, 1, seed=seed)).backward()
        memory = method._memory_gradients[0].clone()
        raw = flat_gradient([p.grad for p in parameters], parameters)
        method.after_backward()
        stepped = flat_gradient([p.grad for p in parameters], parameters)
        conflicting = float(torch.dot(raw, memory)) < 0
        seen.add(conflicting)
        if conflicting:
            assert float(torch.dot(stepped, memory)) >= -1e-3 * float(memory.norm()) * float(raw.norm())
            if margin == 0.0:
                torch.testing.assert_close(stepped, project_conflicting(raw, memory), rtol=0, atol=1e-4)
        else:
            assert torch.equal(stepped, raw)
    assert seen == {True, False}, "the test must see steps of both kinds"


@pytest.mark.parametrize("method_cls", [GEM, AGEM])
def test_memory_keeps_an_equal_share_of_each_finished_task(method_cls):
    method = method_cls(buffer_size=50)
    ClassIncrementalSetting(**{**DIGITS, "epochs": 1}).apply(method)
    stored = method.memory.get_all()
    assert torch.bincount(stored["t"], minlength=5).tolist() == [10] * 5


def test_gem_keeps_the_classes_that_fine_tuning_forgets():
    naive = ClassIncrementalSetting(**DIGITS).apply(Naive())
    gem = ClassIncrementalSetting(**DIGITS).apply(GEM(buffer_size=200))
    assert gem.final_average_accuracy > naive.final_average_accuracy + 0.4
    assert gem.task_aware_accuracy > 0.9


@pytest.mark.parametrize(("options", "flag"), [
    (dict(margin=-0.5), "--margin"), (dict(buffer_size=-1), "--buffer_size"),
])
def test_nonsense_hyperparameters_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        GEM(**options)


def test_memory_too_small_for_the_tasks_is_refused():
    with pytest.raises(ConfigurationError, match="gem shares --buffer_size among the 5 tasks"):
        configured_gem(buffer_size=3)
