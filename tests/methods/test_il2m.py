"""`il2m`: the class statistics, the rectification factors, which predictions they rescale, the
training loss, checkpoints, and a run in which the rectification shifts predictions back to the old
classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sylvan.methods import IL2M, Batch
from sylvan.methods.parts.rectification import class_score_means, rectification_factors
from sylvan.minibatches import float_inputs
from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting
from tests.methods.digits_samples import DIGITS, configured, mask, samples


def test_class_means_are_of_each_class_own_score_on_its_samples():
    logits = torch.tensor([[2.0, 0.0, 9.0], [4.0, 1.0, 0.0], [5.0, 3.0, 0.0], [0.0, 7.0, 1.0]])
    means, counts = class_score_means(logits, torch.tensor([0, 0, 1, 1]), 3)
    torch.testing.assert_close(means, torch.tensor([3.0, 5.0, 0.0]))
    assert counts.tolist() == [2, 2, 0]


def test_factors_rescale_old_classes_by_their_means_and_the_tasks_confidences():
    old = torch.tensor([True, True, True, False])
    initial = torch.tensor([4.0, 3.0, 2.0, 5.0])
    current = torch.tensor([2.0, 1.0, -1.0, 5.0])
    class_confidences = torch.tensor([6.0, 4.0, 4.0, 8.0])
    factors = rectification_factors(initial, current, class_confidences, 12.0, old)
    torch.testing.assert_close(factors, torch.tensor([2.0 * 2.0, 3.0 * 3.0, 1.0, 1.0]))
    # a confidence that is not positive, or not known (NaN), leaves the scores as they are
    assert rectification_factors(initial, current, class_confidences, 0.0, old).tolist() == [1.0] * 4
    unknown = torch.tensor([float("nan"), 4.0, 4.0, 8.0])
    assert rectification_factors(initial, current, unknown, 12.0, old)[0] == 1.0


def il2m(**options) -> IL2M:
    return configured(IL2M(buffer_size=20, **options))


def end_task(method: IL2M, labels: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train-free end of a task whose data are random inputs with `labels` (the classes observed
    as a training step would); the task's data."""
    x, y = samples(labels, seed=seed)
    method.seen_classes.observe(Batch(x, y).y)
    method._task_data = (x, y)
    method.on_task_end(method.stage)
    return x, y


def test_a_tasks_end_records_new_classes_initial_means_and_its_confidence():
    method = il2m()
    x, y = end_task(method, [0, 1, 0, 1, 1], seed=1)
    with torch.no_grad():
        logits = method.model.eval()(x)
    assert method.class_stage[:2].tolist() == [0, 0] and (method.class_stage[2:] == -1).all()
    torch.testing.assert_close(method.initial_means[0], logits[[0, 2], 0].mean())
    torch.testing.assert_close(method.initial_means[1], logits[[1, 3, 4], 1].mean())
    torch.testing.assert_close(method.confidences[0], logits.max(1).values.mean())
    assert not method.current_means.any(), "no old class yet"
    assert len(method.buffer) > 0 and method.stage == 1


def test_the_next_task_records_the_old_classes_current_means_on_the_exemplars():
    method = il2m()
    end_task(method, [0, 1, 0, 1], seed=2)
    stored = method.buffer.get_all()
    x, y = samples([2, 3, 2, 3], seed=3)
    method.seen_classes.observe(Batch(x, y).y)
    method._task_data = (x, y)
    with torch.no_grad():
        exemplar_logits = method.model.eval()(stored["x"])
        task_logits = method.model(x)
    method.on_task_end(1)
    for c in (0, 1):
        of_c = stored["y"] == c
        torch.testing.assert_close(method.current_means[c], exemplar_logits[of_c, c].mean())
    assert method.class_stage[:4].tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(method.confidences[1], task_logits.max(1).values.mean())


