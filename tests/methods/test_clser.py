"""`clser`: its loss is experience replay's plus the consistency loss to the better semantic
memory, its memories are moving averages of the network updated at random, and the stable
memory predicts; each checked against the quantity written out as the paper's code computes it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import CLSER, Batch
from sylvan.settings import ClassIncrementalSetting

DIGITS = dict(dataset="digits", nb_tasks=5, epochs=1, batch_size=4, progress_bar=False)


def configured(method: CLSER, seed: int = 0) -> CLSER:
    torch.manual_seed(seed)  # the network's initialization
    method.configure(ClassIncrementalSetting(**DIGITS, seed=seed))
    return method


def samples(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 1, 8, 8, generator=generator), torch.randint(0, 10, (count,), generator=generator)


def perturbed(model: torch.nn.Module, seed: int, scale: float = 0.5) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator).to(p.device))


def flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_the_loss_is_replay_cross_entropy_plus_consistency_to_the_better_memory():
    method = configured(CLSER(replay_size=6, reg_weight=1.5))
    perturbed(method.plastic_model, seed=1)
    perturbed(method.stable_model, seed=2)
    new = Batch(*samples(4, seed=3), None)
    buf_x, buf_y = samples(6, seed=4)
    method.draw_replay = lambda n: {"x": buf_x, "y": buf_y}
    loss = method.training_step(new)

    # the paper's code: the label's probability under each memory picks, sample by sample, whose logits to match
    stable, plastic = method.stable_model(buf_x), method.plastic_model(buf_x)
    label_mask = F.one_hot(buf_y, num_classes=10) > 0
    stable_better = (F.softmax(stable, 1)[label_mask] > F.softmax(plastic, 1)[label_mask]).unsqueeze(1)
    assert 0 < int(stable_better.sum()) < 6, "the two memories each win some samples"
    target = torch.where(stable_better, stable, plastic)
    network = method.model
    expected = F.cross_entropy(network(torch.cat([new.x, buf_x])), torch.cat([new.y, buf_y]))
    expected = expected + 1.5 * F.mse_loss(network(buf_x), target)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is None for p in method.stable_model.parameters()), "the memories take no gradient"


def test_before_anything_is_stored_the_step_is_plain_cross_entropy():
    method = configured(CLSER())
    new = Batch(*samples(4, seed=0), None)
    torch.testing.assert_close(method.training_step(new), F.cross_entropy(method.model(new.x), new.y))
    assert len(method.buffer) == 4


def test_each_update_moves_a_memory_towards_the_network_with_the_warm_up_decay():
    method = configured(CLSER(plastic_update_freq=1.0, plastic_alpha=0.9, stable_update_freq=0.0))
    start_memory, stable_before = flat(method.plastic_model), flat(method.stable_model)
    perturbed(method.model, seed=5)
    method.after_step()  # step 1: decay min(1 - 1/2, 0.9) = 0.5
    torch.testing.assert_close(flat(method.plastic_model), 0.5 * start_memory + 0.5 * flat(method.model))
    for steps in range(2, 30):
        memory, network = flat(method.plastic_model), flat(method.model)
        method.after_step()
        decay = min(1 - 1 / (steps + 1), 0.9)
        torch.testing.assert_close(flat(method.plastic_model), decay * memory + (1 - decay) * network)
    torch.testing.assert_close(flat(method.stable_model), stable_before)  # frequency 0: never updated


def test_a_memory_is_updated_on_about_its_frequency_of_steps_the_same_draws_for_the_same_seed():
    def updated_steps(seed: int) -> list[int]:
        method = configured(CLSER(plastic_update_freq=0.0, stable_update_freq=0.3), seed=seed)
        steps = []
        for step in range(400):
            perturbed(method.model, seed=step, scale=0.01)
            before = flat(method.stable_model)
            method.after_step()
            if not torch.equal(flat(method.stable_model), before):
                steps.append(step)
        return steps

    steps = updated_steps(seed=0)
    assert 0.22 < len(steps) / 400 < 0.38
    assert updated_steps(seed=0) == steps  # every data-parallel worker draws the same updates
    assert updated_steps(seed=1) != steps


@pytest.mark.parametrize("inference_model", ["stable", "plastic", "working"])
def test_the_chosen_network_predicts(inference_model):
    method = configured(CLSER(inference_model=inference_model))
    perturbed(method.plastic_model, seed=1)
    perturbed(method.stable_model, seed=2)
    x = torch.rand(5, 1, 8, 8)
    network = {"stable": method.stable_model, "plastic": method.plastic_model, "working": method.model}
    predicted = method.predict(x)  # on the run's device, where it leaves the network that predicted
    device = next(network[inference_model].parameters()).device
    with torch.no_grad():
        expected = network[inference_model](x.to(device)).cpu()
    torch.testing.assert_close(predicted, expected)


def test_a_checkpoint_holds_the_memories_the_step_count_and_the_update_draws():
    method = configured(CLSER(stable_update_freq=0.5))
    for step in range(7):
        perturbed(method.model, seed=step, scale=0.1)
        method.after_step()
    state = method.state_dict()
    resumed = configured(CLSER(stable_update_freq=0.5))
    resumed.load_state_dict(state)
    assert resumed.steps == 7
    torch.testing.assert_close(flat(resumed.stable_model), flat(method.stable_model))
    torch.testing.assert_close(flat(resumed.plastic_model), flat(method.plastic_model))
    for run in (method, resumed):  # the next updates are drawn the same
        perturbed(run.model, seed=99, scale=0.1)
        for _ in range(5):
            run.after_step()
    torch.testing.assert_close(flat(resumed.stable_model), flat(method.stable_model))


@pytest.mark.parametrize("options", [
    dict(reg_weight=-1.0), dict(stable_update_freq=1.5), dict(plastic_alpha=-0.1), dict(inference_model="slow"),
])
def test_invalid_hyperparameters_are_refused(options):
    with pytest.raises(ConfigurationError, match=f"--{next(iter(options))}"):
        CLSER(**options)
