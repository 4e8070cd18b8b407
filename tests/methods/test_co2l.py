"""`co2l`: the step's loss against the asymmetric SupCon and the relation distillation of the
projections written out, what learns and what does not, the linear probe (trained at each task's
end on the buffer, from zero, class-balanced, the network frozen) and the predictions it makes,
the checkpoint, and the refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import Batch, Co2L
from sylvan.methods.parts.contrastive import asymmetric_supervised_contrastive_loss, relation_distillation_loss
from sylvan.methods.parts.linear_probe import class_balanced_draw
from sylvan.settings import ClassIncrementalSetting
from tests.methods.digits_samples import DIGITS, WithoutFeatures, configured, samples

# for tests whose task end trains the probe (a fit, which leaves the networks on the run's device) and
# which then compare the method's losses and weights with ones computed here from CPU tensors; whole
# runs of co2l on a GPU are the zoo's tests
ON_CPU = {"accelerator": "cpu"}


def with_stored(method: Co2L, labels: list[int], seed: int = 1) -> Co2L:
    x, y = samples(labels, seed)
    method.buffer.add(x=x, y=y)
    return method


def spied_step(method: Co2L, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The step's loss on `batch`, with the inputs it trained on (the minibatch, the replay draw,
    then a view of each) and their labels."""
    views, replays = [], []
    draw, sample = method.views, method.buffer.sample
    method.views = lambda x: views.append(draw(x)) or views[-1]
    method.buffer.sample = lambda n: replays.append(sample(n)) or replays[-1]
    loss = method.training_step(batch)
    x = torch.cat([batch.x, replays[0]["x"]]) if replays[0] else batch.x
    y = torch.cat([batch.y, replays[0]["y"]]) if replays[0] else batch.y
    return loss, torch.cat([x, views[0]]), y.repeat(2)


