"""`lode` and `lode_derpp`: the two terms of the decoupled loss against their definitions, the
step's loss against its parts written out (a first task, a later one, incoming samples of old
classes, a domain-incremental task, DER++'s groups), the old classes' logits left alone by the
new samples' intra-task term, the coupled ablations against `rehearsal` and `derpp` run for run,
the checkpointed class masks, and short runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import LODE, Batch, DERPlusPlus, LODEDERPlusPlus, Rehearsal
from sylvan.methods.parts.decoupled_loss import DecoupledLoss, decoupled_loss, inter_task_loss, intra_task_loss
from sylvan.methods.parts.seen_classes import SeenClasses
from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting, OnlineSetting
from tests.methods.digits_samples import DIGITS, configured, mask, samples


def stored(method: LODE, labels: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Put samples of `labels` in the method's buffer; return them."""
    x, y = samples(labels, seed)
    method.buffer.add(x=x, y=y)
    return x, y


def test_the_intra_task_term_is_a_softmax_over_the_classes_that_are_not_old():
    logits, y, old = torch.randn(5, 10), torch.tensor([4, 5, 9, 4, 6]), mask(0, 1, 2, 3)
    new_log_probs = F.log_softmax(logits[:, 4:], dim=1)
    expected = -new_log_probs[torch.arange(5), y - 4].mean()
    torch.testing.assert_close(intra_task_loss(logits, y, old).mean(), expected)


def test_the_inter_task_term_is_minus_the_log_of_the_probability_mass_on_the_classes_that_are_not_old():
    logits, old = 3 * torch.randn(6, 10), mask(0, 1, 2, 3, 7)
    mass_on_new = F.softmax(logits, dim=1)[:, ~old].sum(dim=1)
    torch.testing.assert_close(inter_task_loss(logits, old), -mass_on_new.log())


def test_a_later_tasks_step_averages_the_decoupled_new_loss_and_the_replayed_cross_entropy():
    method = configured(LODE(rho=0.3, buffer_size=6, replay_size=6))
    method.seen_classes.active, method.seen_classes.old = mask(0, 1, 2, 3), mask(0, 1, 2, 3)
    replay_x, replay_y = stored(method, [0, 1, 2, 3, 0, 2], seed=1)
    batch = Batch(*samples([4, 5, 5, 4], seed=2), None)
    loss = method.training_step(batch)

    new = method.model(batch.x)
    old = mask(0, 1, 2, 3)
    weight = 0.3 * 2 / 4  # rho times the task's classes met so far (4 and 5) over the old ones
    decoupled = (intra_task_loss(new, batch.y, old) + weight * inter_task_loss(new, old)).mean()
    replayed = F.cross_entropy(method.model(replay_x), replay_y)  # all six drawn: their order does not matter
    torch.testing.assert_close(loss, (decoupled + replayed) / 2)


def test_the_first_task_is_experience_replay():
    method = configured(LODE(buffer_size=6, replay_size=6))
    first = Batch(*samples([0, 1, 1, 0], seed=3), None)
    loss = method.training_step(first)  # nothing stored yet: the new samples alone
    torch.testing.assert_close(loss, F.cross_entropy(method.model(first.x), first.y))

    second = Batch(*samples([1, 0, 0, 1], seed=4), None)
    loss = method.training_step(second)  # the first batch is stored and replayed, whole
    expected = (F.cross_entropy(method.model(second.x), second.y) + F.cross_entropy(method.model(first.x), first.y))
    torch.testing.assert_close(loss, expected / 2)


