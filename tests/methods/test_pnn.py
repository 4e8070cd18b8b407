"""Progressive neural networks: the columns, their laterals, what a later task may change (nothing
of an earlier column), and the backbones they can be built from."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import PNN
from sylvan.models import MLP, ResNet18, SmallCNN, with_input_normalization
from sylvan.models.progressive import ProgressiveNetwork, column_of
from sylvan.settings import MultiTaskSetting, TaskIncrementalSetting

DIGITS = dict(dataset="digits", nb_tasks=3, epochs=2, batch_size=16, progress_bar=False)


BACKBONES = {
    "mlp": lambda: MLP((1, 6, 6), 4, hidden_sizes=(16, 12)),
    "cnn": lambda: SmallCNN((1, 6, 6), 4),
}


def network(columns: int = 3, backbone: str = "mlp", seed: int = 0) -> ProgressiveNetwork:
    torch.manual_seed(seed)
    return ProgressiveNetwork(BACKBONES[backbone], columns)


def inputs(n: int) -> torch.Tensor:
    return torch.rand(n, 1, 6, 6)


def first_layer(net: ProgressiveNetwork, k: int) -> torch.nn.Module:
    return net.columns[k].units[0].layer


def test_a_column_is_read_from_mlps_and_cnns_and_other_backbones_are_refused():
    normalization, column = column_of(MLP((1, 28, 28), 10, hidden_sizes=(400, 400)))
    assert normalization is None and [type(m) for m in column.stem] == [torch.nn.Flatten]
    assert [(u.layer.in_features, u.layer.out_features) for u in column.units] == [(784, 400), (400, 400), (400, 10)]
    _, column = column_of(SmallCNN((3, 8, 8), 5))
    assert [type(u.layer).__name__ for u in column.units] == ["Conv2d", "Conv2d", "Linear", "Linear"]
    with pytest.raises(ConfigurationError, match="ResNet18 has a BatchNorm2d"):
        column_of(ResNet18((3, 8, 8), 5, width=4))
    other = MLP((1, 3, 3), 4)
    other.features[2] = torch.nn.LayerNorm(100)
    with pytest.raises(ConfigurationError, match="MLP has a LayerNorm"):
        column_of(other)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_each_sample_goes_through_its_task_column(backbone):
    net = network(backbone=backbone)
    x = inputs(5)
    labels = torch.tensor([0, 2, 1, 2, 0])
    mixed = net(x, labels)
    for task in range(3):
        alone = net(x, torch.full((5,), task))
        assert torch.allclose(mixed[labels == task], alone[labels == task])
    assert not torch.allclose(net(x, torch.zeros(5, dtype=torch.long)), net(x, torch.ones(5, dtype=torch.long)))
    with pytest.raises(ValueError, match="task label"):
        net(x)
    with pytest.raises(ValueError, match="task label 3 has no column"):
        net(x, torch.tensor([0, 1, 3, 0, 0]))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_laterals_feed_a_later_column_without_training_the_earlier_ones(backbone):
    net = network(backbone=backbone)
    x = inputs(4)
    later = torch.full((4,), 2)
    before = net(x, later).detach()
    with torch.no_grad():
        first_layer(net, 0).weight.add_(0.5)  # column 0's first layer reaches column 2 through the laterals
    assert not torch.allclose(net(x, later), before)

    F.cross_entropy(net(x, later), torch.tensor([0, 1, 2, 3])).backward()
    for k in (0, 1):
        assert all(p.grad is None for p in net.columns[k].parameters())
    assert all(p.grad is not None for p in net.column_parameters(2))
    assert all(p.grad is None for p in net.laterals[0].parameters())  # column 1's adapters
    assert net.laterals[1][0].alpha.grad is not None


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_in_a_mixed_batch_a_later_task_s_loss_does_not_reach_an_earlier_column(backbone):
    """On `multi_task` every batch mixes tasks; each column still trains on its own task only."""
    net = network(backbone=backbone)
    x, labels = inputs(8), torch.tensor([0, 0, 2, 2, 0, 2, 0, 2])
    out = net(x, labels)
    F.cross_entropy(out[labels == 2], torch.tensor([1, 3, 0, 2])).backward()  # the loss of task 2's samples only
    for k in (0, 1):
        assert all(p.grad is None or not p.grad.any() for p in net.columns[k].parameters())
    assert all(p.grad is not None and p.grad.any() for p in net.columns[2].parameters())


def test_a_batch_computes_no_column_past_its_last_task_and_no_graph_for_lateral_only_columns():
    net = network(columns=4)
    calls: dict[int, bool] = {}

    def recorder(k: int):
        return lambda module, args, out: calls.__setitem__(k, out.requires_grad)

    for k in range(4):
        first_layer(net, k).register_forward_hook(recorder(k))
    net(inputs(3), torch.tensor([1, 2, 2]))
    assert calls == {0: False, 1: True, 2: True}


def test_input_normalization_of_the_backbone_comes_first():
    mean, std = (0.3,), (0.2,)
    torch.manual_seed(0)
    normalized = ProgressiveNetwork(lambda: with_input_normalization(MLP((1, 6, 6), 4), mean, std), 2)
    plain = copy.deepcopy(normalized)
    plain.normalization = None
    x, labels = inputs(6), torch.tensor([0, 1, 0, 1, 1, 0])
    assert torch.allclose(normalized(x, labels), plain((x - 0.3) / 0.2, labels))


class RecordingPNN(PNN):
    """`pnn` that keeps a copy of its network at the end of every task."""

    def on_task_end(self, task_id):
        super().on_task_end(task_id)
        self.snapshots = [*getattr(self, "snapshots", []), copy.deepcopy(self.model.state_dict())]


@pytest.mark.parametrize("options", [
    dict(optimizer="sgd", momentum=0.9, weight_decay=1e-3),
    dict(optimizer="adam", lr=1e-3, weight_decay=1e-3),
    dict(backbone="cnn", momentum=0.9),
])
def test_a_finished_task_column_never_changes_and_its_accuracy_stays(options):
    method = RecordingPNN(**options)
    results = TaskIncrementalSetting(**DIGITS).apply(method)
    first, *_, last = method.snapshots
    backbone = SmallCNN if options.get("backbone") == "cnn" else MLP
    initial = ProgressiveNetwork(lambda: backbone((1, 8, 8), 10), 3).state_dict()  # all columns from the start

    def column(state, k):
        return {name: value for name, value in state.items() if name.startswith(f"columns.{k}.")}

    for name, value in column(first, 0).items():
        assert torch.equal(value, last[name]), f"{name} changed after task 0"
    for name, value in column(method.snapshots[1], 1).items():
        assert torch.equal(value, last[name]), f"{name} changed after task 1"
        assert not torch.equal(value, first[name]), f"{name} did not train in task 1"
    assert set(first) == set(initial)
    matrix = results.accuracy_matrix
    for task in range(3):  # every task keeps the accuracy it had when it ended: no forgetting
        assert all(matrix[later][task] == matrix[task][task] for later in range(task, 3))
    assert min(matrix[-1]) > 0.8  # and each column learned its task


def test_multi_task_trains_every_column_on_its_own_task():
    method = PNN()
    results = MultiTaskSetting(**DIGITS).apply(method)
    assert min(results.accuracy_matrix[-1]) > 0.9


def test_pnn_is_refused_a_backbone_it_cannot_grow_before_the_run():
    with pytest.raises(ConfigurationError, match="ResNet18 has a BatchNorm2d"):
        PNN(backbone="resnet18_reduced").validate_for(TaskIncrementalSetting(**DIGITS))
    PNN(backbone="mlp_400").validate_for(TaskIncrementalSetting(**DIGITS))
    PNN(backbone="cnn").validate_for(TaskIncrementalSetting(**DIGITS))
