"""KNN Shapley values against their definition, and the choices ASER makes with them."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sylvan.buffers.shapley import (
    knn_shapley_values,
    per_class_positions,
    replacement_slots,
    replay_scores,
    update_sets,
)


def knn_utility(distances: list[float], labels: list[int], label: int, members: tuple[int, ...], k: int) -> float:
    """The accuracy of a K-nearest-neighbour vote over `members` on one evaluation sample."""
    nearest = sorted(members, key=lambda i: distances[i])[:k]
    return sum(labels[i] == label for i in nearest) / k


def shapley_by_definition(distances: list[float], labels: list[int], label: int, k: int) -> list[float]:
    """Each candidate's Shapley value: its marginal contribution averaged over every order."""
    count = len(labels)
    values = [0.0] * count
    for i in range(count):
        others = [j for j in range(count) if j != i]
        for size in range(count):
            weight = 1 / (count * math.comb(count - 1, size))
            for subset in itertools.combinations(others, size):
                gain = knn_utility(distances, labels, label, subset + (i,), k) - knn_utility(
                    distances, labels, label, subset, k
                )
                values[i] += weight * gain
    return values


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_knn_shapley_values_match_the_definition(k):
    generator = torch.Generator().manual_seed(k)
    candidates, evaluation = torch.randn(7, 3, generator=generator), torch.randn(4, 3, generator=generator)
    candidate_labels = torch.randint(0, 3, (7,), generator=generator)
    eval_labels = torch.randint(0, 3, (4,), generator=generator)
    values = knn_shapley_values(evaluation, eval_labels, candidates, candidate_labels, k)
    assert values.shape == (4, 7)
    for row in range(4):
        distances = torch.cdist(evaluation[row : row + 1], candidates)[0].tolist()
        expected = shapley_by_definition(distances, candidate_labels.tolist(), int(eval_labels[row]), k)
        assert values[row].tolist() == pytest.approx(expected, abs=1e-6)
        # efficiency: the values add up to the utility of every candidate together
        assert float(values[row].sum()) == pytest.approx(
            knn_utility(distances, candidate_labels.tolist(), int(eval_labels[row]), tuple(range(7)), k), abs=1e-6
        )


def test_knn_shapley_values_of_nothing_are_empty():
    assert knn_shapley_values(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), torch.zeros(0, 2),
                              torch.zeros(0, dtype=torch.long), 5).shape == (3, 0)


def test_per_class_positions_take_the_first_of_each_class_in_order():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 1])
    assert sorted(per_class_positions(labels, 2).tolist()) == [0, 1, 2, 3, 4]
    order = torch.tensor([6, 5, 4, 3, 2, 1, 0])
    assert sorted(per_class_positions(labels, 1, order).tolist()) == [3, 5, 6]


def test_update_sets_judge_by_class_and_compete_with_other_stored_samples():
    generator = torch.Generator().manual_seed(0)
    stored = torch.tensor([0] * 10 + [1] * 10 + [2] * 2)
    new = torch.tensor([0, 3, 3, 1])  # class 3: absent from the memory, so under any threshold above 0
    judges, competing, new_judges = update_sets(stored, new, 22, 4, 2, generator)
    assert sorted(stored[judges].tolist()) == [0, 0, 1, 1, 2, 2]
    assert len(competing) == 8 and not set(competing.tolist()) & set(judges.tolist())
    assert new_judges.tolist() == [False, True, True, False]


def test_replacement_slots_let_the_best_new_samples_take_the_worst_stored_slots():
    # competing stored samples in slots 7, 3, 9 (values 0.5, -1, 0.2), new samples valued 2, -3, 0.4
    values = torch.tensor([0.5, -1.0, 0.2, 2.0, -3.0, 0.4])
    slots = replacement_slots(values, torch.tensor([7, 3, 9]), 3)
    # kept: 2.0 (new 0), 0.5 (slot 7), 0.4 (new 2); out: 0.2 (slot 9), -1 (slot 3)
    assert slots.tolist() == [9, -1, 3]


def test_replay_scores_combine_cooperative_and_adversarial_values():
    adversarial = torch.tensor([[0.1, -0.4], [0.3, 0.0]])
    cooperative = torch.tensor([[0.2, 0.0], [0.6, 0.1]])
    assert replay_scores(adversarial, cooperative, "asvm").tolist() == pytest.approx([0.2, 0.25])
    assert replay_scores(adversarial, cooperative, "asv").tolist() == pytest.approx([0.5, 0.5])
    assert replay_scores(adversarial, cooperative, "neg_sv").tolist() == pytest.approx([-0.4, 0.4])
    assert replay_scores(adversarial, cooperative[:0], "asvm").tolist() == pytest.approx([-0.2, 0.2])
    with pytest.raises(ValueError, match="unknown ASER kind"):
        replay_scores(adversarial, cooperative, "nope")