def test_incoming_samples_of_old_classes_take_the_cross_entropy_over_every_class():
    method = configured(LODE(rho=0.5, buffer_size=4, replay_size=4))
    method.seen_classes.active, method.seen_classes.old = mask(0, 1, 2, 3), mask(0, 1, 2, 3)
    replay_x, replay_y = stored(method, [0, 1, 2, 3], seed=5)
    batch = Batch(*samples([4, 1, 5, 2], seed=6), None)  # a blurry batch: 1 and 2 are old
    loss = method.training_step(batch)

    fresh = torch.tensor([True, False, True, False])
    new, old = method.model(batch.x), mask(0, 1, 2, 3)
    decoupled = intra_task_loss(new[fresh], batch.y[fresh], old) + 0.5 * 2 / 4 * inter_task_loss(new[fresh], old)
    known = F.cross_entropy(new[~fresh], batch.y[~fresh], reduction="none")
    incoming = (decoupled.sum() + known.sum()) / 4  # the mean over the minibatch
    torch.testing.assert_close(loss, (incoming + F.cross_entropy(method.model(replay_x), replay_y)) / 2)


@pytest.mark.parametrize(("options", "setting_cls", "old", "stored_labels", "batch_labels"), [
    ({}, DomainIncrementalSetting, range(10), [3, 7, 1, 9], [0, 5, 8]),  # a later task: every class is old
    (dict(decouple_loss=False), ClassIncrementalSetting, range(4), [0, 1, 2, 3], [4, 5, 5]),  # the coupled ablation
])
def test_with_nothing_decoupled_the_step_averages_two_cross_entropies_over_every_class(
    options, setting_cls, old, stored_labels, batch_labels
):
    method = configured(LODE(buffer_size=4, replay_size=4, **options), setting_cls)
    method.seen_classes.active, method.seen_classes.old = mask(*old), mask(*old)
    replay_x, replay_y = stored(method, stored_labels, seed=7)
    batch = Batch(*samples(batch_labels, seed=8), None)
    loss = method.training_step(batch)
    expected = F.cross_entropy(method.model(batch.x), batch.y) + F.cross_entropy(method.model(replay_x), replay_y)
    torch.testing.assert_close(loss, expected / 2)


def test_without_the_inter_task_term_new_samples_leave_the_old_classes_outputs_alone():
    """The point of the decoupling: learning to tell the new classes apart does not push the old
    classes' logits down; only the weighted inter-task term (and the replay) moves them."""
    def classifier_gradient(rho: float) -> torch.Tensor:
        method = configured(LODE(rho=rho, buffer_size=10))
        method.seen_classes.active, method.seen_classes.old = mask(0, 1, 2, 3), mask(0, 1, 2, 3)
        method.training_step(Batch(*samples([4, 5, 6, 4, 5], seed=9), None)).backward()  # the buffer is empty
        return method.model.classifier.weight.grad

    decoupled_only = classifier_gradient(rho=0.0)
    assert torch.count_nonzero(decoupled_only[:4]) == 0, "no gradient on the old classes' rows"
    assert torch.count_nonzero(decoupled_only[4:]) > 0
    assert torch.count_nonzero(classifier_gradient(rho=0.1)[:4]) > 0, "the inter-task term moves them"


def test_the_inter_task_weight_counts_the_classes_met_in_this_task_against_the_old_ones():
    loss = DecoupledLoss(SeenClasses(10), rho=0.2, decouple=True)
    assert loss.inter_task_weight(mask(0, 1, 2, 3, 4), mask(0, 1, 2, 3)) == pytest.approx(0.2 / 4)
    assert loss.inter_task_weight(mask(0, 1, 2, 3, 4, 5, 6), mask(0, 1)) == pytest.approx(0.2 * 5 / 2)
    assert loss.inter_task_weight(mask(0, 1), mask()) == 0.0


def test_a_task_end_makes_its_classes_old_and_the_masks_are_checkpointed():
    method = configured(LODE(buffer_size=10))
    method.training_step(Batch(*samples([0, 1, 1, 0], seed=10), None))
    method.on_task_end(0)
    method.training_step(Batch(*samples([2, 3, 2], seed=11), None))
    seen = method.seen_classes
    assert torch.equal(seen.old, mask(0, 1)) and torch.equal(seen.active, mask(0, 1, 2, 3))

    restored = configured(LODE(buffer_size=10))
    restored.load_state_dict(method.state_dict())
    seen = restored.seen_classes
    assert torch.equal(seen.old, mask(0, 1)) and torch.equal(seen.active, mask(0, 1, 2, 3))
    assert len(restored.buffer) == 7


