"""`eeil`: cross-entropy plus a distillation per finished task's group of classes, then a balanced
finetuning on the exemplars and as many samples of each new class, with the new group distilled
from the network as the first stage left it."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import EEIL, Batch
from sylvan.methods.eeil import UNGROUPED
from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting
from tests.methods.digits_samples import DIGITS, configured, mask, samples


def kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)), mean over the rows, written out."""
    p = F.softmax(teacher / temperature, 1)
    return (p * (p.log() - F.log_softmax(student / temperature, 1))).sum(1).mean()


def perturbed_teacher(method: EEIL, seed: int = 0) -> torch.nn.Module:
    teacher = copy.deepcopy(method.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator))
    return teacher


def after_two_tasks(method: EEIL) -> EEIL:
    """`method` as after two finished tasks of classes {0, 1} and {2, 3, 4}, the third task's under way."""
    method.seen_classes.active, method.seen_classes.old = mask(0, 1, 2, 3, 4), mask(0, 1, 2, 3, 4)
    method.class_group[:5] = torch.tensor([0, 0, 1, 1, 1])
    method.finished_tasks = 2
    method.teacher.network = perturbed_teacher(method)
    return method


def test_the_loss_is_the_cross_entropy_plus_a_distillation_per_finished_task():
    method = after_two_tasks(configured(EEIL(temperature=2.0)))
    batch = Batch(*samples([5, 6, 5, 6, 5, 6], seed=1), None)
    loss = method.training_step(batch)

    logits = method.model(batch.x)
    teacher = method.teacher.network(batch.x).detach()
    expected = (F.cross_entropy(logits[:, :7], batch.y) + kl(logits[:, 0:2], teacher[:, 0:2], 2.0)
                + kl(logits[:, 2:5], teacher[:, 2:5], 2.0))
    torch.testing.assert_close(loss, expected)


def test_the_first_task_trains_on_the_cross_entropy_over_the_classes_seen():
    method = configured(EEIL())
    batch = Batch(*samples([0, 1, 1, 0], seed=2), None)
    torch.testing.assert_close(method.training_step(batch), F.cross_entropy(method.model(batch.x)[:, :2], batch.y))


def test_a_group_of_one_class_distils_nothing():
    method = after_two_tasks(configured(EEIL()))
    method.class_group[:5] = torch.tensor([0, 1, 1, 1, 1])  # the first task brought class 0 alone
    batch = Batch(*samples([5, 6], seed=3), None)
    logits = method.model(batch.x)
    teacher = method.teacher.network(batch.x).detach()
    expected = F.cross_entropy(logits[:, :7], batch.y) + kl(logits[:, 1:5], teacher[:, 1:5], 2.0)
    torch.testing.assert_close(method.training_step(batch), expected)


def test_during_the_balanced_finetuning_the_new_classes_are_distilled_from_the_first_stages_network():
    method = after_two_tasks(configured(EEIL()))
    method._stage_teacher = perturbed_teacher(method, seed=1)
    assert method.current_lr == method.finetune_lr
    batch = Batch(*samples([5, 6, 2, 0], seed=4), None)
    loss = method.training_step(batch)

    logits = method.model(batch.x)
    teacher = method.teacher.network(batch.x).detach()
    stage = method._stage_teacher(batch.x).detach()
    expected = (F.cross_entropy(logits[:, :7], batch.y) + kl(logits[:, 0:2], teacher[:, 0:2], 2.0)
                + kl(logits[:, 2:5], teacher[:, 2:5], 2.0) + kl(logits[:, 5:7], stage[:, 5:7], 2.0))
    torch.testing.assert_close(loss, expected)
    method._stage_teacher = None
    assert method.current_lr == method.lr