def projections(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.normalize(model.projection(model.features(x).flatten(1)), dim=1)


def minibatch_anchors(incoming: int, total: int) -> torch.Tensor:
    """The new samples and their views among `total` inputs (`incoming` of each half)."""
    anchors = torch.zeros(total, dtype=torch.bool)
    anchors[:incoming] = True
    anchors[total // 2 : total // 2 + incoming] = True
    return anchors


def test_a_first_task_step_is_the_asymmetric_supcon_with_the_new_samples_as_anchors():
    method = with_stored(configured(Co2L(buffer_size=50, replay_size=6, temperature=0.3)), [0, 1, 0, 1] * 3)
    batch = Batch(*samples([0, 1, 0, 1], seed=2))
    loss, x, y = spied_step(method, batch)
    assert len(y) == 20
    expected = asymmetric_supervised_contrastive_loss(projections(method.model, x), y, minibatch_anchors(4, 20),
                                                      0.3, 0.07)
    torch.testing.assert_close(loss, expected)
    assert method.buffer.seen == 12 + 4, "the minibatch is stored"


def test_a_later_task_adds_the_relation_distillation_of_the_previous_tasks_network():
    method = with_stored(configured(Co2L(buffer_size=50, replay_size=6, distill_power=0.7, probe_epochs=1),
                                    **ON_CPU), [0, 1] * 6)
    method.on_task_end(0)
    teacher = method.teacher.network
    with torch.no_grad():
        for p in method.model.features.parameters():
            p.add_(0.3 * torch.randn_like(p))
    loss, x, y = spied_step(method, Batch(*samples([2, 3, 2, 3], seed=3)))
    student = projections(method.model, x)
    with torch.no_grad():
        past = projections(teacher, x)
    expected = asymmetric_supervised_contrastive_loss(student, y, minibatch_anchors(4, 20), 0.5, 0.07)
    expected = expected + 0.7 * relation_distillation_loss(student, past, 0.2, 0.01)
    torch.testing.assert_close(loss, expected)
    assert float(relation_distillation_loss(student, past, 0.2, 0.01).detach()) > 0


def test_without_distill_power_a_later_task_is_the_asymmetric_loss_alone():
    method = with_stored(configured(Co2L(buffer_size=50, replay_size=6, distill_power=0, probe_epochs=1), **ON_CPU),
                         [0, 1] * 6)
    method.on_task_end(0)
    loss, x, y = spied_step(method, Batch(*samples([2, 3, 2, 3], seed=4)))
    expected = asymmetric_supervised_contrastive_loss(projections(method.model, x), y, minibatch_anchors(4, 20),
                                                      0.5, 0.07)
    torch.testing.assert_close(loss, expected)


def test_only_the_features_and_the_projection_head_learn():
    method = with_stored(configured(Co2L(buffer_size=50, replay_size=4)), [0, 1] * 4)
    frozen = [method.model.classifier, method.model.probe]
    assert not any(p.requires_grad for module in frozen for p in module.parameters()), "DDP must not wait for them"
    method.training_step(Batch(*samples([0, 1, 0, 1], seed=5))).backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in method.model.projection.parameters())
    assert all(p.grad is not None for p in method.model.features.parameters())


def test_until_the_first_task_ends_every_class_scores_zero():
    method = configured(Co2L())
    assert torch.equal(method.predict(samples([0, 1], seed=6)[0]), torch.zeros(2, 10))


def test_at_a_tasks_end_the_probe_learns_the_buffer_with_the_network_frozen():
    method = with_stored(configured(Co2L(buffer_size=50, probe_views=False), **ON_CPU), [0, 3, 7] * 6, seed=7)
    before = {name: value.clone() for name, value in method.model.state_dict().items() if "probe" not in name}
    method.on_task_end(0)
    after = method.model.state_dict()
    assert all(torch.equal(after[name], value) for name, value in before.items()), "only the probe changes"
    stored = method.buffer.get_all()
    scores = method.predict(stored["x"])
    with torch.no_grad():
        probe = method.model.probe(method.model.eval().features(stored["x"]).flatten(1))
    torch.testing.assert_close(scores, probe)
    assert float((scores.argmax(1) == stored["y"]).float().mean()) > 0.9
    assert method.finished_tasks == 1


def test_the_probe_starts_from_zero_at_every_tasks_end():
    method = with_stored(configured(Co2L(buffer_size=50, probe_epochs=3)), [0, 1, 2] * 4, seed=8)
    method.train_probe()
    first = [p.clone() for p in method.model.probe.parameters()]
    method.train_probe()  # the same draws: trained on from zero again, it ends where it did
    assert all(torch.equal(p, q) for p, q in zip(method.model.probe.parameters(), first))
    method.finished_tasks += 1
    method.train_probe()
    assert not torch.equal(method.model.probe.weight, first[0]), "each task's probe draws afresh"


def test_the_probe_trains_on_views_only_with_probe_views():
    weights = []
    for views in (True, False):
        method = with_stored(configured(Co2L(buffer_size=50, probe_epochs=3, probe_views=views)), [0, 1] * 4, seed=9)
        method.train_probe()
        weights.append(method.model.probe.weight.clone())
    assert not torch.equal(*weights)


@pytest.mark.parametrize(("views", "passes"), [(True, 3 * 2), (False, 2)])
def test_without_views_one_pass_of_the_buffer_serves_every_probe_epoch(views, passes):
    method = with_stored(configured(Co2L(buffer_size=50, probe_epochs=3, probe_batch_size=10, probe_views=views)),
                         [0, 1] * 10, seed=12)
    inputs = []
    method.model.features.register_forward_hook(lambda module, args, output: inputs.append(len(args[0])))
    method.train_probe()
    assert len(inputs) == passes and sum(inputs) == 20 * passes // 2  # 20 samples, in batches of 10


def test_the_probe_draws_each_class_alike_from_an_unbalanced_buffer():
    labels = torch.tensor([0] * 90 + [4] * 9 + [6])
    drawn = class_balanced_draw(labels, 30_000, torch.Generator().manual_seed(0))
    shares = torch.bincount(labels[drawn], minlength=7)[[0, 4, 6]].double() / 30_000
    torch.testing.assert_close(shares, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.015, rtol=0)


def test_the_teacher_probe_and_task_count_are_checkpointed():
    method = with_stored(configured(Co2L(buffer_size=50, probe_epochs=2)), [0, 1] * 4)
    method.on_task_end(0)
    restored = configured(Co2L(buffer_size=50, probe_epochs=2))
    restored.load_state_dict(method.state_dict())
    assert restored.finished_tasks == 1 and restored.teacher.network is not None
    x = samples([0, 1, 2], seed=10)[0]
    torch.testing.assert_close(restored.predict(x), method.predict(x))
    torch.testing.assert_close(projections(restored.teacher.network, x), projections(method.teacher.network, x))


def test_a_digits_run_learns_every_task():
    results = ClassIncrementalSetting(**DIGITS).apply(Co2L(buffer_size=200))
    assert results.final_average_accuracy > 0.6
    assert min(results.accuracy_matrix[-1]) > 0.3, "no task is forgotten whole"


def test_a_backbone_without_features_is_refused_before_the_run_starts(monkeypatch):
    from sylvan import models

    monkeypatch.setitem(models.BACKBONES, "no_features", WithoutFeatures)
    with pytest.raises(ConfigurationError, match="co2l learns .* which no_features lacks"):
        Co2L(backbone="no_features").validate_for(ClassIncrementalSetting(**DIGITS))


@pytest.mark.parametrize(("options", "flag"), [
    (dict(buffer_size=0), "--buffer_size"),
    (dict(temperature=0), "--temperature"),
    (dict(base_temperature=-1), "--base_temperature"),
    (dict(current_temperature=0), "--current_temperature"),
    (dict(past_temperature=0), "--past_temperature"),
    (dict(distill_power=-0.5), "--distill_power"),
    (dict(probe_epochs=0), "--probe_epochs"),
    (dict(probe_batch_size=0), "--probe_batch_size"),
    (dict(probe_lr=0), "--probe_lr"),
    (dict(projection_dim=0), "--projection_dim"),
])
def test_nonsense_options_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        Co2L(**options)