def test_a_short_run_learns_every_task():
    method = LODE(buffer_size=100)
    results = ClassIncrementalSetting(**DIGITS).apply(method)
    assert torch.equal(method.seen_classes.old, mask(*range(10)))
    assert results.final_average_accuracy > 0.6


def test_coupled_with_as_many_replayed_samples_as_new_ones_it_is_experience_replay():
    """The mean of the two groups' cross-entropies is then the cross-entropy over their union: the
    ablation is `rehearsal`, step for step (the same draws, the same updates)."""
    coupled = ClassIncrementalSetting(**DIGITS).apply(LODE(decouple_loss=False, buffer_size=100))
    rehearsal = ClassIncrementalSetting(**DIGITS).apply(Rehearsal(lr=0.1, buffer_size=100))
    assert len(coupled.accuracy_matrix) == 5 and coupled.accuracy_matrix == rehearsal.accuracy_matrix


def test_on_der_plus_plus_the_decoupled_loss_replaces_the_minibatchs_cross_entropy():
    method = configured(LODEDERPlusPlus(rho=0.4, alpha=0.3, beta=0.7, buffer_size=4, replay_size=4))
    method.seen_classes.active, method.seen_classes.old = mask(0, 1, 2), mask(0, 1, 2)
    replay_x, replay_y = samples([0, 1, 2, 1], seed=14)
    stored_logits = torch.randn(4, 10)
    method.buffer.add(x=replay_x, y=replay_y, logits=stored_logits)
    batch = Batch(*samples([3, 4, 3, 1], seed=15), None)
    loss = method.training_step(batch)

    new, old = method.model(batch.x), mask(0, 1, 2)
    incoming = decoupled_loss(new, batch.y, old, 0.4 * 2 / 3)
    replayed = method.model(replay_x)  # both draws take the whole buffer: their order does not matter
    expected = incoming + 0.3 * F.mse_loss(replayed, stored_logits) + 0.7 * F.cross_entropy(replayed, replay_y)
    torch.testing.assert_close(loss, expected)
    assert method.buffer.seen == 8, "the minibatch was offered to the buffer (with its logits)"


def test_coupled_on_der_plus_plus_it_is_der_plus_plus():
    options = dict(lr=0.1, buffer_size=100, replay_size=16, alpha=0.2, beta=0.5)
    coupled = ClassIncrementalSetting(**DIGITS).apply(LODEDERPlusPlus(decouple_loss=False, **options))
    derpp = ClassIncrementalSetting(**DIGITS).apply(DERPlusPlus(**options))
    assert len(coupled.accuracy_matrix) == 5 and coupled.accuracy_matrix == derpp.accuracy_matrix
    decoupled = ClassIncrementalSetting(**DIGITS).apply(LODEDERPlusPlus(**options))
    assert decoupled.accuracy_matrix != derpp.accuracy_matrix


@pytest.mark.parametrize("method_cls", [LODE, LODEDERPlusPlus])
def test_it_needs_task_boundaries(method_cls):
    assert method_cls.is_applicable(ClassIncrementalSetting(**DIGITS))
    assert not method_cls.is_applicable(OnlineSetting(dataset="digits"))


@pytest.mark.parametrize(("options", "flag"), [
    (dict(rho=-0.1), "--rho"),
    (dict(buffer_size=-1), "--buffer_size"),
    (dict(replay_size=-1), "--replay_size"),
    (dict(decouple_loss=False, rho=0.5), "--rho 0.5 has no effect"),
])
def test_nonsense_options_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        LODE(**options)