def test_the_balanced_samples_are_as_many_per_new_class_as_the_memory_holds_per_old_class():
    method = configured(EEIL(buffer_size=40))
    method.seen_classes.old = mask(0, 1, 2, 3)
    x, y = samples([0] * 12 + [4] * 15 + [5] * 6, seed=5)  # old class 0 (a blurry stream) and new 4, 5
    method.buffer.add(x=x[:20], y=torch.tensor([0, 1, 2, 3] * 5), features=torch.randn(20, 8))
    method._task_data = (x, y)
    chosen_x, chosen_y = method.balanced_samples()
    per_class = len(method.buffer) // 4
    assert per_class == 5
    assert sorted(chosen_y.tolist()) == [4] * 5 + [5] * 5  # class 5 has 6 samples, class 0 is old
    again = method.balanced_samples()
    assert torch.equal(again[0], chosen_x)  # drawn with the run's seed


def test_a_run_finetunes_from_the_second_task_on_at_the_finetuning_rate():
    method = EEIL(buffer_size=50, finetune_epochs=2)
    stages = []
    train_learner = method.train_learner

    def recording(loader, val_data=None, epochs=None, measure_online=True):
        stages.append(dict(lr=method.current_lr, epochs=epochs, online=measure_online, samples=len(loader.dataset),
                           stored=len(method.buffer), old=int(method.seen_classes.old.sum()),
                           new=int((method.seen_classes.active & ~method.seen_classes.old).sum())))
        train_learner(loader, val_data, epochs=epochs, measure_online=measure_online)

    method.train_learner = recording
    results = ClassIncrementalSetting(**{**DIGITS, "nb_tasks": 3}).apply(method)
    assert [(s["lr"], s["epochs"], s["online"]) for s in stages] == [
        (0.1, None, True), (0.1, None, True), (0.01, 2, False), (0.1, None, True), (0.01, 2, False)]
    for stage in (stages[2], stages[4]):  # the exemplars, and as many of each new class as of each old one
        assert stage["new"] > 0 and stage["stored"] > 0
        assert stage["samples"] == stage["stored"] + stage["new"] * (stage["stored"] // stage["old"])
    assert method.finished_tasks == 3
    assert len(results.accuracy_matrix) == 3


def test_the_groups_are_the_classes_each_task_brought_first():
    method = EEIL(finetune_epochs=1)
    ClassIncrementalSetting(**{**DIGITS, "nb_tasks": 5}).apply(method)
    groups = method.class_group
    for task in range(5):
        assert int((groups == task).sum()) == 2
    assert not bool((groups == UNGROUPED).any())
    assert method.finished_tasks == 5


def test_on_domain_incremental_the_later_tasks_bring_no_group():
    method = EEIL(finetune_epochs=1)
    DomainIncrementalSetting(dataset="digits", nb_tasks=2, epochs=1, batch_size=16, progress_bar=False,
                             train_samples=300).apply(method)
    assert bool((method.class_group == 0).all())


def test_its_state_restores_the_groups():
    method = after_two_tasks(configured(EEIL()))
    state = method.state_dict()
    restored = configured(EEIL())
    restored.load_state_dict(state)
    assert torch.equal(restored.class_group, method.class_group)
    assert restored.finished_tasks == 2


@pytest.mark.parametrize(("options", "message"), [
    ({"temperature": 0.0}, "--temperature must be > 0"),
    ({"finetune_lr": 0.0}, "--finetune_lr must be > 0"),
    ({"finetune_epochs": -1}, "--finetune_epochs must be >= 0"),
])
def test_bad_hyperparameters_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        EEIL(**options)


def test_classes_to_come_take_no_probability_mass():
    """The paper's network has outputs for the classes of the tasks seen: a class not seen yet
    is never predicted, and takes none of a softmax over the scores."""
    method = configured(EEIL(), ClassIncrementalSetting)
    x, y = samples([0, 1, 0, 1], seed=0)
    method.training_step(Batch(x, y))  # the first task's classes, 0 and 1
    scores = method.predict(samples([0] * 20, seed=1)[0])
    assert torch.isinf(scores[:, 2:]).all() and torch.isfinite(scores[:, :2]).all()
    assert set(scores.argmax(1).tolist()) <= {0, 1}
    assert torch.allclose(scores.softmax(1)[:, :2].sum(1), torch.ones(20))
