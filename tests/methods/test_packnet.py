"""`packnet`: each stage owns the largest of the weights it trained, the rest are freed at zero,
and a task's predictions go through its own and earlier stages' weights only, so that later
stages change nothing about them."""

from __future__ import annotations

import pytest
import torch

from sylvan.errors import ConfigurationError
from sylvan.methods import PackNet
from sylvan.methods.packnet import FREE
from sylvan.settings import MultiTaskSetting, TaskIncrementalSetting

DIGITS = dict(dataset="digits", nb_tasks=5, epochs=1, batch_size=16, progress_bar=False)


def run_recording(method: PackNet, setting, probe: torch.Tensor, probe_tasks: torch.Tensor):
    """Run `method` on `setting`; after each stage, record its owners and its scores on `probe`."""
    stages = []
    fit = method.fit

    def recording_fit(*args, **kwargs):
        fit(*args, **kwargs)
        stages.append({
            "owners": {name: owner.cpu().clone() for name, owner in method.owners.items()},
            "weights": {name: p.detach().cpu().clone() for name, p in method.model.named_parameters()},
            "scores": method.predict(probe, probe_tasks).cpu(),
            "norm": {name: b.cpu().clone() for name, b in method.model.named_buffers()},
        })

    method.fit = recording_fit
    results = setting.apply(method)
    return results, stages


