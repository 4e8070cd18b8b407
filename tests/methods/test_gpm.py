"""`gpm`: the memory's growth against singular value decompositions written out, a convolution's
representation as the patches it multiplies, and projected steps that leave the old classes'
outputs on a finished task's samples as they were while the new classes learn."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods import GPM, Batch
from sylvan.methods.parts.gradient_projection import grown_bases, layer_inputs, projected_layers, representation_grams
from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting
from tests.methods.digits_samples import samples

DIGITS = dict(dataset="digits", nb_tasks=5, epochs=1, batch_size=8, progress_bar=False)


def representation(singular_values: list[float], dim: int, columns: int, seed: int = 0) -> torch.Tensor:
    """A dim x columns matrix with the given singular values and random singular vectors."""
    generator = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(columns, columns, generator=generator, dtype=torch.float64))
    k = len(singular_values)
    return u[:, :k] @ torch.diag(torch.tensor(singular_values, dtype=torch.float64)) @ v[:, :k].T


def test_the_first_task_keeps_the_fewest_singular_vectors_that_reach_the_threshold():
    r = representation([4.0, 2.0, 1.0, 0.5], dim=6, columns=10)  # energies 16, 4, 1, 0.25 of 21.25
    for threshold, count in [(0.5, 1), (0.75, 1), (0.76, 2), (0.94, 2), (0.95, 3), (0.99, 4), (1.0, 4)]:
        bases = grown_bases(None, r @ r.T, threshold)
        assert bases.shape == (6, count), threshold
        u = torch.linalg.svd(r).U[:, :count]
        torch.testing.assert_close(bases @ bases.T, u @ u.T)  # the same subspace


def test_a_later_task_adds_the_residuals_directions_only_where_its_energy_is_not_yet_captured():
    first = representation([3.0, 1.0], dim=5, columns=8, seed=1)
    bases = grown_bases(None, first @ first.T, 0.99)
    assert bases.shape[1] == 2
    assert grown_bases(bases, (2 * first) @ (2 * first).T, 0.99) is bases  # nothing new in its inputs
    second = representation([2.0, 2.0], dim=5, columns=8, seed=2)
    grown = grown_bases(bases, second @ second.T, 0.99)
    torch.testing.assert_close(grown[:, :2], bases)
    torch.testing.assert_close(grown.T @ grown, torch.eye(grown.shape[1], dtype=torch.float64))
    residual = second - bases @ bases.T @ second  # what the memory misses of the second task
    captured = float((bases.T @ second).pow(2).sum())
    values = torch.linalg.svdvals(residual).pow(2)
    needed = int(((captured + values.cumsum(0)) / float(second.pow(2).sum()) < 0.99).sum()) + 1
    assert grown.shape[1] == 2 + needed
    remaining = second - grown @ grown.T @ second
    assert float(remaining.pow(2).sum()) <= 0.01 * float(second.pow(2).sum()) + 1e-9


def test_a_convolutions_representation_is_the_patches_it_multiplies():
    conv = nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=1, bias=False)
    x = torch.randn(2, 3, 7, 7)
    rows = layer_inputs(conv, x)  # (samples x patches, 27)
    out = conv(x)
    torch.testing.assert_close(rows @ conv.weight.view(4, -1).T, out.permute(0, 2, 3, 1).reshape(-1, 4))


def test_a_grouped_convolution_is_refused():
    with pytest.raises(ConfigurationError, match="not conv"):
        projected_layers(nn.ModuleDict({"conv": nn.Conv2d(4, 4, 3, groups=2)}))


def sgd_step(method: GPM, batch: Batch, lr: float) -> None:
    """The learner's update with plain SGD: backward, held weights' gradients zeroed, the
    method's projection, the step, held weights put back."""
    method.model.zero_grad()
    method.training_step(batch).backward()
    method.held.zero_gradients()
    method.after_backward()
    with torch.no_grad():
        for p in method.model.parameters():
            if p.grad is not None:
                p -= lr * p.grad
    method.held.restore()


def finished_first_task(method: GPM, setting_cls=ClassIncrementalSetting) -> tuple[torch.Tensor, torch.Tensor]:
    """`method` configured on digits and past the end of a first task of classes 0 and 1 (its
    representation drawn from all 12 samples); those samples."""
    torch.manual_seed(0)
    method.configure(setting_cls(**DIGITS))
    x, y = samples([0, 1] * 6, 0)
    sgd_step(method, Batch(x, y), 0.1)
    method._task_data = (x, y)
    method.on_task_end(0)
    method.held.hold(method.held_after_first_task())  # as the next fit does
    return x, y


