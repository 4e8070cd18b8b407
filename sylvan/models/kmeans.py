"""k-means clustering of feature vectors (Lloyd's iterations from a k-means++ start), the gater of a
hard mixture of experts: each input goes to the expert of its nearest prototype. Deterministic
for a given generator, so that every data-parallel worker, clustering the same features, finds
the same prototypes."""

from __future__ import annotations

import torch

DISTANCE_BATCH = 4096  # samples whose distances to every prototype are taken at once


def nearest(features: torch.Tensor, prototypes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of `features`' nearest prototype (its index) and the Euclidean distance to it."""
    indices, distances = [], []
    for chunk in features.split(DISTANCE_BATCH):
        distance, index = torch.cdist(chunk, prototypes).min(1)
        indices.append(index)
        distances.append(distance)
    return torch.cat(indices), torch.cat(distances)


def kmeans(features: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 50) -> torch.Tensor:
    """`k` prototypes of `features` (n, d) (at most n): k-means++ seeding (each next seed drawn
    with probability proportional to its squared distance to the seeds so far), then Lloyd's
    iterations until no assignment changes or `iterations`; a prototype left without samples
    keeps its place."""
    k = min(k, len(features))
    first = int(torch.randint(len(features), (1,), generator=generator))
    prototypes = features[first:first + 1]
    squared = torch.cdist(features, prototypes).squeeze(1).square()
    for _ in range(1, k):
        total = float(squared.sum())
        if total == 0:  # every sample sits on a seed: the others are duplicates
            chosen = int(torch.randint(len(features), (1,), generator=generator))
        else:
            chosen = int(torch.multinomial((squared / total).cpu(), 1, generator=generator))
        prototypes = torch.cat([prototypes, features[chosen:chosen + 1]])
        squared = torch.minimum(squared, torch.cdist(features, features[chosen:chosen + 1]).squeeze(1).square())
    assignment = None
    for _ in range(iterations):
        index, _ = nearest(features, prototypes)
        if assignment is not None and torch.equal(index, assignment):
            break
        assignment = index
        sums = torch.zeros_like(prototypes).index_add_(0, index, features)
        counts = torch.bincount(index, minlength=len(prototypes)).unsqueeze(1)
        prototypes = torch.where(counts > 0, sums / counts.clamp(min=1), prototypes)
    return prototypes


def running_means(prototypes: torch.Tensor, held: torch.Tensor, features: torch.Tensor,
                  assignment: torch.Tensor) -> torch.Tensor:
    """`prototypes`, each the mean of the `held[k]` samples it stood for and of the rows of
    `features` now assigned to it (`assignment`); a prototype assigned none stays."""
    counts = torch.bincount(assignment, minlength=len(prototypes)).unsqueeze(1)
    sums = torch.zeros_like(prototypes).index_add_(0, assignment, features)
    held = held.to(prototypes).unsqueeze(1)
    return torch.where(counts > 0, (held * prototypes + sums) / (held + counts).clamp(min=1), prototypes)