def probe_inputs(count: int = 40) -> torch.Tensor:
    return torch.rand(count, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_a_task_scores_exactly_the_same_after_every_later_stage():
    # momentum and weight decay move weights whose gradient is zero: the held weights must not move
    method = PackNet(lr=0.1, momentum=0.9, weight_decay=1e-3)
    setting = TaskIncrementalSetting(**DIGITS)
    probe = probe_inputs()
    tasks = torch.arange(5).repeat_interleave(8)
    results, stages = run_recording(method, setting, probe, tasks)
    for task in range(5):
        rows = tasks == task
        for later in stages[task + 1:]:
            torch.testing.assert_close(later["scores"][rows], stages[task]["scores"][rows], rtol=0, atol=0)
    matrix = torch.tensor(results.accuracy_matrix)
    for task in range(5):
        assert torch.equal(matrix[task:, task], matrix[task, task].expand(5 - task))
    assert results.forgetting == 0.0
    assert min(matrix[-1]) > 0.6  # and each task learned something of its own


def test_each_stage_keeps_an_equal_share_of_every_layer_and_frees_the_rest_at_zero():
    method = PackNet(lr=0.1)
    setting = TaskIncrementalSetting(**DIGITS)
    _, stages = run_recording(method, setting, probe_inputs(5), torch.zeros(5, dtype=torch.long))
    assert set(stages[0]["owners"]) == {"features.1.weight", "features.3.weight"}  # not biases, not the classifier
    for stage, record in enumerate(stages):
        for name, owner in record["owners"].items():
            size = owner.numel()
            counts = [int((owner == s).sum()) for s in range(stage + 1)]
            assert counts == [size // 5] * (stage + 1) if stage < 4 else sum(counts) == size
            weights = record["weights"][name]
            assert bool((weights[owner == FREE] == 0).all())  # what no stage kept is zero
    for name, owner in stages[0]["owners"].items():  # trained from a random start: none is zero
        assert int((stages[0]["weights"][name][owner == 0] == 0).sum()) == 0
    # a weight kept by a stage is never moved by a later one
    for stage in range(4):
        for name, owner in stages[stage]["owners"].items():
            kept = owner == stage
            assert torch.equal(stages[-1]["weights"][name][kept], stages[stage]["weights"][name][kept])


def test_with_a_prune_ratio_a_stage_frees_that_share_of_what_it_trained():
    method = PackNet(lr=0.1, prune_ratio=0.75, retrain_epochs=0)
    setting = TaskIncrementalSetting(**{**DIGITS, "nb_tasks": 3})
    _, stages = run_recording(method, setting, probe_inputs(5), torch.zeros(5, dtype=torch.long))
    owner = stages[-1]["owners"]["features.3.weight"]  # 100 x 100
    first = round(0.25 * 10_000)
    second = round(0.25 * (10_000 - first))
    assert [int((owner == s).sum()) for s in range(3)] == [first, second, 10_000 - first - second]


def test_a_stage_keeps_its_largest_weights_layer_by_layer():
    method = PackNet()
    setting = TaskIncrementalSetting(**{**DIGITS, "nb_tasks": 2})
    method.configure(setting)  # a stage per task: 2
    with torch.no_grad():
        for name, p in method.model.named_parameters():
            if name in method.owners:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    before = {name: p.detach().clone() for name, p in method.model.named_parameters()}
    assert method.prune()
    for name, owner in method.owners.items():
        magnitudes = before[name].abs()
        kept = owner == 0
        assert int(kept.sum()) == round(magnitudes.numel() / 2)
        assert magnitudes[kept].min() >= magnitudes[~kept].max()
        assert torch.equal(dict(method.model.named_parameters())[name].detach(), before[name] * kept)


def test_a_task_sees_the_weights_of_its_own_and_earlier_stages_only():
    method = PackNet(lr=0.1)
    setting = TaskIncrementalSetting(**{**DIGITS, "nb_tasks": 4})
    setting.apply(method)
    x = probe_inputs(12)
    tasks = torch.arange(4).repeat_interleave(3)
    before = method.predict(x, tasks)
    with torch.no_grad():  # change only the weights the third stage owns
        for name, p in method.model.named_parameters():
            if name in method.owners:
                p.add_(5.0 * (method.owners[name] == 2))
    after = method.predict(x, tasks)
    unchanged = tasks < 2
    torch.testing.assert_close(after[unchanged], before[unchanged], rtol=0, atol=0)
    assert not torch.allclose(after[~unchanged], before[~unchanged])


def test_on_a_convolutional_network_biases_learn_in_the_first_stage_only_and_nothing_is_forgotten():
    method = PackNet(lr=0.05, backbone="cnn")
    options = {**DIGITS, "nb_tasks": 2, "train_samples": 200}
    setting = TaskIncrementalSetting(**options)
    probe = probe_inputs(10)
    tasks = torch.zeros(10, dtype=torch.long)
    _, stages = run_recording(method, setting, probe, tasks)
    for name, weights in stages[0]["weights"].items():
        if name not in stages[0]["owners"] and not name.startswith("classifier"):
            assert torch.equal(stages[1]["weights"][name], weights)
    torch.testing.assert_close(stages[1]["scores"], stages[0]["scores"], rtol=0, atol=0)


@pytest.mark.slow
def test_batch_norm_statistics_stay_as_the_first_stage_left_them():
    method = PackNet(lr=0.05, backbone="resnet18_reduced")
    setting = TaskIncrementalSetting(**{**DIGITS, "nb_tasks": 2, "train_samples": 200})
    probe = probe_inputs(10)
    _, stages = run_recording(method, setting, probe, torch.zeros(10, dtype=torch.long))
    statistics = {name: b for name, b in stages[0]["norm"].items() if "running" in name}
    assert statistics
    for name, values in statistics.items():
        assert torch.equal(stages[1]["norm"][name], values), name
    torch.testing.assert_close(stages[1]["scores"], stages[0]["scores"], rtol=0, atol=0)


def test_on_multi_task_the_one_stage_keeps_every_weight():
    method = PackNet(lr=0.1)
    setting = MultiTaskSetting(**DIGITS)
    results = setting.apply(method)
    for name, owner in method.owners.items():
        assert bool((owner == 0).all()), name
    assert results.accuracy_matrix[-1][0] > 0.8


@pytest.mark.parametrize(("options", "message"), [
    ({"prune_ratio": 0.0}, r"--prune_ratio must be in \(0, 1\)"),
    ({"prune_ratio": 1.0}, r"--prune_ratio must be in \(0, 1\)"),
    ({"retrain_epochs": -1}, "--retrain_epochs must be >= 0"),
])
def test_bad_hyperparameters_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        PackNet(**options)


def test_predictions_need_task_labels():
    method = PackNet()
    method.configure(TaskIncrementalSetting(**DIGITS))
    with pytest.raises(ValueError, match="packnet needs task labels at test time"):
        method.predict(probe_inputs(3), None)
