"""`pcr`: the step's loss against the proxy loss of the cosine logits of the samples and their
views, the proxies that learn from a step, predictions from the same cosine classifier, and the
refusals (those of the contrastive replay base included)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import PCR, Batch
from sylvan.methods.parts.contrastive import proxy_contrastive_loss
from sylvan.models.cosine import CosineClassifier
from sylvan.settings import ClassIncrementalSetting
from tests.methods.digits_samples import DIGITS, WithoutFeatures, samples
from tests.methods.digits_samples import configured as configured_on_digits


def configured(method: PCR) -> PCR:
    configured_on_digits(method)
    x, y = samples([0, 1, 2] * 4, seed=1)
    method.buffer.add(x=x, y=y)
    return method


def test_the_step_is_the_proxy_loss_of_the_samples_and_their_views_cosine_logits():
    method = configured(PCR(buffer_size=50, replay_size=5, temperature=0.1))
    views, replays = [], []
    draw, sample = method.views, method.buffer.sample
    method.views = lambda x: views.append(draw(x)) or views[-1]
    method.buffer.sample = lambda n: replays.append(sample(n)) or replays[-1]
    batch = Batch(*samples([3, 4, 3], seed=2))
    loss = method.training_step(batch)

    x = torch.cat([batch.x, replays[0]["x"]])
    y = torch.cat([batch.y, replays[0]["y"]])
    model = method.model
    features = F.normalize(model.features(torch.cat([x, views[0]])).flatten(1), dim=1)
    logits = features @ F.normalize(model.classifier.weight, dim=1).T / 0.1
    torch.testing.assert_close(loss, proxy_contrastive_loss(logits, y.repeat(2)))
    assert len(method.buffer) == 15, "the minibatch is stored"


def test_only_the_proxies_of_the_batchs_classes_learn():
    method = configured(PCR(buffer_size=50, replay_size=4))
    method.buffer.sample = lambda n: {}  # the minibatch alone
    method.training_step(Batch(*samples([3, 4, 3, 4], seed=3))).backward()
    gradient = method.model.classifier.weight.grad
    assert float(gradient[[3, 4]].abs().sum()) > 0
    assert float(gradient[[0, 1, 2, 5, 6, 7, 8, 9]].abs().sum()) == 0.0


def test_predictions_are_the_cosine_logits_over_every_class():
    method = configured(PCR(temperature=0.2))
    classifier = method.model.classifier
    assert isinstance(classifier, CosineClassifier) and float(classifier.sigma) == pytest.approx(5.0)
    assert not classifier.sigma.requires_grad, "the scale is fixed at 1 / T"
    x, _ = samples([0, 5, 9], seed=4)
    with torch.no_grad():
        features = F.normalize(method.model.eval().features(x).flatten(1), dim=1)
        expected = features @ F.normalize(classifier.weight, dim=1).T / 0.2
    torch.testing.assert_close(method.predict(x), expected)


def test_a_backbone_without_features_is_refused_before_the_run_starts(monkeypatch):
    from sylvan import models

    monkeypatch.setitem(models.BACKBONES, "no_features", WithoutFeatures)
    with pytest.raises(ConfigurationError, match="pcr puts a cosine classifier .* which no_features lacks"):
        PCR(backbone="no_features").validate_for(ClassIncrementalSetting(**DIGITS))


@pytest.mark.parametrize("method_cls", [PCR, "scr"])
def test_inputs_that_are_not_images_are_refused(monkeypatch, method_cls):
    from sylvan.methods import METHODS

    method = (METHODS[method_cls] if isinstance(method_cls, str) else method_cls)()
    setting = ClassIncrementalSetting(**DIGITS)
    monkeypatch.setattr(type(setting), "input_shape", property(lambda self: (64,)))
    with pytest.raises(ConfigurationError, match=f"{method.name} contrasts random crops of images .* shape \\(64,\\)"):
        method.validate_for(setting)


@pytest.mark.parametrize(("options", "flag"), [
    (dict(temperature=0), "--temperature"),
    (dict(crop_scale=0), "--crop_scale"),
    (dict(replay_size=-1), "--replay_size"),
])
def test_nonsense_options_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        PCR(**options)
