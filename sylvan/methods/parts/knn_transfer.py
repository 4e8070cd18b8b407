"""How well a frozen network's features suit a new task: the accuracy of a k-nearest-neighbour
classifier on them, fitted on a slice of the task's training samples and scored on held-out
others. Modular methods use it as their prior over what to start a task from: selective
fine-tuning (NEVIS'22's "dynamic" learner) picks the stored network it transfers from by it, MNTDP
the past task whose modules it reuses; MNTDP then judges its candidates by their accuracy on
held-out samples (`accuracy_among_classes`)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from sylvan.methods.core.supervised import evaluating
from sylvan.minibatches import float_inputs

FEATURE_BATCH = 256  # samples whose features are computed at once
DISTANCE_BATCH = 1024  # scored samples whose distances to every fitted sample are taken at once


class HoldoutSplit(NamedTuple):
    """Positions of a task's training samples: those the k-NN is fitted on and those it is scored on."""

    fit: torch.Tensor
    score: torch.Tensor


def holdout_split(samples: int, holdout: float, fit_at_most: int, score_at_most: int,
                  generator: torch.Generator) -> HoldoutSplit:
    """A random `holdout` share of `samples` positions (at least one, at most `score_at_most`)
    to score on, and of the others at most `fit_at_most` to fit on."""
    if samples < 2:
        raise ValueError(f"a k-NN needs at least 2 samples to be fitted and scored, got {samples}")
    order = torch.randperm(samples, generator=generator)
    scored = min(max(1, round(holdout * samples)), samples - 1)
    return HoldoutSplit(fit=order[scored:][:fit_at_most], score=order[:scored][:score_at_most])


def frozen_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`model.features` of `x` (inputs maybe uint8 pixels), flattened, in float32, computed on the
    model's device in evaluation mode without gradients, returned on that device."""
    device = next(model.parameters()).device
    with evaluating(model) as evaluated:
        return torch.cat([evaluated.features(float_inputs(chunk.to(device))).flatten(1).float()
                          for chunk in x.split(FEATURE_BATCH)])


def knn_predictions(fitted: torch.Tensor, fitted_labels: torch.Tensor, features: torch.Tensor, k: int) -> torch.Tensor:
    """The class each row of `features` gets by a vote of its `k` nearest rows of `fitted`
    (Euclidean distance, one vote each, a tie going to the smallest class, as scikit-learn's
    `KNeighborsClassifier` with its defaults votes)."""
    k = min(k, len(fitted))
    classes = int(fitted_labels.max()) + 1
    predicted = []
    for chunk in features.split(DISTANCE_BATCH):
        nearest = torch.cdist(chunk, fitted).topk(k, largest=False).indices
        votes = torch.zeros(len(chunk), classes, device=chunk.device).scatter_add_(
            1, fitted_labels[nearest], torch.ones(nearest.shape, device=chunk.device))
        predicted.append(votes.argmax(1))
    return torch.cat(predicted)


def knn_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, split: HoldoutSplit, k: int) -> float:
    """The accuracy, on the samples `split.score` of (`x`, `y`), of a `k`-NN classifier over
    `model`'s frozen features fitted on the samples `split.fit`."""
    fitted = frozen_features(model, x[split.fit])
    labels = y[split.fit].to(fitted.device)
    predicted = knn_predictions(fitted, labels, frozen_features(model, x[split.score]), k)
    return float((predicted.cpu() == y[split.score].cpu()).float().mean())


def accuracy_among_classes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """`model`'s accuracy on (`x`, `y`), each sample's prediction taken among the classes of `y`
    alone (a task's, in one output space of every task's classes): how a trained candidate is
    judged on a task's held-out samples."""
    device = next(model.parameters()).device
    classes = y.unique()
    with evaluating(model) as evaluated:
        scores = torch.cat([evaluated(float_inputs(chunk.to(device))) for chunk in x.split(FEATURE_BATCH)])
    return float((classes[scores[:, classes.to(device)].argmax(1).cpu()] == y.cpu()).float().mean())
