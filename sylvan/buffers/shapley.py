"""KNN Shapley values and the choices ASER makes with them (Shim et al., "Online Class-Incremental
Continual Learning with Adversarial Shapley Value", AAAI 2021): which stored samples new ones
replace (the `aser` buffer policy) and which stored samples a step replays (the `aser` method).

The KNN Shapley value (Jia et al., "Efficient Task-Specific Data Valuation for Nearest Neighbor
Algorithms", VLDB 2019) of a candidate sample for an evaluation sample is its Shapley value in
the game whose players are the candidates and whose utility of a set S is the accuracy of a
K-nearest-neighbour vote over S on the evaluation sample, (1/K) * (the number of S's min(K, |S|)
nearest samples that share its label). It has a closed form over the candidates sorted by
distance, nearest first, a_1 .. a_N:

    s(a_N) = [y(a_N) = y] / N
    s(a_i) = s(a_(i+1)) + ([y(a_i) = y] - [y(a_(i+1)) = y]) / K * min(K, i) / i

Positive where a candidate near the evaluation sample shares its label (it helps classify it),
negative where it does not. Distances are Euclidean, between the network's features.
"""

from __future__ import annotations

import torch

ASER_KINDS = ("asvm", "asv", "neg_sv")  # how a step's replay scores its candidates (see `replay_scores`)


def knn_shapley_values(
    eval_features: torch.Tensor, eval_labels: torch.Tensor, candidate_features: torch.Tensor,
    candidate_labels: torch.Tensor, neighbours: int,
) -> torch.Tensor:
    """(evaluation samples, candidates): the KNN Shapley value of each candidate for each
    evaluation sample (see the module), with K = `neighbours`, computed for all pairs at once."""
    count = len(candidate_labels)
    if count == 0 or len(eval_labels) == 0:
        return candidate_features.new_zeros((len(eval_labels), count))
    distances = torch.cdist(eval_features.float(), candidate_features.float())
    order = distances.argsort(dim=1, stable=True)  # nearest first
    matches = (candidate_labels[order] == eval_labels.unsqueeze(1)).float()
    following = torch.cat([matches[:, 1:], matches.new_zeros((len(eval_labels), 1))], dim=1)
    rank = torch.arange(1, count + 1, dtype=torch.float32, device=matches.device)
    factor = rank.clamp(max=neighbours) / (rank * neighbours)
    factor[-1] = 1.0 / count  # the farthest candidate: the recursion's start
    values_by_rank = ((matches - following) * factor).flip(1).cumsum(1).flip(1)
    return torch.empty_like(values_by_rank).scatter_(1, order, values_by_rank)


def per_class_positions(labels: torch.Tensor, per_class: int, order: torch.Tensor | None = None) -> torch.Tensor:
    """Positions in `labels` (a CPU tensor) of up to `per_class` samples of each class present:
    the first of each class in `order` (a permutation of the positions; their own order
    without it), so a random order gives a class-balanced random subsample, ASER's."""
    order = torch.arange(len(labels)) if order is None else order
    by_class = order[labels[order].argsort(stable=True)]  # grouped by class, in `order` within each
    grouped = labels[by_class]
    starts = torch.ones_like(grouped, dtype=torch.bool)
    starts[1:] = grouped[1:] != grouped[:-1]
    first_of_class = torch.cummax(torch.where(starts, torch.arange(len(grouped)), 0), dim=0).values
    rank_in_class = torch.arange(len(grouped)) - first_of_class
    return by_class[rank_in_class < per_class]


def positions_left(count: int, taken: torch.Tensor) -> torch.Tensor:
    """The positions in range(`count`) that are not in `taken`, in order: the samples a first
    pick left for a second (the judges besides the competitors, or the other way round)."""
    left = torch.ones(count, dtype=torch.bool)
    left[taken] = False
    return left.nonzero().squeeze(1)


def update_sets(
    stored_labels: torch.Tensor, new_labels: torch.Tensor, capacity: int, num_classes: int, per_class: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Who judges and who competes in ASER's memory update, from the labels alone (CPU tensors):
    (the stored samples that judge: `per_class` of each stored class at random; the stored
    samples that compete with the new ones: `per_class` x `num_classes` others at random; the
    new samples that judge too, a mask). A new sample judges when its class holds less than a
    share of the memory drawn uniformly in [0, 1 / num_classes) at each batch: a class the
    memory lacks or nearly lacks (one that has just appeared) is then its own nearest
    neighbour, which lifts its value enough to enter."""
    stored = len(stored_labels)
    judges = per_class_positions(stored_labels, per_class, torch.randperm(stored, generator=generator))
    others = positions_left(stored, judges)
    competing = others[torch.randperm(len(others), generator=generator)[: per_class * num_classes]]
    threshold = float(torch.rand((), generator=generator, dtype=torch.float64)) / num_classes
    shares = torch.bincount(stored_labels, minlength=num_classes).double() / capacity
    new_judges = shares[new_labels] < threshold
    return judges, competing, new_judges


def replacement_slots(values: torch.Tensor, competing_slots: torch.Tensor, new_count: int) -> torch.Tensor:
    """The slot each new sample takes (-1: none), from the summed Shapley `values` of the
    competing stored samples followed by the new ones: ranked by value, the top
    len(competing_slots) stay; each new sample among them takes the slot of a stored one that
    is not, the best new one that of the best stored one left out."""
    kept = len(competing_slots)
    ranking = values.cpu().argsort(descending=True, stable=True)
    entering = ranking[:kept][ranking[:kept] >= kept] - kept
    leaving = competing_slots[ranking[kept:][ranking[kept:] < kept]]
    slots = torch.full((new_count,), -1, dtype=torch.long)
    slots[entering] = leaving
    return slots


def replay_scores(adversarial: torch.Tensor, cooperative: torch.Tensor, kind: str) -> torch.Tensor:
    """ASER's score of each replay candidate, from its Shapley values for the minibatch's
    samples (`adversarial`: evaluation samples x candidates) and for other stored samples
    (`cooperative`): high where the candidate helps classify the memory and is pulled apart
    from the new samples' classes, which are its nearest neighbours in features.
    "asvm": mean cooperative minus mean adversarial value; "asv": their extremes (largest
    cooperative, smallest adversarial); "neg_sv": minus the summed adversarial values alone.
    Without cooperative samples, the cooperative term is 0."""
    if kind == "neg_sv":
        return -adversarial.sum(0)
    if kind not in ("asvm", "asv"):
        raise ValueError(f"unknown ASER kind {kind!r}; valid kinds: {', '.join(ASER_KINDS)}")
    empty = len(cooperative) == 0
    if kind == "asvm":
        return (0.0 if empty else cooperative.mean(0)) - adversarial.mean(0)
    return (0.0 if empty else cooperative.max(0).values) - adversarial.min(0).values
