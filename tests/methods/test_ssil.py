"""`ssil`: the new samples' and the exemplars' cross-entropies each over their own classes, the
task-wise distillation against its terms written out, and a memory of the earlier tasks only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import SSIL, Batch
from sylvan.methods.parts.distillation import frozen_copy
from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting
from tests.methods.digits_samples import mask, samples

DIGITS = dict(dataset="digits", nb_tasks=5, epochs=1, batch_size=8, progress_bar=False)


def after_two_tasks(method: SSIL, setting_cls=ClassIncrementalSetting) -> SSIL:
    """`method` on digits past two tasks (classes 0, 1, then 2, 3, without training), its
    exemplars chosen, and training a third (classes 4, 5)."""
    torch.manual_seed(0)
    method.configure(setting_cls(**DIGITS))
    for task, labels in enumerate(([0, 1] * 10, [2, 3] * 10)):
        x, y = samples(labels, task)
        method._task_data = (x, y)
        method.seen_classes.active[y.unique()] = True
        method.on_task_end(task)
    method.current_classes = mask(4, 5)
    return method


class RecordedLogits:
    """Keeps the logits of the learner's next forward pass, with their gradient."""

    def __init__(self, method: SSIL) -> None:
        self.logits: torch.Tensor | None = None
        forward = method.learner.forward

        def recorded(x):
            self.logits = forward(x)
            self.logits.retain_grad()
            return self.logits

        method.learner.forward = recorded


def test_the_memory_holds_the_earlier_tasks_and_each_group_learns_over_its_own_classes():
    method = after_two_tasks(SSIL(buffer_size=40, replay_size=6, temperature=2.0))
    assert set(method.buffer.class_counts()) == {0, 1, 2, 3}
    method.teacher.network = None  # the cross-entropies alone
    recorded = RecordedLogits(method)
    method.training_step(Batch(*samples([4, 5, 4, 5], 9))).backward()
    gradient = recorded.logits.grad
    assert gradient.shape == (10, 10)
    new, replayed = gradient[:4], gradient[4:]
    assert float(new[:, :4].abs().sum()) == 0.0 and float(new[:, 4:6].abs().sum()) > 0  # only the task's classes
    assert float(replayed[:, 4:].abs().sum()) == 0.0 and float(replayed[:, :4].abs().sum()) > 0  # only the old ones


def test_the_loss_is_the_summed_separated_cross_entropies_over_the_step_plus_one_distillation_per_task():
    method = after_two_tasks(SSIL(buffer_size=40, replay_size=6, temperature=2.0))
    assert [group.nonzero().flatten().tolist() for group in method.task_groups] == [[0, 1], [2, 3]]
    with torch.no_grad():  # a teacher that differs from the network
        for p in method.teacher.network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    recorded = RecordedLogits(method)
    draws = []
    sample = method.buffer.sample
    method.buffer.sample = lambda n: draws.append(sample(n)) or draws[-1]
    batch = Batch(*samples([4, 5, 4, 5], 9))
    loss = method.training_step(batch)
    logits, replay = recorded.logits.detach(), draws[0]
    x = torch.cat([batch.x, replay["x"]])
    teacher = method.teacher.network(x)
    expected = (F.cross_entropy(logits[:4, 4:6], batch.y - 4, reduction="sum")
                + F.cross_entropy(logits[4:, :4], replay["y"], reduction="sum")) / 10
    for classes in ([0, 1], [2, 3]):
        student_log = F.log_softmax(logits[:, classes] / 2, dim=1)
        target = F.softmax(teacher[:, classes] / 2, dim=1)
        expected = expected + 4 * (target * (target.log() - student_log)).sum(1).mean()
    torch.testing.assert_close(loss.detach(), expected)


def test_tasks_of_the_same_classes_add_no_second_distillation_term():
    method = after_two_tasks(SSIL(buffer_size=40), DomainIncrementalSetting)
    method._task_data = samples([0, 1, 0, 1], 3)
    method.on_task_end(2)
    assert [group.nonzero().flatten().tolist() for group in method.task_groups] == [[0, 1], [2, 3]]


def test_the_distillation_is_zero_when_the_network_is_its_teacher():
    method = after_two_tasks(SSIL(buffer_size=40, replay_size=6))
    fixed = method.buffer.sample(6)
    method.buffer.sample = lambda n: fixed
    batch = Batch(*samples([4, 5, 4, 5], 2))
    method.teacher.network = frozen_copy(method.model)
    with_itself = method.training_step(batch)
    method.teacher.network = None
    torch.testing.assert_close(with_itself, method.training_step(batch))


def test_the_task_groups_are_checkpointed():
    method = after_two_tasks(SSIL(buffer_size=40))
    restored = SSIL(buffer_size=40)
    restored.configure(ClassIncrementalSetting(**DIGITS))
    restored.load_state_dict(method.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.task_groups, method.task_groups, strict=True))


@pytest.mark.parametrize(("options", "flag"), [
    (dict(replay_size=-1), "--replay_size"),
    (dict(temperature=0), "--temperature"),
    (dict(buffer_size=0), "--buffer_size"),
])
def test_nonsense_options_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        SSIL(**options)
