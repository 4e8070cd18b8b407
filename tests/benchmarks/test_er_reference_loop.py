"""The plain-loop GSS memory of benchmarks/er_reference_loop.py must admit samples as the DER
paper's code does, or its cross-check of sylvan's GSS figures would compare different rules."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from er_reference_loop import ReferenceGSS  # noqa: E402


def memory(capacity: int, compared: int = 4) -> ReferenceGSS:
    """A GSS memory of a two-class linear model with zero weights: every prediction is (0.5, 0.5),
    so the gradients of two samples with the same input agree when their labels do and are
    opposite when they do not."""
    net = nn.Linear(3, 2)
    nn.init.zeros_(net.weight)
    nn.init.zeros_(net.bias)
    return ReferenceGSS(net, torch.zeros(capacity, 3), torch.zeros(capacity, dtype=torch.long), compared)


def batch(label: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(size, 3), torch.full((size,), label)


def test_it_fills_its_room_scoring_each_minibatch_as_a_whole():
    np.random.seed(0)
    gss = memory(6)
    gss.add(*batch(0, 4))
    gss.add(*batch(0, 4))  # the first two fill the room, scored by the batch: aligned with what is stored
    assert gss.seen == 8 and gss.replaced == 0
    assert gss.stored_y.tolist() == [0] * 6
    assert gss.scores[:4].tolist() == pytest.approx([ReferenceGSS.FIRST_BATCH_SCORE] * 4)
    assert gss.scores[4:].tolist() == pytest.approx([2.0, 2.0])


def test_a_full_memory_turns_away_a_minibatch_aligned_with_a_stored_sample():
    np.random.seed(0)
    gss = memory(4)
    gss.add(*batch(0, 4))
    for _ in range(50):  # were they let in, each would replace a sample with probability 0.1 / 2.1
        gss.add(*batch(0, 4))
    assert gss.replaced == 0 and gss.batches_admitted == 0
    assert gss.stored_y.tolist() == [0] * 4


def test_a_full_memory_admits_a_minibatch_opposed_to_every_compared_sample():
    np.random.seed(0)
    gss = memory(4)
    gss.add(*batch(0, 4))
    gss.add(*batch(1, 2))  # opposed: c = 0, and each sample's own score 0 makes its replacement certain
    assert gss.batches_admitted == 1 and gss.replaced == 2
    assert sorted(gss.stored_y.tolist()) == [0, 0, 1, 1]
    assert sorted(gss.scores.tolist()) == pytest.approx([0.0, 0.0, 0.1, 0.1], abs=1e-6)
