"""A linear probe trained from zero over a frozen network's features, on class-balanced draws of
stored samples (co2l's classifier, trained at the end of each task on its buffer)."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from sylvan.methods.core.supervised import evaluating
from sylvan.minibatches import float_inputs

PROBE_MILESTONES = (0.6, 0.75, 0.9)  # fractions of the probe's epochs after which its lr drops
PROBE_GAMMA = 0.2  # ... by this factor
PROBE_MOMENTUM = 0.9


class ProbeSchedule(NamedTuple):
    epochs: int  # passes of class-balanced draws over the samples
    lr: float  # the learning rate it starts from (SGD with momentum, dropped at `PROBE_MILESTONES`)
    batch_size: int  # samples per step


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer whose weights and bias are all zero: every class scores alike."""
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def class_balanced_draw(labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` positions in `labels` (a CPU tensor), drawn with replacement so that each class
    present is drawn as often as any other in expectation: each sample's weight is one over its
    class's size (the authors' `WeightedRandomSampler`)."""
    weights = 1.0 / torch.bincount(labels).double()[labels]
    return torch.multinomial(weights, count, replacement=True, generator=generator)


def trained_probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, schedule: ProbeSchedule,
                  generator: torch.Generator, views: Callable[[torch.Tensor], torch.Tensor] | None) -> nn.Linear:
    """A probe from zero over `model.features`, trained on (`x`, `y`) (inputs maybe uint8
    pixels, on the model's device), the model in evaluation mode and frozen; each drawn sample
    seen through a fresh `views` of it where given."""
    device = x.device
    probe, optimizer, steps = untrained_probe(model.feature_dim, num_classes, schedule, device)
    labels = y.cpu()
    with evaluating(model) as evaluated:

        def features_of(rows: torch.Tensor) -> torch.Tensor:
            inputs = float_inputs(x[rows])
            with torch.no_grad():
                return evaluated.features(inputs if views is None else views(inputs)).flatten(1).float()

        # without views a sample's features are the same at every draw: one pass computes them all
        every = torch.arange(len(y), device=device).split(schedule.batch_size)
        fixed = None if views is not None else torch.cat([features_of(rows) for rows in every])
        with torch.enable_grad():
            for _ in range(schedule.epochs):
                drawn = class_balanced_draw(labels, len(labels), generator)
                for rows in drawn.to(device).split(schedule.batch_size):
                    features = features_of(rows) if fixed is None else fixed[rows]
                    loss = F.cross_entropy(probe(features), y[rows])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                steps.step()
    return probe


def untrained_probe(width: int, num_classes: int, schedule: ProbeSchedule,
                    device: torch.device) -> tuple[nn.Linear, torch.optim.SGD, Any]:
    """A probe at zero on `device`, its optimizer and its step schedule over the epochs."""
    probe = zero_linear(width, num_classes).to(device)
    optimizer = torch.optim.SGD(probe.parameters(), lr=schedule.lr, momentum=PROBE_MOMENTUM)
    milestones = sorted({max(1, round(f * schedule.epochs)) for f in PROBE_MILESTONES})
    return probe, optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=PROBE_GAMMA)
