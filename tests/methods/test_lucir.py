"""`lucir`: the cosine classifier, features without their last ReLU, the three terms of the loss
checked against the quantities written out, imprinting, the old classes' weight vectors held
while a task trains, and class-balanced finetuning of the classifier alone."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods import LUCIR, Batch
from sylvan.methods.parts.cosine_classes import cosine_network
from sylvan.models import build_backbone
from sylvan.models.cosine import CosineClassifier, remove_last_relu
from sylvan.settings import ClassIncrementalSetting
from tests.methods.digits_samples import DIGITS, configured, mask, samples


def test_the_cosine_classifier_scores_sigma_times_the_cosine_whatever_the_norms():
    classifier = CosineClassifier(4, 3)
    with torch.no_grad():
        classifier.sigma.fill_(7.0)
    features = torch.randn(5, 4)
    expected = 7.0 * F.normalize(features, dim=1) @ F.normalize(classifier.weight, dim=1).T
    torch.testing.assert_close(classifier(features), expected)
    with torch.no_grad():
        classifier.weight[1] *= 10.0
    torch.testing.assert_close(classifier(3.0 * features), expected)


@pytest.mark.parametrize("backbone", ["mlp", "cnn", "resnet18_reduced"])
def test_the_features_end_before_their_last_relu(backbone):
    torch.manual_seed(0)
    model = build_backbone(backbone, (1, 8, 8), 10).eval()
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        before = model.features(x)
        assert remove_last_relu(model.features)
        after = model.features(x)
    assert bool((before >= 0).all()) and bool((after < 0).any())
    if backbone != "resnet18_reduced":  # there the pooling comes after the block's ReLU
        torch.testing.assert_close(after.clamp(min=0), before)


def test_a_network_with_a_layer_after_its_last_relu_is_refused():
    assert not remove_last_relu(nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3)))
    method = LUCIR()
    setting = ClassIncrementalSetting(**DIGITS)
    model = nn.Module()
    model.features, model.feature_dim = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.ReLU(), nn.Linear(5, 5)), 5
    with pytest.raises(ConfigurationError, match="no last ReLU to remove"):
        cosine_network(model, "custom", setting.num_classes, method.last_relu, method.name)
    kept = cosine_network(model, "custom", setting.num_classes, True, "lucir")
    assert isinstance(kept.classifier, CosineClassifier)


def test_the_loss_adds_the_less_forget_constraint_and_the_separation_of_old_exemplars():
    method = configured(LUCIR(lambda_base=5.0, margin=0.5, hard_negatives=2, margin_weight=1.5))
    method.seen_classes.active, method.seen_classes.old = mask(0, 1, 2, 3), mask(0, 1, 2, 3)
    method.teacher.network = copy.deepcopy(method.model)
    with torch.no_grad():
        for p in method.teacher.network.parameters():
            p.add_(0.3 * torch.randn_like(p))
        method.model.classifier.sigma.fill_(4.0)
    batch = Batch(*samples([4, 5, 6, 1, 3, 4], seed=1), None)
    loss = method.training_step(batch)

    features = method.model.features(batch.x).flatten(1)
    cosine = F.normalize(features, dim=1) @ F.normalize(method.model.classifier.weight, dim=1).T
    seen = mask(0, 1, 2, 3, 4, 5, 6)
    classification = F.cross_entropy((4.0 * cosine).masked_fill(~seen, float("-inf")), batch.y)
    teacher = method.teacher.network.features(batch.x).flatten(1)
    less_forget = (1 - F.cosine_similarity(features, teacher, dim=1)).mean() * 5.0 * math.sqrt(4 / 3)
    terms = []
    plain = cosine.detach()
    for row, label in ((3, 1), (4, 3)):  # the old classes' samples, against their 2 highest new cosines
        hardest = plain[row, 4:7].topk(2).values
        terms += [max(0.0, 0.5 - float(plain[row, label]) + float(h)) for h in hardest]
    separation = 1.5 * sum(terms) / len(terms)
    torch.testing.assert_close(loss, classification + less_forget + torch.tensor(separation), rtol=1e-5, atol=1e-6)


def test_the_first_task_trains_on_the_cross_entropy_over_the_classes_seen():
    method = configured(LUCIR())
    batch = Batch(*samples([0, 1, 1, 0], seed=2), None)
    loss = method.training_step(batch)
    torch.testing.assert_close(loss, F.cross_entropy(method.model(batch.x)[:, :2], batch.y))


def test_a_new_class_starts_at_the_mean_direction_of_its_features_at_the_old_classes_norm():
    method = configured(LUCIR())
    method.seen_classes.old = mask(0, 1)
    x, y = samples([2] * 5 + [3] * 7, seed=3)
    old_rows = method.model.classifier.weight[:2].detach().clone()
    method.imprint_weights(x, y)
    weight = method.model.classifier.weight.detach()
    features = F.normalize(method.model.features(x).flatten(1), dim=1).detach()
    norm = old_rows.norm(dim=1).mean()
    for label in (2, 3):
        expected = F.normalize(features[y == label].mean(0), dim=0) * norm
        torch.testing.assert_close(weight[label], expected)
    assert torch.equal(weight[:2], old_rows)


def run_recording(method: LUCIR, **options):
    """Run on digits; record the classifier and the features' parameters around each task."""
    records = []
    fit, finetune = method.fit, method.finetune_on_exemplars

    def state(tag):
        return tag, {name: p.detach().clone() for name, p in method.model.named_parameters()}

    def recording_fit(*args, **kwargs):
        records.append(state("before fit"))
        fit(*args, **kwargs)
        records.append(state("after fit"))

    def recording_finetune():
        records.append(state("before finetune"))
        finetune()
        records.append(state("after finetune"))

    method.fit, method.finetune_on_exemplars = recording_fit, recording_finetune
    results = ClassIncrementalSetting(**{**DIGITS, **options}).apply(method)
    return results, records


