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


def test_learner_attributes_other_than_the_hook_name_are_still_registered():
    """The learner sets Lightning's hook name as a plain attribute; everything else still goes
    through `nn.Module.__setattr__`, so parameters, buffers and submodules are registered."""
    from sylvan.methods.core.learner import Learner

    learner = Learner(Naive(), torch.nn.Linear(4, 3), num_tasks=2, num_classes=3)
    learner._current_fx_name = "training_step"
    assert learner._current_fx_name == "training_step"
    assert "_current_fx_name" not in learner._modules and "_current_fx_name" not in learner._buffers
    learner.head = torch.nn.Linear(3, 2)
    learner.scale = torch.nn.Parameter(torch.ones(1))
    assert "head" in learner._modules and "scale" in learner._parameters
    assert {"head.weight", "head.bias", "scale"} <= set(dict(learner.named_parameters()))
