"""Selective fine-tuning (NEVIS'22's dynamic learner): the k-NN prior, the network each task
starts from, a network per task chosen by the task label, and its growth."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods import selective_finetune as module
from sylvan.methods.parts.knn_transfer import HoldoutSplit, holdout_split, knn_accuracy, knn_predictions
from sylvan.methods.selective_finetune import FRESH, SelectiveFinetune
from sylvan.models import MLP
from sylvan.settings import ClassIncrementalSetting, TaskIncrementalSetting

DIGITS = dict(dataset="digits", nb_tasks=3, epochs=2, batch_size=16, progress_bar=False)


def test_knn_votes_among_the_k_nearest_and_a_tie_goes_to_the_smallest_class():
    fitted = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    labels = torch.tensor([2, 2, 1, 0, 0])
    queries = torch.tensor([[0.4], [10.6], [5.9]])
    assert knn_predictions(fitted, labels, queries, k=1).tolist() == [2, 0, 1]
    # k = 3 around 5.9: one vote each for classes 1 (2.0), 0 (10.0) and 2 (1.0): the tie goes to 0
    assert knn_predictions(fitted, labels, queries, k=3).tolist() == [2, 0, 0]
    # k = 4 around 5.9: neighbours 2.0 (class 1), 10.0, 11.0 (class 0), 1.0 (class 2): class 0 wins
    assert knn_predictions(fitted, labels, queries, k=4).tolist() == [2, 0, 0]
    # k beyond the fitted samples is cut to them: two votes each for classes 0 and 2, a tie
    assert knn_predictions(fitted[[0, 1, 3, 4]], labels[[0, 1, 3, 4]], queries, k=9).tolist() == [0, 0, 0]


def test_the_holdout_split_is_disjoint_and_capped():
    split = holdout_split(100, 0.2, fit_at_most=50, score_at_most=15, generator=torch.Generator().manual_seed(0))
    assert (len(split.fit), len(split.score)) == (50, 15)
    assert not set(split.fit.tolist()) & set(split.score.tolist())
    assert len(holdout_split(3, 0.01, 10, 10, torch.Generator()).score) == 1  # at least one scored
    with pytest.raises(ValueError, match="at least 2 samples"):
        holdout_split(1, 0.5, 10, 10, torch.Generator())


class Features(nn.Module):
    """A network whose features are its inputs' first column, times `scale`."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * self.scale


def test_knn_accuracy_is_high_on_features_that_separate_the_classes_and_chance_on_constant_ones():
    torch.manual_seed(0)
    y = torch.arange(200) % 2
    x = torch.stack([y.float() * 5 + torch.randn(200) * 0.1, torch.randn(200)], 1)
    split = HoldoutSplit(fit=torch.arange(0, 150), score=torch.arange(150, 200))
    assert knn_accuracy(Features(1.0), x, y, split, k=5) == 1.0
    assert knn_accuracy(Features(0.0), x, y, split, k=5) == 0.5  # every distance 0: one class for all


class RecordingFinetune(SelectiveFinetune):
    """Keeps the weights each task's network starts its fine-tuning from."""

    def train_learner(self, *args, **kwargs) -> None:
        self.starts = [*getattr(self, "starts", []), {k: v.clone() for k, v in self.learner.model.state_dict().items()}]
        super().train_learner(*args, **kwargs)


def test_a_task_starts_from_the_network_the_prior_ranks_first(monkeypatch):
    # the prior ranks task 0's network first for task 1, and the fresh one first for task 2
    ranked = iter([0.5, 0.9, 0.2, 0.1, 0.3, 0.8])  # task 0: fresh; task 1: [net 0, fresh]; task 2: [0, 1, fresh]
    monkeypatch.setattr(module, "knn_accuracy", lambda *args: next(ranked))
    method = RecordingFinetune()
    TaskIncrementalSetting(**DIGITS).apply(method)
    assert method.sources == [FRESH, 0, FRESH]
    assert method.transfer == [[0.5], [0.9, 0.2], [0.1, 0.3, 0.8]]
    after_task_0 = method.starts[1]  # task 1 started from task 0's network as it ended
    assert all(torch.equal(after_task_0[k], v) for k, v in method.task_models[0].state_dict().items())
    assert not all(torch.equal(method.starts[2][k], v) for k, v in method.task_models[1].state_dict().items())


