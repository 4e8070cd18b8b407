"""The reference methods do what they claim, on data where the gap is unmistakable."""

from __future__ import annotations

import pytest
import torch

from sylvan.methods import FromScratch, Naive, RandomMethod, Rehearsal
from sylvan.settings import ClassIncrementalSetting, TaskIncrementalSetting

OPTIONS = dict(dataset="digits", nb_tasks=5, epochs=3, batch_size=16, progress_bar=False)


@pytest.fixture(scope="module")
def digits_results():
    runs = {}
    for name, method in [("naive", Naive()), ("rehearsal", Rehearsal(buffer_size=200)),
                         ("from_scratch", FromScratch()), ("random", RandomMethod())]:
        runs[name] = ClassIncrementalSetting(**OPTIONS).apply(method)
    return runs


def test_ordering_of_baselines(digits_results):
    acc = {name: r.final_average_accuracy for name, r in digits_results.items()}
    assert acc["random"] < 0.2
    assert acc["naive"] < 0.3, "fine-tuning forgets all but the last task"
    assert acc["rehearsal"] > acc["naive"] + 0.3
    assert acc["from_scratch"] > 0.9
    assert digits_results["naive"].forgetting > 0.8


def test_naive_only_knows_last_task(digits_results):
    last_row = digits_results["naive"].accuracy_matrix[-1]
    assert last_row[-1] > 0.9 and max(last_row[:-1]) < 0.2


def test_task_aware_accuracy_is_higher_than_class_il(digits_results):
    naive = digits_results["naive"]
    assert naive.task_aware_accuracy > naive.final_average_accuracy + 0.4


def test_rehearsal_batches_hold_b_plus_r_real_samples():
    setting = ClassIncrementalSetting(**{**OPTIONS, "epochs": 1, "batch_size": 8})
    method = Rehearsal(buffer_size=30, replay_size=5)
    sizes = []
    original = method.training_step

    def spy(batch):
        before = len(method.buffer)
        replay = min(5, before)
        sizes.append((len(batch.y), replay))
        return original(batch)

    method.training_step = spy
    setting.apply(method)
    assert all(r == 5 for _, r in sizes[5:])  # once the buffer holds 5 samples
    stored = method.buffer.get_all()
    assert len(stored["y"]) == 30 and stored["x"].shape[1:] == (1, 8, 8)
    assert set(stored["t"].tolist()) <= set(range(5))


def test_task_incremental_masks_with_learned_task_classes():
    setting = TaskIncrementalSetting(**{**OPTIONS, "epochs": 2})
    method = Naive()
    results = setting.apply(method)
    # with the task label, the single head only chooses among the task's classes
    assert results.final_average_accuracy > 0.8
    scores = method.predict(torch.zeros(2, 1, 8, 8), torch.tensor([0, 4]))
    assert torch.isinf(scores[0, 2:]).all() and torch.isfinite(scores[0, :2]).all()


def test_ddp_does_not_broadcast_the_learned_task_classes(tmp_path):
    """DDP broadcasts a module's buffers from worker 0 before every forward pass: for
    `task_classes`, learned by each worker from its own batches, that would be a collective per
    step overwriting the other workers' knowledge. The learner keeps it out of DDP's sync."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from sylvan.methods.core.learner import Learner

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        learner = Learner(Naive(), torch.nn.Linear(4, 3), num_tasks=2, num_classes=3)
        wrapped = DistributedDataParallel(learner)
        assert not wrapped.will_sync_module_buffers()
        assert "task_classes" in learner.state_dict(), "still saved and restored with the learner"
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("minibatches", [3, 64, 70])
def test_the_classes_of_each_task_label_are_known_as_soon_as_a_minibatch_is_trained(minibatches):
    """The learner notes the classes of the training batches' task labels a few minibatches at
    a time: whoever reads the record (task-incremental masking, as the online meter predicts the
    next minibatch; HAT; PackNet) or saves it sees every minibatch trained on so far."""
    setting = TaskIncrementalSetting(**OPTIONS)
    method = Naive()
    method.configure(setting)
    learner = method.learner
    expected = torch.zeros(5, 10, dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    for _ in range(minibatches):
        t = torch.randint(0, 5, (4,), generator=generator)
        y = torch.randint(0, 10, (4,), generator=generator)
        learner.minibatch_loss((torch.rand(4, 1, 8, 8), y, t))
        expected[t, y] = True
    assert torch.equal(learner.state_dict()["task_classes"], expected)
    assert torch.equal(learner.seen_task_classes(), expected)
    restored = Naive()
    restored.configure(setting)
    restored.learner.minibatch_loss((torch.rand(1, 1, 8, 8), torch.tensor([9]), torch.tensor([4])))
    restored.learner.load_state_dict(learner.state_dict())
    assert torch.equal(restored.learner.seen_task_classes(), expected), "the restored record replaces what was noted"
