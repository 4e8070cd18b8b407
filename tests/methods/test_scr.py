"""`scr`: the step's loss against SupCon of the projections written out, the classifier out of
training, the nearest-class-mean predictions against the stored samples' means computed by hand,
the means computed again once the network moves, and the refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import SCR, Batch
from sylvan.methods.parts.contrastive import supervised_contrastive_loss
from sylvan.settings import ClassIncrementalSetting, OnlineSetting
from tests.methods.digits_samples import DIGITS, WithoutFeatures, configured, samples


def with_stored(method: SCR, labels: list[int], seed: int = 1) -> SCR:
    x, y = samples(labels, seed)
    method.buffer.add(x=x, y=y)
    return method


def test_the_step_is_supcon_of_the_projections_of_the_samples_and_their_views():
    method = with_stored(configured(SCR(buffer_size=50, replay_size=6, temperature=0.1)), [0, 1, 2] * 6)
    views = []
    draw = method.views
    method.views = lambda x: views.append(draw(x)) or views[-1]
    replays = []
    sample = method.buffer.sample
    method.buffer.sample = lambda n: replays.append(sample(n)) or replays[-1]
    batch = Batch(*samples([3, 4, 3, 4], seed=2))
    loss = method.training_step(batch)

    x = torch.cat([batch.x, replays[0]["x"]])
    y = torch.cat([batch.y, replays[0]["y"]])
    assert len(y) == 10 and views[0].shape == x.shape
    model = method.model
    projections = F.normalize(model.projection(model.features(torch.cat([x, views[0]])).flatten(1)), dim=1)
    torch.testing.assert_close(loss, supervised_contrastive_loss(projections, y.repeat(2), 0.1))
    assert method.buffer.seen == 18 + 4, "the minibatch is stored"


def test_the_first_step_contrasts_the_minibatch_with_its_own_views():
    method = configured(SCR(buffer_size=50))
    loss = method.training_step(Batch(*samples([0, 1, 0, 1], seed=3)))
    assert float(loss.detach()) > 0 and bool(torch.isfinite(loss.detach()))
    assert len(method.buffer) == 4


def test_only_the_features_and_the_projection_head_learn():
    method = with_stored(configured(SCR(buffer_size=50, replay_size=4)), [0, 1] * 4)
    classifier = method.model.classifier
    assert not any(p.requires_grad for p in classifier.parameters()), "DDP must not wait for its gradient"
    method.training_step(Batch(*samples([2, 3, 2, 3], seed=4))).backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in method.model.projection.parameters())
    assert all(p.grad is not None for p in method.model.features.parameters())
    assert all(p.grad is None for p in classifier.parameters())


def test_predictions_go_to_the_nearest_mean_of_the_stored_samples_features():
    method = with_stored(configured(SCR(buffer_size=50)), [0, 0, 0, 2, 2, 5], seed=5)
    stored = method.buffer.get_all()
    with torch.no_grad():
        features = F.normalize(method.model.eval().features(stored["x"]).flatten(1), dim=1)
    means = {c: F.normalize(features[stored["y"] == c].mean(0), dim=0) for c in (0, 2, 5)}
    x, _ = samples([0, 1, 2, 3, 4, 5, 6], seed=6)
    scores = method.predict(x)
    with torch.no_grad():
        test = F.normalize(method.model.features(x.to(next(method.model.parameters()).device)).flatten(1), dim=1).cpu()
    for c in range(10):
        if c in means:
            torch.testing.assert_close(scores[:, c], -((test - means[c]) ** 2).sum(1), atol=1e-5, rtol=1e-5)
        else:
            assert bool(torch.isneginf(scores[:, c]).all()), "a class with nothing stored is never predicted"


def test_the_means_are_computed_again_once_the_network_moves():
    method = with_stored(configured(SCR(buffer_size=50)), [0, 1, 2] * 3)
    x, _ = samples([0, 1, 2], seed=7)
    method.predict(x)
    means = method.class_means.clone()
    with torch.no_grad():
        for p in method.model.features.parameters():
            p.add_(0.5 * torch.randn_like(p))
    method.predict(x)
    assert method.class_means is not None
    assert torch.equal(method.class_means[:3], means[:3]), "between steps, one computation serves every prediction"
    method.after_step()
    method.predict(x)
    assert not torch.allclose(method.class_means[:3], means[:3])


def test_nothing_stored_scores_every_class_alike():
    method = configured(SCR())
    x, _ = samples([0, 1], seed=8)
    assert torch.equal(method.predict(x), torch.zeros(2, 10))


def test_online_accuracy_is_measured_with_the_means_as_they_are():
    method = SCR(buffer_size=100, replay_size=10)
    results = OnlineSetting(dataset="digits", nb_tasks=5, batch_size=8, progress_bar=False).apply(method)
    assert results.online_accuracy is not None and results.online_accuracy > 0.5
    assert results.final_average_accuracy > 0.5


def test_the_views_and_the_means_are_checkpointed():
    method = with_stored(configured(SCR(buffer_size=50)), [0, 1] * 3)
    method.predict(samples([0], seed=9)[0])
    method.views(samples([0, 1], seed=10)[0])
    restored = configured(SCR(buffer_size=50))
    restored.load_state_dict(method.state_dict())
    torch.testing.assert_close(restored.class_means, method.class_means, equal_nan=True)
    x = samples([0, 1, 2], seed=11)[0]
    torch.testing.assert_close(restored.views(x), method.views(x))


def test_a_backbone_without_features_is_refused_before_the_run_starts(monkeypatch):
    from sylvan import models

    monkeypatch.setitem(models.BACKBONES, "no_features", WithoutFeatures)
    with pytest.raises(ConfigurationError, match="scr learns .* which no_features lacks"):
        SCR(backbone="no_features").validate_for(ClassIncrementalSetting(**DIGITS))


@pytest.mark.parametrize(("options", "flag"), [
    (dict(buffer_size=0), "--buffer_size"),
    (dict(temperature=0), "--temperature"),
    (dict(projection_dim=0), "--projection_dim"),
    (dict(crop_scale=0), "--crop_scale"),
    (dict(crop_scale=1.5), "--crop_scale"),
])
def test_nonsense_options_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        SCR(**options)