def test_only_predictions_of_a_new_class_have_the_old_scores_rescaled():
    method = il2m()
    end_task(method, [0, 1, 0, 1], seed=4)
    end_task(method, [2, 3, 2, 3], seed=5)
    method.initial_means[:2] = torch.tensor([4.0, 2.0])
    method.current_means[:2] = torch.tensor([2.0, 1.0])
    method.confidences[:2] = torch.tensor([3.0, 6.0])
    logits = torch.tensor([[1.0, 0.5, 3.0, 0.0] + [0.0] * 6,   # a new class on top: rescaled by 4 (2 x 2)
                           [5.0, 0.5, 3.0, 0.0] + [0.0] * 6])  # an old class on top: as it is
    method.learner.forward = lambda x: logits
    scores = method.predict(torch.zeros(2, 1, 8, 8))
    torch.testing.assert_close(scores[0], torch.tensor([4.0, 2.0, 3.0, 0.0] + [0.0] * 6))
    torch.testing.assert_close(scores[1], logits[1])


def test_nothing_is_rectified_before_the_second_task_ends():
    method = il2m()
    end_task(method, [0, 1, 0, 1], seed=6)
    assert method.factors() is None
    x = samples([0, 1], seed=7)[0]
    predicted = method.predict(x)  # on the run's device, where it leaves the network
    with torch.no_grad():
        device = next(method.model.parameters()).device
        torch.testing.assert_close(predicted, method.model.eval()(x.to(device)).cpu())


def test_domain_incremental_tasks_bring_no_new_class_and_nothing_is_rectified():
    method = configured(IL2M(buffer_size=20), DomainIncrementalSetting, nb_tasks=2)
    end_task(method, [0, 1, 2, 3], seed=8)
    end_task(method, [0, 1, 2, 3], seed=9)
    assert method.factors() is None


def test_the_loss_is_the_cross_entropy_over_the_classes_seen_so_far():
    method = il2m()
    method.seen_classes.observe(Batch(*samples([0, 1], seed=10)).y)
    batch = Batch(*samples([2, 3, 2], seed=11))
    loss = method.training_step(batch)
    logits = method.model(batch.x).masked_fill(~mask(0, 1, 2, 3), float("-inf"))
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.y))


def test_the_statistics_are_checkpointed():
    method = il2m()
    end_task(method, [0, 1, 0, 1], seed=12)
    end_task(method, [2, 3, 2, 3], seed=13)
    restored = il2m()
    restored.load_state_dict(method.state_dict())
    for name in ("initial_means", "current_means", "class_stage", "confidences"):
        torch.testing.assert_close(getattr(restored, name), getattr(method, name), equal_nan=True, msg=name)
    assert restored.stage == 2
    x = samples([0, 2, 3], seed=14)[0]
    torch.testing.assert_close(restored.predict(x), method.predict(x))


def test_rectification_gives_old_classes_back_predictions():
    """On digits, the rectified predictions go to the old classes more often than the network's own,
    and are more accurate."""
    setting = ClassIncrementalSetting(**{**DIGITS, "epochs": 3})
    method = IL2M(buffer_size=50)
    results = setting.apply(method)
    tasks = setting.prepare_tasks()
    x = float_inputs(torch.cat([task.x_test for task in tasks]))
    y = torch.cat([task.y_test for task in tasks])
    latest_new = method.class_stage == method.stage - 1
    with torch.no_grad():
        rectified = method.predict(x).argmax(1)
        raw = method.model.eval()(x.to(next(method.model.parameters()).device)).argmax(1).cpu()
    assert int((~latest_new[rectified]).sum()) > int((~latest_new[raw]).sum())
    assert float((rectified == y).float().mean()) > float((raw == y).float().mean())
    assert results.final_average_accuracy > 0.5
    method.rectify = False
    with torch.no_grad():
        assert torch.equal(method.predict(x).argmax(1), raw), "--rectify false: the network's own predictions"
