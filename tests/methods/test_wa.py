"""`wa`: the loss against its terms written out, the new classes' weight vectors aligned to the old
classes' mean norm at each task's end (and not otherwise), and the output layer's weights clipped
to non-negative values after every step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import WA, Batch
from sylvan.methods.wa import aligned_norms_factor
from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting
from tests.methods.digits_samples import DIGITS, WithoutFeatures, configured, mask, samples


def test_the_loss_weighs_cross_entropy_and_unscaled_distillation_by_the_old_classes_share():
    method = configured(WA(temperature=2.0))
    method.seen_classes.active, method.seen_classes.old = mask(0, 1, 2, 3), mask(0, 1, 2, 3)
    method.teacher.network = copy.deepcopy(method.model)
    with torch.no_grad():
        for p in method.teacher.network.parameters():
            p.add_(0.3 * torch.randn_like(p))
    batch = Batch(*samples([4, 5, 4, 5, 4, 5], seed=1), None)
    loss = method.training_step(batch)

    logits = method.model(batch.x)
    teacher = method.teacher.network(batch.x).detach()
    share = 4 / 6  # old classes / classes seen (4 and 5 have joined)
    soft_teacher = F.softmax(teacher[:, :4] / 2, 1)
    # the paper's distillation: the cross-entropy of the softened outputs, without T^2; it differs
    # from the KL divergence by the teacher's entropy, which has no gradient
    kd = -(soft_teacher * F.log_softmax(logits[:, :4] / 2, 1)).sum(1).mean()
    entropy = -(soft_teacher * soft_teacher.log()).sum(1).mean()
    expected = (1 - share) * F.cross_entropy(logits[:, :6], batch.y) + share * (kd - entropy)
    torch.testing.assert_close(loss, expected)


def test_the_first_task_trains_on_plain_cross_entropy_over_the_classes_seen():
    method = configured(WA())
    batch = Batch(*samples([0, 1, 1, 0], seed=2), None)
    loss = method.training_step(batch)
    torch.testing.assert_close(loss, F.cross_entropy(method.model(batch.x)[:, :2], batch.y))


def test_the_new_classes_weight_vectors_take_the_old_classes_mean_norm_at_the_tasks_end():
    method = configured(WA())
    method.seen_classes.active, method.seen_classes.old = mask(0, 1, 2, 3), mask(0, 1)
    method._task_data = samples([2, 3] * 10, seed=3)
    weight = method.model.classifier.weight
    with torch.no_grad():
        weight[2:4] *= 3.0  # the new classes favoured
    before = weight.detach().clone()
    bias = method.model.classifier.bias.detach().clone()
    gamma = float(before[:2].norm(dim=1).mean() / before[2:4].norm(dim=1).mean())
    method.on_task_end(1)

    after = method.model.classifier.weight.detach()
    torch.testing.assert_close(after[2:4], gamma * before[2:4])
    torch.testing.assert_close(after[2:4].norm(dim=1).mean(), before[:2].norm(dim=1).mean())
    assert torch.equal(after[:2], before[:2]) and torch.equal(after[4:], before[4:]), "only the new classes move"
    assert torch.equal(method.model.classifier.bias.detach(), bias), "the biases are left as they are"
    assert method.gammas == [pytest.approx(gamma)]
    assert torch.equal(method.teacher.network.classifier.weight, after), "the next task distils the aligned network"


def test_nothing_is_aligned_after_the_first_task_nor_without_new_classes_nor_when_turned_off():
    method = configured(WA())
    method.seen_classes.active = mask(0, 1)
    method._task_data = samples([0, 1] * 10, seed=4)
    before = method.model.classifier.weight.detach().clone()
    method.on_task_end(0)  # no old classes yet
    assert torch.equal(method.model.classifier.weight.detach(), before) and method.gammas == []

    domain = configured(WA(), DomainIncrementalSetting)  # a later task of the same classes
    domain.seen_classes.active, domain.seen_classes.old = mask(*range(10)), mask(*range(10))
    domain._task_data = samples(list(range(10)) * 2, seed=5)
    before = domain.model.classifier.weight.detach().clone()
    domain.on_task_end(1)
    assert torch.equal(domain.model.classifier.weight.detach(), before) and domain.gammas == []

    off = configured(WA(align_weights=False))
    off.seen_classes.active, off.seen_classes.old = mask(0, 1, 2, 3), mask(0, 1)
    off._task_data = samples([2, 3] * 10, seed=3)
    before = off.model.classifier.weight.detach().clone()
    off.on_task_end(1)
    assert torch.equal(off.model.classifier.weight.detach(), before) and off.gammas == []


def test_the_factor_is_one_where_there_is_nothing_to_align_to():
    weight = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    assert aligned_norms_factor(weight, mask(0)[:3], mask(2)[:3]) == pytest.approx(5.0)
    assert aligned_norms_factor(weight, mask(0)[:3], mask(1)[:3]) == 1.0  # new vectors all zero
    assert aligned_norms_factor(weight, torch.zeros(3, dtype=torch.bool), mask(2)[:3]) == 1.0


@pytest.mark.parametrize("clip", [True, False])
def test_the_output_layer_is_clipped_to_non_negative_weights_after_each_step(clip):
    method = configured(WA(clip_weights=clip))
    layer = method.model.classifier
    assert bool((layer.weight < 0).any()), "the initialization has negative weights"
    hidden = [p.detach().clone() for p in method.model.features.parameters()]
    method.after_step()
    assert bool((layer.weight >= 0).all()) == clip
    assert all(torch.equal(p, q) for p, q in zip(method.model.features.parameters(), hidden, strict=True))


def test_a_short_run_aligns_every_later_task_and_ends_clipped():
    method = WA(buffer_size=100)
    results = ClassIncrementalSetting(**DIGITS).apply(method)
    assert len(method.gammas) == 4 and all(g > 0 for g in method.gammas)
    assert bool((method.model.classifier.weight >= 0).all())
    assert results.final_average_accuracy > 0.3


def test_the_factors_are_checkpointed():
    method = configured(WA())
    method.gammas = [0.8, 0.9]
    restored = configured(WA())
    restored.load_state_dict(method.state_dict())
    assert restored.gammas == [0.8, 0.9]


def test_a_backbone_without_a_linear_classifier_is_refused_before_the_run_starts(monkeypatch):
    from sylvan import models

    monkeypatch.setitem(models.BACKBONES, "no_classifier", WithoutFeatures)
    with pytest.raises(ConfigurationError, match="wa aligns .* which no_classifier lacks"):
        WA(backbone="no_classifier").validate_for(ClassIncrementalSetting(**DIGITS))


@pytest.mark.parametrize(("options", "flag"), [
    (dict(temperature=0), "--temperature"),
    (dict(buffer_size=0), "--buffer_size"),
    (dict(lr=-1), "--lr"),
])
def test_nonsense_options_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        WA(**options)