def test_old_classes_weight_vectors_stay_while_a_task_trains():
    method = LUCIR(momentum=0.9, weight_decay=1e-3, buffer_size=100)
    _, records = run_recording(method, nb_tasks=3)
    fits = [(before, after) for (tag, before), (_, after) in zip(records, records[1:]) if tag == "before fit"]
    assert len(fits) == 3
    seen = [set(), {0, 1, 2, 3}, {0, 1, 2, 3, 4, 5, 6}]  # digits as 3 tasks: 4, 3 and 3 classes
    for (before, after), old in zip(fits, seen):
        for label in range(10):
            same = torch.equal(after["classifier.weight"][label], before["classifier.weight"][label])
            assert same == (label in old), (label, old)
        assert not torch.equal(after["classifier.sigma"], before["classifier.sigma"])


def test_class_balanced_finetuning_trains_the_classifier_alone_on_the_exemplars():
    method = LUCIR(finetune_epochs=2, finetune_lr=0.05, buffer_size=100, weight_decay=1e-3)
    results, records = run_recording(method, nb_tasks=2)
    finetunes = [(before, after) for (tag, before), (_, after) in zip(records, records[1:]) if tag == "before finetune"]
    assert len(finetunes) == 2
    for before, after in finetunes:
        for name, value in before.items():
            moved = not torch.equal(after[name], value)
            assert moved == name.startswith("classifier."), name
    assert results.final_average_accuracy > 0.5


def test_predictions_are_among_the_classes_seen():
    method = LUCIR(buffer_size=100)
    recorded = []
    on_task_end = method.on_task_end

    def recording_on_task_end(task_id):
        on_task_end(task_id)
        recorded.append((method.seen_classes.active.clone(), method.predict(samples([0] * 20, seed=4)[0], None)))

    method.on_task_end = recording_on_task_end
    ClassIncrementalSetting(**{**DIGITS, "nb_tasks": 2}).apply(method)
    first, scores = recorded[0]
    assert 0 < int(first.sum()) < 10
    assert bool(torch.isinf(scores[:, ~first]).all()) and bool(torch.isfinite(scores[:, first]).all())


@pytest.mark.parametrize(("options", "flag"), [
    ({"hard_negatives": 0}, "--hard_negatives"),
    ({"margin": -0.1}, "--margin"),
    ({"lambda_base": -1.0}, "--lambda_base"),
    ({"finetune_lr": 0.0}, "--finetune_lr"),
    ({"finetune_epochs": -1}, "--finetune_epochs"),
])
def test_bad_hyperparameters_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        LUCIR(**options)


class EndsInALinearLayer(nn.Module):
    def __init__(self, input_shape, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.ReLU(), nn.Linear(5, 5))
        self.feature_dim = 5
        self.classifier = nn.Linear(5, num_classes)


def test_a_backbone_without_a_last_relu_is_refused_before_the_run_starts(monkeypatch):
    from sylvan import models

    monkeypatch.setitem(models.BACKBONES, "ends_linear", EndsInALinearLayer)
    setting = ClassIncrementalSetting(**DIGITS)
    with pytest.raises(ConfigurationError, match="no last ReLU to remove in ends_linear"):
        LUCIR(backbone="ends_linear").validate_for(setting)
    LUCIR(backbone="ends_linear", last_relu=True).validate_for(setting)


@pytest.mark.slow
def test_class_balanced_finetuning_leaves_batch_norm_statistics_as_the_task_left_them():
    method = LUCIR(finetune_epochs=1, buffer_size=100, backbone="resnet18_reduced", lr=0.05)
    statistics = []
    finetune = method.finetune_on_exemplars

    def recording_finetune():
        before = {name: b.clone() for name, b in method.model.named_buffers() if "running" in name}
        finetune()
        statistics.append((before, {name: b.clone() for name, b in method.model.named_buffers() if "running" in name}))

    method.finetune_on_exemplars = recording_finetune
    ClassIncrementalSetting(**{**DIGITS, "nb_tasks": 2, "batch_size": 16, "train_samples": 200}).apply(method)
    assert len(statistics) == 2 and statistics[0][0]
    for before, after in statistics:
        for name, value in before.items():
            assert torch.equal(after[name], value), name
