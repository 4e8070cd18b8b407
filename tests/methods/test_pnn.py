"""Progressive neural networks: the columns, their laterals, what a later task may change (nothing
of an earlier column), and the backbones they can be built from."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import PNN
from sylvan.models import BACKBONES as BACKBONES_BY_NAME
from sylvan.models import MLP, ResNet18, SmallCNN, with_input_normalization
from sylvan.models.progressive import ProgressiveNetwork, column_of
from sylvan.settings import MultiTaskSetting, TaskIncrementalSetting

DIGITS = dict(dataset="digits", nb_tasks=3, epochs=2, batch_size=16, progress_bar=False)


BACKBONES = {
    "mlp": lambda: MLP((1, 6, 6), 4, hidden_sizes=(16, 12)),
    "cnn": lambda: SmallCNN((1, 6, 6), 4),
    "resnet": lambda: ResNet18((1, 6, 6), 4, width=4),
}


def network(columns: int = 3, backbone: str = "mlp", seed: int = 0) -> ProgressiveNetwork:
    torch.manual_seed(seed)
    return ProgressiveNetwork(BACKBONES[backbone], columns)


def inputs(n: int) -> torch.Tensor:
    return torch.rand(n, 1, 6, 6)


def first_layer(net: ProgressiveNetwork, k: int) -> torch.nn.Module:
    return net.columns[k].units[0].layer


def test_a_column_is_read_from_mlps_cnns_and_resnets_and_other_backbones_are_refused():
    normalization, column = column_of(MLP((1, 28, 28), 10, hidden_sizes=(400, 400)))
    assert normalization is None and [type(m) for m in column.stem] == [torch.nn.Flatten]
    assert [(u.layer.in_features, u.layer.out_features) for u in column.units] == [(784, 400), (400, 400), (400, 10)]
    _, column = column_of(SmallCNN((3, 8, 8), 5))
    assert [type(u.layer).__name__ for u in column.units] == ["Conv2d", "Conv2d", "Linear", "Linear"]
    _, column = column_of(ResNet18((3, 8, 8), 5, width=4))
    assert [type(u.layer).__name__ for u in column.units] == ["Conv2d", *["BasicBlock"] * 8, "Linear"]
    assert [type(m).__name__ for m in column.units[0].after] == ["BatchNorm2d", "ReLU"]
    assert [type(m).__name__ for m in column.units[8].after] == ["ReLU", "AdaptiveAvgPool2d", "Flatten"]
    other = MLP((1, 3, 3), 4)
    other.features[2] = torch.nn.LayerNorm(100)
    with pytest.raises(ConfigurationError, match="MLP has a LayerNorm"):
        column_of(other)


def test_a_resnet_column_computes_what_the_resnet_it_was_grown_from_does():
    torch.manual_seed(0)
    grown: list[torch.nn.Module] = []
    net = ProgressiveNetwork(lambda: grown.append(BACKBONES["resnet"]()) or copy.deepcopy(grown[-1]), 2)
    x = inputs(6)
    for training in (True, False):  # with batch statistics, then running ones
        net.train(training)
        assert torch.equal(net(x, torch.zeros(6, dtype=torch.long)), grown[0].train(training)(x))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_each_sample_goes_through_its_task_column(backbone):
    net = network(backbone=backbone)
    net.eval()  # in training, batch norm's batch statistics make a column's output depend on the batch
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


def test_a_column_that_only_feeds_laterals_keeps_its_batch_norm_statistics():
    net = network(backbone="resnet")
    before = copy.deepcopy(net.state_dict())
    net(inputs(8), torch.full((8,), 2))  # training mode: columns 0 and 1 only feed column 2's laterals
    after = net.state_dict()
    changed = {".".join(name.split(".")[:3 if name.startswith("feeder") else 2]) for name in before
               if not torch.equal(before[name], after[name])}
    # column 2's statistics moved, and those column 2 keeps of columns 0 and 1, not theirs
    assert changed == {"columns.2", "feeder_statistics.1.0", "feeder_statistics.1.1"}


def test_a_later_column_sees_an_earlier_one_under_statistics_of_its_own_task():
    net = network(columns=2, backbone="resnet")
    first_task, second_task = inputs(16), 5 * inputs(16)  # the second task's inputs on another scale
    for _ in range(30):
        net(first_task, torch.zeros(16, dtype=torch.long))
    kept = net.feeder_statistics[0][0]
    net.eval()
    net(second_task, torch.ones(16, dtype=torch.long))  # not trained on yet: column 0's own statistics
    stem = net.columns[0].units[0].after[0]
    assert torch.equal(kept.mean_0, stem.running_mean) and kept.batches_0 == 0
    net.train()
    for _ in range(30):
        net(second_task, torch.ones(16, dtype=torch.long))
    net.eval()
    assert kept.batches_0 == 30 and not torch.allclose(kept.mean_0, stem.running_mean)
    with torch.no_grad():  # what column 1's laterals get from column 0: normalized as in its training
        with kept.installed(net.columns[0]):
            fed = net.columns[0].units[0].after(net.columns[0].units[0].layer(second_task))
        unfed = net.columns[0].units[0].after(net.columns[0].units[0].layer(second_task))
    assert fed.mean() < unfed.mean()  # column 0's own statistics leave the larger inputs unnormalized


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
    dict(backbone="resnet18_reduced", lr=0.03, momentum=0.9, epochs=5),  # batch norm's statistics too
])
def test_a_finished_task_column_never_changes_and_its_accuracy_stays(options):
    options = dict(options)
    epochs = options.pop("epochs", DIGITS["epochs"])
    method = RecordingPNN(**options)
    results = TaskIncrementalSetting(**dict(DIGITS, epochs=epochs)).apply(method)
    first, *_, last = method.snapshots
    backbones = {"cnn": SmallCNN, "resnet18_reduced": lambda *a: ResNet18(*a, width=20)}
    backbone = backbones.get(options.get("backbone"), MLP)
    one, three = (ProgressiveNetwork(lambda: backbone((1, 8, 8), 10), n).state_dict() for n in (1, 3))

    def column(state, k):
        return {name: value for name, value in state.items() if name.startswith(f"columns.{k}.")}

    for name, value in column(first, 0).items():
        assert torch.equal(value, last[name]), f"{name} changed after task 0"
    for name, value in column(method.snapshots[1], 1).items():
        assert torch.equal(value, last[name]), f"{name} changed after task 1"
    assert set(first) == set(one) and set(last) == set(three)  # a column per task, added as it began
    matrix = results.accuracy_matrix
    for task in range(3):  # every task keeps the accuracy it had when it ended: no forgetting
        assert all(matrix[later][task] == matrix[task][task] for later in range(task, 3))
    assert min(matrix[-1]) > 0.8  # and each column learned its task


def test_a_column_is_allocated_when_its_task_begins():
    """Until its task begins, a column costs neither memory nor parameters: after task k the
    network holds k + 1 columns (and the laterals of columns 1 to k)."""
    results = TaskIncrementalSetting(**DIGITS).apply(PNN())
    parameters = results.cost()["per_stage"]["parameters"]
    columns = [sum(p.numel() for p in ProgressiveNetwork(lambda: MLP((1, 8, 8), 10), n).parameters())
               for n in (1, 2, 3)]
    assert parameters == columns


def test_multi_task_trains_every_column_on_its_own_task():
    method = PNN()
    results = MultiTaskSetting(**DIGITS).apply(method)
    assert min(results.accuracy_matrix[-1]) > 0.9


def test_pnn_is_refused_a_backbone_it_cannot_grow_before_the_run(monkeypatch):
    def layer_normed(shape, classes):
        mlp = MLP(shape, classes)
        mlp.features[2] = torch.nn.LayerNorm(100)
        return mlp

    monkeypatch.setitem(BACKBONES_BY_NAME, "layer_normed", layer_normed)
    with pytest.raises(ConfigurationError, match="MLP has a LayerNorm"):
        PNN(backbone="layer_normed").validate_for(TaskIncrementalSetting(**DIGITS))
    for backbone in ("mlp_400", "cnn", "resnet18_reduced", "resnet18"):
        PNN(backbone=backbone).validate_for(TaskIncrementalSetting(**DIGITS))
