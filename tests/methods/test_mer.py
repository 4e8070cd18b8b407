"""`mer`: its one optimizer step is the k SGD steps and two Reptile updates of meta-experience
replay, checked against that loop written out step by step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import MER, Batch, Rehearsal
from sylvan.settings import ClassIncrementalSetting

DIGITS = dict(dataset="digits", nb_tasks=5, epochs=1, batch_size=4, progress_bar=False)


def configured(method: MER) -> MER:
    method.configure(ClassIncrementalSetting(**DIGITS))
    return method


def samples(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 1, 8, 8, generator=generator), torch.randint(0, 10, (count,), generator=generator)


def fixed_draws(method: MER, draws: list[dict[str, torch.Tensor]]) -> None:
    """Make the method's replay draws these, in order (what the buffer would have given)."""
    queue = list(draws)
    method.draw_replay = lambda n: queue.pop(0)


def mer_step_weights(method: MER, batch: Batch, lr: float) -> dict[str, torch.Tensor]:
    """The weights after the method's step: its loss backward, `after_backward`, plain SGD."""
    method.model.zero_grad()
    method.training_step(batch).backward()
    method.after_backward()
    with torch.no_grad():
        return {name: p - lr * p.grad for name, p in method.model.named_parameters()}


def reference_weights(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], lr: float,
                      beta: float, gamma: float) -> dict[str, torch.Tensor]:
    """Meta-experience replay as its reference code writes it: for each batch an SGD step, then the
    within-batch Reptile update; after all of them the across-batch one."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    for x, y in batches:
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(before[name] + beta * (p - before[name]))
    with torch.no_grad():
        return {name: start[name] + gamma * (p - start[name]) for name, p in model.named_parameters()}


@pytest.mark.parametrize("batch_num,beta,gamma", [(1, 1.0, 1.0), (1, 0.5, 0.3), (3, 1.0, 1.0), (3, 0.6, 0.4)])
def test_one_step_is_the_k_sgd_steps_and_both_reptile_updates(batch_num, beta, gamma):
    method = configured(MER(lr=0.2, batch_num=batch_num, beta=beta, gamma=gamma, replay_size=5))
    new = Batch(*samples(4, seed=0), None)
    replays = [dict(zip(("x", "y"), samples(5, seed=1 + i))) for i in range(batch_num)]
    expected = reference_weights(
        method.model, [(torch.cat([new.x, r["x"]]), torch.cat([new.y, r["y"]])) for r in replays], 0.2, beta, gamma
    )
    fixed_draws(method, replays)
    stepped = mer_step_weights(method, new, lr=0.2)
    for name, value in expected.items():
        torch.testing.assert_close(stepped[name], value, rtol=1e-5, atol=1e-6)


def test_with_one_batch_and_no_reptile_damping_it_is_experience_replay():
    mer = configured(MER(lr=0.1, replay_size=5))
    rehearsal = configured(Rehearsal(lr=0.1, replay_size=5))
    rehearsal.learner.load_state_dict(mer.learner.state_dict())
    new = Batch(*samples(4, seed=0), None)
    replay = dict(zip(("x", "y"), samples(5, seed=1)))
    fixed_draws(mer, [replay])
    fixed_draws(rehearsal, [replay])
    mer_weights = mer_step_weights(mer, new, lr=0.1)
    rehearsal_weights = mer_step_weights(rehearsal, new, lr=0.1)
    for name, value in rehearsal_weights.items():
        torch.testing.assert_close(mer_weights[name], value)


def test_every_batch_draws_before_the_new_samples_are_stored():
    method = configured(MER(batch_num=3, replay_size=8, buffer_size=50))
    first = Batch(*samples(4, seed=0), None)
    x, y = method._joined(first, method.draw_replay(8))
    assert len(y) == 4  # an empty buffer: the new samples alone
    method.training_step(first)
    assert len(method.buffer) == 4 and all(len(y) == 4 for _, y in method._later_batches)


def test_each_batch_has_a_draw_of_its_own():
    method = configured(MER(batch_num=4, replay_size=3))
    assert method.replay_draws(10) == (3, 3, 3, 3)


@pytest.mark.parametrize("options", [dict(beta=0.0), dict(gamma=-1.0), dict(batch_num=0)])
def test_invalid_meta_parameters_are_refused(options):
    with pytest.raises(ConfigurationError):
        MER(**options)