def test_projected_steps_leave_the_old_classes_outputs_on_the_tasks_samples_unchanged():
    method = GPM(threshold=1.0, input_threshold=1.0, representation_samples=12)
    x, _ = finished_first_task(method)
    before = method.model(x).detach()
    for seed in range(3):
        sgd_step(method, Batch(*samples([2, 3, 2, 3], seed + 1)), 0.5)
    after = method.model(x).detach()
    torch.testing.assert_close(after[:, :2], before[:, :2], atol=1e-5, rtol=0)  # every layer's inputs kept
    assert float((after[:, 2:4] - before[:, 2:4]).abs().max()) > 1e-2  # the new classes' rows train freely
    moved = method.model.classifier.weight.detach()
    assert float(moved[2:4].abs().sum()) > 0


def test_without_a_memory_the_same_steps_change_the_old_classes_outputs():
    method = GPM(threshold=1.0, input_threshold=1.0, representation_samples=12)
    x, _ = finished_first_task(method)
    method.bases = {}
    before = method.model(x).detach()
    sgd_step(method, Batch(*samples([2, 3, 2, 3], 1)), 0.5)
    assert float((method.model(x).detach()[:, :2] - before[:, :2]).abs().max()) > 1e-3


def test_biases_are_held_after_the_first_task_but_the_new_classes_output_bias():
    method = GPM()
    finished_first_task(method)
    biases = {name: p.detach().clone() for name, p in method.model.named_parameters() if p.dim() == 1}
    sgd_step(method, Batch(*samples([2, 3, 2, 3], 1)), 0.5)
    for name, p in method.model.named_parameters():
        if name == "classifier.bias":
            assert torch.equal(p[:2], biases[name][:2]) and not torch.equal(p[2:4], biases[name][2:4])
        elif p.dim() == 1:
            assert torch.equal(p, biases[name]), name


def test_with_classes_shared_by_every_task_the_whole_output_layer_is_projected():
    method = GPM(threshold=1.0, input_threshold=1.0, representation_samples=12)
    x, _ = finished_first_task(method, DomainIncrementalSetting)
    assert bool(method.old_classes[:2].all())
    before = method.model(x).detach()
    sgd_step(method, Batch(*samples([0, 1, 0, 1], 5)), 0.5)  # the same classes, another domain
    torch.testing.assert_close(method.model(x).detach()[:, :2], before[:, :2], atol=1e-5, rtol=0)


def test_the_memory_grows_with_each_task_and_is_checkpointed():
    method = GPM()
    finished_first_task(method)
    sizes = {name: bases.shape[1] for name, bases in method.bases.items()}
    assert set(sizes) == {"features.1", "features.3", "classifier"} and all(s > 0 for s in sizes.values())
    x, y = samples([2, 3] * 6, 7)
    method._task_data = (x, y)
    method.on_task_end(1)
    assert all(method.bases[name].shape[1] >= size for name, size in sizes.items())
    state = method.state_dict()
    restored = GPM()
    restored.configure(ClassIncrementalSetting(**DIGITS))
    restored.load_state_dict(state)
    assert restored.tasks_done == 2 and torch.equal(restored.old_classes, method.old_classes)
    for name, bases in method.bases.items():
        torch.testing.assert_close(restored.bases[name], bases)


@pytest.mark.parametrize(("options", "message"), [
    (dict(optimizer="adam"), "--optimizer sgd"),
    (dict(weight_decay=1e-4), "--weight_decay"),
    (dict(threshold=0), "--threshold"),
    (dict(input_threshold=1.5), "--input_threshold"),
    (dict(threshold_increment=-0.1), "--threshold_increment"),
    (dict(representation_samples=0), "--representation_samples"),
])
def test_nonsense_options_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        GPM(**options)


@pytest.mark.parametrize("backbone", ["mlp", "cnn"])
def test_the_layers_are_found_in_forward_order(backbone):
    method = GPM(backbone=backbone)
    method.configure(ClassIncrementalSetting(**DIGITS))
    layers = dict(method.model.named_modules())
    assert sorted(method.layer_order) == sorted(projected_layers(method.model))
    assert method.layer_order[-1] == "classifier"
    assert isinstance(layers[method.layer_order[0]], nn.Linear if backbone == "mlp" else nn.Conv2d)
    x = torch.rand(4, 1, 8, 8)
    grams = representation_grams(method.model, method.layers, x)
    first = layers[method.layer_order[0]]
    inputs = layer_inputs(first, x.flatten(1) if backbone == "mlp" else x).to(torch.float64)
    torch.testing.assert_close(grams[method.layer_order[0]], inputs.T @ inputs)
