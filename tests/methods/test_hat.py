"""`hat`: per-task gates on every unit, annealed during training and hard at test time; later
tasks' gradients kept off the weights of the units earlier tasks use, so their scores stay."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sylvan import models
from sylvan.errors import ConfigurationError
from sylvan.methods import HAT
from sylvan.methods.core.supervised import Batch
from sylvan.methods.parts.gated_network import EMBEDDING_LIMIT
from sylvan.settings import MultiTaskSetting, TaskIncrementalSetting
from tests.methods.digits_samples import configured, samples

DIGITS = dict(dataset="digits", nb_tasks=5, epochs=1, batch_size=16, progress_bar=False)


def probe_inputs(count: int = 40) -> torch.Tensor:
    return torch.rand(count, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def run_recording(method: HAT, setting, probe: torch.Tensor, probe_tasks: torch.Tensor):
    """Run `method` on `setting`; after each stage, record its scores on `probe` and its weights."""
    stages = []
    fit = method.fit

    def recording_fit(*args, **kwargs):
        fit(*args, **kwargs)
        stages.append({
            "scores": method.predict(probe, probe_tasks).cpu(),
            "weights": {name: p.detach().cpu().clone() for name, p in method.model.named_parameters()},
        })

    method.fit = recording_fit
    return setting.apply(method), stages


@pytest.mark.parametrize("options", [{"momentum": 0.9}, {"backbone": "cnn", "lr": 0.1}])
def test_a_task_scores_the_same_after_every_later_stage(options):
    method = HAT(**options)
    setting = TaskIncrementalSetting(**DIGITS)
    probe, tasks = probe_inputs(), torch.arange(5).repeat_interleave(8)
    results, stages = run_recording(method, setting, probe, tasks)
    for task in range(5):
        rows = tasks == task
        for later in stages[task + 1:]:
            # the gates at s_max are 0 or 1 to within float32's rounding
            torch.testing.assert_close(later["scores"][rows], stages[task]["scores"][rows], rtol=0, atol=1e-5)
    assert results.forgetting == 0.0
    if "backbone" not in options:
        assert min(results.accuracy_matrix[-1]) > 0.6  # and each task learned something of its own


def test_without_the_conditioning_later_stages_change_the_earlier_tasks_scores():
    method = HAT()
    method.gradient_factors = lambda: []  # what the test above relies on
    probe, tasks = probe_inputs(), torch.arange(2).repeat_interleave(20)
    _, stages = run_recording(method, TaskIncrementalSetting(**{**DIGITS, "nb_tasks": 2}), probe, tasks)
    before, after = stages[0]["scores"][tasks == 0], stages[1]["scores"][tasks == 0]
    scored = before.isfinite()  # the task's own classes
    assert (after[scored] - before[scored]).abs().max() > 1e-2


def test_the_output_rows_of_earlier_classes_and_the_embeddings_of_earlier_tasks_stay():
    method = HAT(momentum=0.9)
    _, stages = run_recording(method, TaskIncrementalSetting(**{**DIGITS, "nb_tasks": 2}), probe_inputs(2),
                              torch.zeros(2, dtype=torch.long))
    first = method.learner.task_classes[0].cpu()
    for name in ("backbone.classifier.weight", "backbone.classifier.bias"):
        before, after = stages[0]["weights"][name], stages[1]["weights"][name]
        assert torch.equal(after[first], before[first])
        assert not torch.equal(after[~first], before[~first])
    for index in range(2):
        before, after = (stage["weights"][f"embeddings.{index}"] for stage in stages)
        assert torch.equal(after[0], before[0])
        assert not torch.equal(after[1], before[1])


def test_the_gates_anneal_from_one_over_smax_to_smax_over_each_epoch():
    method = configured(HAT(smax=100.0), TaskIncrementalSetting)
    method._batches = 5
    assert [method.scale_at(step) for step in range(6)] == pytest.approx(
        [0.01, 0.01 + 99.99 / 4, 0.01 + 99.99 / 2, 0.01 + 3 * 99.99 / 4, 100.0, 0.01])


def test_each_sample_goes_through_the_gates_of_its_own_task():
    method = configured(HAT(), TaskIncrementalSetting)
    network = method.model
    x, _ = samples([0, 1, 2, 3], seed=1)
    tasks = torch.tensor([0, 3, 1, 3])
    together = network(x, tasks, 2.0)
    for row in range(4):
        alone = network(x[row:row + 1], tasks[row:row + 1], 2.0)
        torch.testing.assert_close(together[row:row + 1], alone)
    assert not torch.allclose(network(x, torch.zeros(4, dtype=torch.long), 2.0), together)
    # a unit whose gate is 0 passes nothing: with every gate of the first layer shut, the input does not matter
    with torch.no_grad():
        network.embeddings[0][2] = -EMBEDDING_LIMIT
    shut = network(x, torch.full((4,), 2), 400.0)
    torch.testing.assert_close(shut, shut[:1].expand_as(shut))


def test_the_penalty_is_the_share_of_the_free_units_the_gates_take():
    method = configured(HAT(), TaskIncrementalSetting)
    network = method.model
    tasks = torch.tensor([1, 4])
    gates = [g.detach() for g in network.gates(tasks, 3.0)]
    # the first stage: every unit free, the mean gate
    first = torch.stack([torch.cat([g[i] for g in gates]).mean() for i in range(2)]).mean()
    torch.testing.assert_close(method.model.attention_penalty(tasks, 3.0), first)
    used = [torch.rand(len(c), generator=torch.Generator().manual_seed(i)) for i, c in enumerate(network.cumulative())]
    for buffer, values in zip(network.cumulative(), used):
        buffer.copy_(values)
    expected = []
    for i in range(2):
        taken = sum(float((g[i] * (1 - u)).sum()) for g, u in zip(gates, used))
        room = sum(float((1 - u).sum()) for u in used)
        expected.append(taken / room)
    assert method.model.attention_penalty(tasks, 3.0).item() == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_gradients_are_kept_off_the_weights_between_used_units():
    method = configured(HAT(backbone="cnn"), TaskIncrementalSetting)
    network = method.model
    assert method.gradient_factors() == []  # nothing used yet
    conv1, conv2, linear = network.layers
    used = [torch.rand(32), torch.rand(64), torch.rand(128)]
    for buffer, values in zip(network.cumulative(), used):
        buffer.copy_(values)
    factors = {id(p): f for p, f in method.gradient_factors()}
    torch.testing.assert_close(factors[id(conv1.weight)], (1 - used[0]).view(-1, 1, 1, 1).expand(32, 1, 3, 3))
    torch.testing.assert_close(factors[id(conv1.bias)], 1 - used[0])
    assert factors[id(conv2.weight)][5, 7, 1, 2] == 1 - min(used[1][5], used[0][7])
    torch.testing.assert_close(factors[id(conv2.bias)], 1 - used[1])
    # the linear layer reads the second convolution's 64 channels x 2 x 2 positions, channel by channel
    assert linear.weight.shape == (128, 256)
    for j in (0, 3, 4, 255):
        assert factors[id(linear.weight)][9, j] == 1 - min(used[2][9], used[1][j // 4])
    assert id(network.backbone.classifier.weight) not in factors


def test_the_embeddings_gradients_are_compensated_for_the_annealing_and_clamped_after_the_step():
    method = configured(HAT(smax=50.0), TaskIncrementalSetting)
    network = method.model
    method._scale = 2.0
    embedding = network.embeddings[1]
    embedding.grad = torch.ones_like(embedding)
    method.after_backward()
    e = embedding.detach()
    expected = 50.0 / 2.0 * (torch.cosh(2.0 * e) + 1) / (torch.cosh(e) + 1)
    torch.testing.assert_close(embedding.grad, expected)
    with torch.no_grad():
        embedding[0, :3] = torch.tensor([-9.0, 7.0, 0.5])
    method.after_step()
    assert embedding[0, :3].tolist() == [-EMBEDDING_LIMIT, EMBEDDING_LIMIT, 0.5]


def test_the_gradient_norm_is_clipped():
    method = configured(HAT(clip_grad=1.0), TaskIncrementalSetting)
    weights = [p for name, p in method.model.named_parameters() if not name.startswith("embeddings")]
    for p in weights:
        p.grad = torch.full_like(p, 3.0)
    method.after_backward()
    norm = torch.norm(torch.stack([p.grad.norm() for p in weights]))
    assert float(norm) == pytest.approx(1.0, rel=1e-4)


def test_a_stage_adds_its_tasks_gates_at_smax_to_the_cumulative_ones():
    method = HAT()
    setting = TaskIncrementalSetting(**{**DIGITS, "nb_tasks": 2})
    snapshots = []
    fit = method.fit

    def recording_fit(*args, **kwargs):
        embeddings_before = [e.detach().clone() for e in method.model.embeddings]
        fit(*args, **kwargs)
        gates = [torch.sigmoid(method.smax * e.detach()) for e in method.model.embeddings]
        snapshots.append((embeddings_before, gates, [c.clone() for c in method.model.cumulative()]))

    method.fit = recording_fit
    setting.apply(method)
    (_, gates0, after0), (_, gates1, after1) = snapshots
    for g0, g1, a0, a1 in zip(gates0, gates1, after0, after1):
        torch.testing.assert_close(a0, g0[0])
        torch.testing.assert_close(a1, torch.maximum(g0[0], g1[1]))
    used = method.model.used_units()
    assert len(used) == 2 and all(0 < share <= 1 for share in used)


def test_on_multi_task_the_one_stage_takes_every_task_in():
    method = HAT()
    results = MultiTaskSetting(**DIGITS).apply(method)
    assert bool(method.trained_tasks.all())
    gates = method.model.gates(torch.arange(5), method.smax)
    for cumulative, g in zip(method.model.cumulative(), gates):
        torch.testing.assert_close(cumulative, g.max(0).values)
    assert results.accuracy_matrix[-1][0] > 0.8


def test_its_state_restores_the_gates_and_what_the_stages_trained():
    method = HAT()
    TaskIncrementalSetting(**{**DIGITS, "nb_tasks": 2}).apply(method)
    state = method.state_dict()
    restored = configured(HAT(), TaskIncrementalSetting, nb_tasks=2)
    restored.load_state_dict(state)
    probe, tasks = probe_inputs(6), torch.tensor([0, 1, 0, 1, 0, 1])
    torch.testing.assert_close(restored.predict(probe, tasks), method.predict(probe, tasks))
    for a, b in zip(restored.model.cumulative(), method.model.cumulative()):
        assert torch.equal(a.cpu(), b.cpu()) and bool(a.any())
    assert torch.equal(restored.trained_tasks, method.trained_tasks)
    assert torch.equal(restored.trained_classes, method.trained_classes)


class WithBatchNorm(nn.Module):
    def __init__(self, input_shape, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


class WithLayerNorm(WithBatchNorm):
    def __init__(self, input_shape, num_classes: int) -> None:
        super().__init__(input_shape, num_classes)
        self.features[2] = nn.LayerNorm(16)


class WithSkip(nn.Module):
    def __init__(self, input_shape, num_classes: int) -> None:
        super().__init__()
        self.first = nn.Linear(64, 16)
        self.second = nn.Linear(64, 16)
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x):
        x = x.flatten(1)
        return self.classifier(torch.relu(self.first(x)) + self.second(x))


class Reused(WithSkip):
    def forward(self, x):
        x = x.flatten(1)
        hidden = torch.relu(self.first(x))
        return self.classifier(hidden) + self.classifier(hidden)


class Grouped(nn.Module):
    def __init__(self, input_shape, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten())
        self.classifier = nn.Linear(4 * 16, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.mark.parametrize(("backbone", "message"), [
    (WithBatchNorm, r"has batch norm \(features.2\)"),
    (WithLayerNorm, r"has parameters outside those layers \(features.2.weight\)"),
    (WithSkip, "has second, which does not read the units of the layer before it"),
    (Reused, "calls classifier more than once"),
    (Grouped, r"has a grouped convolution \(features.1\)"),
])
def test_backbones_it_cannot_protect_are_refused_before_the_run(monkeypatch, backbone, message):
    monkeypatch.setitem(models.BACKBONES, "custom", backbone)
    method = HAT(backbone="custom")
    with pytest.raises(ConfigurationError, match=message):
        method.validate_for(TaskIncrementalSetting(**DIGITS))


def test_the_builtin_backbones_with_batch_norm_are_refused():
    with pytest.raises(ConfigurationError, match=r"resnet18_reduced has batch norm"):
        HAT(backbone="resnet18_reduced").validate_for(TaskIncrementalSetting(**DIGITS))
    for name in ("mlp", "mlp_400", "cnn"):
        HAT(backbone=name).validate_for(TaskIncrementalSetting(**DIGITS))


@pytest.mark.parametrize(("options", "message"), [
    ({"smax": 0.5}, "--smax must be >= 1"),
    ({"mask_penalty": -0.1}, "--mask_penalty must be >= 0"),
    ({"clip_grad": 0.0}, "--clip_grad must be > 0"),
    ({"optimizer": "adam"}, "hat trains with SGD"),
    ({"weight_decay": 1e-4}, "--weight_decay 0.0001 would shrink the weights hat protects"),
])
def test_bad_hyperparameters_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        HAT(**options)


def test_training_and_predictions_need_task_labels():
    method = configured(HAT(), TaskIncrementalSetting)
    x, y = samples([0, 1], seed=2)
    with pytest.raises(ValueError, match="hat needs task labels at test time"):
        method.predict(x, None)
    method._batches = 1
    with pytest.raises(ValueError, match="hat needs task labels in every training batch"):
        method.training_step(Batch(x, y))
    device = next(method.model.parameters()).device  # where predict put the network
    batch = Batch(x.to(device), y.to(device), torch.zeros(2, dtype=torch.long, device=device))
    assert math.isfinite(method.training_step(batch).item())


def test_a_task_label_without_gates_is_refused_by_name():
    """hat has gates for the setting's tasks only: a label beyond them was an IndexError from
    the embedding table."""
    method = configured(HAT(), TaskIncrementalSetting, nb_tasks=2)
    x = probe_inputs(4)
    method.predict(x, torch.tensor([0, 1, 1, 0]))
    for label in (2, -1):
        message = f"hat has gates for 2 tasks \\(task labels 0 to 1\\); got task label {label}"
        with pytest.raises(ValueError, match=message):
            method.predict(x, torch.tensor([0, label, 1, 0]))
