"""MNTDP-D: backbones cut into modules, the k-NN prior over past tasks, the candidates that reuse
the prior's first modules frozen, the pool that grows by the kept candidate's new modules, and a
path per task that later tasks never change."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sylvan.errors import ConfigurationError, InapplicableMethodError
from sylvan.methods.mntdp import MNTDP
from sylvan.models import build_backbone
from sylvan.models.modular import ModulePool, PathNetwork, blocks_of
from sylvan.settings import ClassIncrementalSetting, DatasetStreamSetting, TaskIncrementalSetting
from tests.cli.test_cli import sylvan


@pytest.mark.parametrize(("backbone", "shape", "modules"), [
    ("mlp", (1, 28, 28), 3), ("mlp_400", (1, 28, 28), 3), ("cnn", (3, 32, 32), None), ("resnet18", (3, 32, 32), 6),
])
def test_a_backbone_cut_into_modules_computes_what_it_computed(backbone, shape, modules):
    torch.manual_seed(0)
    network = build_backbone(backbone, shape, 10).eval()
    normalization, blocks = blocks_of(network)
    assert modules is None or len(blocks) == modules
    assert blocks[-1][0] is network.classifier
    x = torch.rand(4, *shape)
    h = x if normalization is None else normalization(x)
    for block in blocks:
        h = block(h)
    assert torch.allclose(h, network(x), atol=1e-6)


def test_reused_modules_stay_frozen_even_in_training_mode():
    torch.manual_seed(0)
    old = blocks_of(build_backbone("resnet18_reduced", (3, 16, 16), 4))[1]
    fresh = blocks_of(build_backbone("resnet18_reduced", (3, 16, 16), 4))[1]
    network = PathNetwork(None, old[:2] + fresh[2:], reused=2).train()
    before = {name: value.clone() for name, value in network.path[:2].state_dict().items()}
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(network(torch.rand(8, 3, 16, 16)), torch.randint(4, (8,))).backward()
        optimizer.step()
    after = network.path[:2].state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)  # weights and batch-norm statistics
    assert not network.path[0].training and network.path[2].training


def test_the_pool_adds_only_the_new_modules_and_runs_each_sample_through_its_tasks_path():
    torch.manual_seed(0)
    first, second = (blocks_of(build_backbone("mlp", (1, 8, 8), 6))[1] for _ in range(2))
    pool = ModulePool(None, 3)
    assert pool.add_path(PathNetwork(None, first, 0)) == (0, 0, 0)
    assert pool.add_path(PathNetwork(None, first[:2] + second[2:], 2)) == (0, 0, 1)
    assert pool.module_counts() == [1, 1, 2]
    x, tasks = torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 1, 0, 2, 1])
    out = pool(x, tasks)
    assert torch.allclose(out[tasks == 0], nn.Sequential(*first)(x[tasks == 0]))
    assert torch.allclose(out[tasks == 1], nn.Sequential(*first[:2], second[2])(x[tasks == 1]))
    assert torch.equal(out[tasks == 2], torch.zeros(1, 6))  # a task without a path


def test_a_stream_whose_task_returns_reuses_the_returning_tasks_modules_and_forgets_nothing(mnist_root):
    setting = DatasetStreamSetting(stream="mnist,synthetic,mnist", data_dir=str(mnist_root), train_samples=600,
                                   epochs=2, batch_size=16, forward_transfer=False, progress_bar=False)
    method = MNTDP()
    results = setting.apply(method)
    assert method.priors[1:] == [0, 0]  # both later tasks rank the first's path first; the returning one surely
    assert len(method.candidate_accuracies[2]) == 3 and method.reuses[2] >= 1
    best = max(range(3), key=lambda d: (method.candidate_accuracies[2][d], d))
    assert method.reuses == [0, method.reuses[1], best]
    paths = method.pool.paths
    assert paths[2][:method.reuses[2]] == paths[0][:method.reuses[2]]  # the prior's modules, shared
    assert method.pool.module_counts() == [3 - (method.reuses[1] > 0) - (method.reuses[2] > 0),
                                           3 - (method.reuses[1] > 1) - (method.reuses[2] > 1), 3]
    matrix = results.accuracy_matrix
    for task in range(3):  # a task's path never changes once trained
        assert {matrix[later][task] for later in range(task, 3)} == {matrix[task][task]}
    assert results.accuracy_matrix[-1][2] > 0.5  # learnt (chance: 0.1)


def test_every_candidate_trains_and_the_most_accurate_on_validation_is_kept():
    setting = TaskIncrementalSetting(dataset="digits", nb_tasks=3, epochs=1, batch_size=16, progress_bar=False)
    method = MNTDP()
    trained: list[int] = []
    train_apart = method.train_apart

    def recording(network, loader, measure_online=False):
        trained.append(network.reused)
        return train_apart(network, loader, measure_online)

    method.train_apart = recording
    setting.apply(method)
    # the first task: all fresh; then every reuse depth; each task's kept candidate trained again (refit)
    assert trained == [0, 0, 0, 1, 2, method.reuses[1], 0, 1, 2, method.reuses[2]]
    for accuracies, reuse in zip(method.candidate_accuracies, method.reuses):
        assert accuracies[reuse] == max(accuracies)
    grown = sum(3 - reuse for reuse in method.reuses)
    assert sum(method.pool.module_counts()) == grown


def test_the_kept_candidate_is_trained_again_on_every_sample_of_its_task_unless_told_not_to():
    setting = TaskIncrementalSetting(dataset="digits", nb_tasks=2, epochs=1, batch_size=16, progress_bar=False)
    sizes: dict[bool, list[int]] = {}
    for refit in (True, False):
        method = MNTDP(refit=refit)
        sizes[refit] = []
        train_apart = method.train_apart

        def recording(network, loader, measure_online=False, sizes=sizes[refit], train_apart=train_apart):
            sizes.append(len(loader.dataset))
            return train_apart(network, loader, measure_online)

        method.train_apart = recording
        setting.apply(method)
    task_sizes = [len(task.y_train) for task in setting.prepare_tasks()]
    assert sizes[True][1] == task_sizes[0] and sizes[True][-1] == task_sizes[1]  # the whole task
    assert sizes[False] == [round(n * 2 / 3) for n in (task_sizes[0],)] + [round(task_sizes[1] * 2 / 3)] * 3


def test_it_needs_task_labels_and_a_backbone_it_can_cut_and_checks_its_options():
    with pytest.raises(InapplicableMethodError, match="mntdp"):
        ClassIncrementalSetting(dataset="digits").apply(MNTDP())
    with pytest.raises(ConfigurationError, match="validation_share"):
        MNTDP(validation_share=1.0)
    with pytest.raises(ConfigurationError, match="knn_neighbours"):
        MNTDP(knn_neighbours=0)


def test_two_workers_share_out_the_candidates_and_end_as_one_process_does(tmp_path):
    common = ["--setting", "task_incremental", "--method", "mntdp", "--dataset", "digits", "--nb_tasks", "3",
              "--epochs", "2", "--batch_size", "16", "--progress_bar", "false", "--accelerator", "cpu",
              "--results_dir", str(tmp_path)]
    for devices in ("1", "2"):
        out = sylvan(*common, "--devices", devices, "--run_name", devices)
        assert out.returncode == 0, out.stderr
    one, two = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("1", "2"))
    # each candidate is trained whole by one worker, from the same weights on the same minibatches
    for row_two, row_one in zip(two["accuracy_matrix"], one["accuracy_matrix"], strict=True):
        assert row_two == pytest.approx(row_one, abs=1e-9)  # the sharded evaluation counts the same samples
    single = torch.load(tmp_path / "1" / "checkpoints" / "after_stage_2.pt", weights_only=False)["method"]
    workers = [torch.load(tmp_path / "2" / "checkpoints" / name, weights_only=False)["method"]
               for name in ("after_stage_2.pt", "after_stage_2.worker1.pt")]
    for state in workers:  # every worker ends with the one process's pool, paths and choices
        assert state["paths"] == single["paths"] and state["modules"] == single["modules"]
        assert state["reuses"] == single["reuses"] and state["candidate_accuracies"] == single["candidate_accuracies"]
        for name, value in single["model"].items():  # up to the order a worker's fewer threads sum in
            torch.testing.assert_close(state["model"][name].float(), value.float(), rtol=0, atol=1e-5, msg=name)
    for name, value in workers[0]["model"].items():  # and the same network to the last bit
        if name != "task_classes":
            assert torch.equal(workers[1]["model"][name], value), name