def test_each_network_learns_among_its_tasks_classes_only():
    method = RecordingFinetune()
    setting = TaskIncrementalSetting(**DIGITS)
    setting.apply(method)
    for start, network, data in zip(method.starts, method.task_models, setting.prepare_tasks(), strict=True):
        rows = network.classifier.weight
        own = torch.tensor(data.classes)
        others = torch.ones(len(rows), dtype=torch.bool)
        others[own] = False
        assert torch.equal(rows[others], start["classifier.weight"][others])  # no other task's class trained
        assert not torch.equal(rows[own], start["classifier.weight"][own])


def test_a_network_per_task_answers_its_task_and_never_changes_after_it():
    method = SelectiveFinetune()
    results = TaskIncrementalSetting(**DIGITS).apply(method)
    assert len(method.task_models) == 3 and method.task_models[-1] is method.learner.model
    matrix = results.accuracy_matrix
    for task in range(3):  # each task's accuracy stays what it was when its network was trained
        assert all(matrix[later][task] == matrix[task][task] for later in range(task, 3))
    assert min(matrix[-1]) > 0.8
    one = sum(p.numel() for p in MLP((1, 8, 8), 10).parameters())
    assert results.cost()["per_stage"]["parameters"] == [one, 2 * one, 3 * one]
    # the task label picks the network: another task's network does not move task 0's scores
    x = torch.rand(6, 1, 8, 8)
    zeros = torch.zeros(6, dtype=torch.long)
    before = method.predict(x, zeros)
    with torch.no_grad():
        for p in method.task_models[1].parameters():
            p.zero_()
    assert torch.equal(method.predict(x, zeros), before)
    assert method.predict(x, torch.full((6,), 2)).abs().sum() > 0


def test_a_task_not_trained_on_yet_scores_zero_and_no_task_label_is_refused():
    method = SelectiveFinetune()
    method.configure(TaskIncrementalSetting(**DIGITS))
    assert torch.equal(method.predict(torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)), torch.zeros(4, 10))
    with pytest.raises(ValueError, match="task label of every sample"):
        method.predict(torch.rand(4, 1, 8, 8))


def test_it_applies_only_where_task_labels_come_at_test_time_and_its_options_are_checked():
    assert SelectiveFinetune.is_applicable(TaskIncrementalSetting)
    assert not SelectiveFinetune.is_applicable(ClassIncrementalSetting)
    for options in (dict(knn_neighbours=0), dict(knn_holdout=1.0), dict(knn_fit_samples=0)):
        with pytest.raises(ConfigurationError):
            SelectiveFinetune(**options)


def test_dataset_rows_reads_the_rows_asked_for_from_every_kind_of_dataset():
    from torch.utils.data import Dataset, TensorDataset

    from sylvan.methods.core.supervised import dataset_rows, dataset_tensors
    from sylvan.minibatches import GatheringConcatDataset, GatheringTensorDataset

    pixels = torch.randint(0, 256, (30, 1, 4, 4), dtype=torch.uint8)
    labels = torch.arange(30) % 3

    class SampleBySample(Dataset):
        def __len__(self) -> int:
            return 30

        def __getitem__(self, i: int):
            return pixels[i], labels[i]

    rows = torch.tensor([29, 3, 17, 0, 3])
    expected = tuple(column[rows] for column in dataset_tensors(TensorDataset(pixels, labels)))
    halves = [GatheringTensorDataset(pixels[:12], labels[:12]), GatheringTensorDataset(pixels[12:], labels[12:])]
    for dataset in (TensorDataset(pixels, labels), GatheringTensorDataset(pixels, labels),
                    GatheringConcatDataset(halves), SampleBySample()):
        got = dataset_rows(dataset, rows)
        assert all(torch.equal(a, b) for a, b in zip(got, expected)), type(dataset).__name__
        assert got[0].dtype == torch.float32  # pixels made float, as minibatches bring them
