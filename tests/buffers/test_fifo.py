"""Property tests of the first-in-first-out policy (DQN's replay memory)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sylvan.buffers import FIFOBuffer, make_buffer
from tests.buffers.test_reservoir import stream_batches


@settings(max_examples=80, deadline=None)
@given(capacity=st.integers(1, 40), sizes=st.lists(st.integers(0, 60), max_size=12))
def test_holds_exactly_the_most_recent_samples(capacity, sizes):
    buffer = FIFOBuffer(capacity)
    for x, y in stream_batches(sizes):
        buffer.add(x=x, y=y)
        total = buffer.seen
        assert len(buffer) == min(capacity, total)
        if not total:
            continue
        stored = buffer.get_all()
        assert sorted(stored["y"].tolist()) == list(range(max(0, total - capacity), total))
        assert torch.equal(stored["x"][:, 0].long(), stored["y"]), "fields of a slot come from one sample"
    assert buffer.seen == sum(sizes)


def test_fails_the_uniform_inclusion_test_that_reservoir_passes():
    """The chi-square test of reservoir's uniform inclusion must tell a FIFO memory apart: all of
    its mass lies on the end of the stream."""
    counts = np.zeros(200)
    for seed in range(50):
        buffer = make_buffer("fifo", 20, seed=seed)
        for x, y in stream_batches([7] * 28 + [4]):
            buffer.add(x=x, y=y)
        counts[buffer.get_all()["y"].numpy()] += 1
    blocks = counts.reshape(10, -1).sum(axis=1)
    _, p_value = stats.chisquare(blocks)
    assert p_value < 1e-6 and blocks[-1] == counts.sum()


def test_state_dict_continues_the_ring():
    a, b = FIFOBuffer(5), FIFOBuffer(5)
    a.add(x=torch.arange(7.0).unsqueeze(1), y=torch.arange(7))
    b.load_state_dict(a.state_dict())
    for buffer in (a, b):
        buffer.add(x=torch.tensor([[7.0], [8.0]]), y=torch.tensor([7, 8]))
    assert torch.equal(a.get_all()["y"], b.get_all()["y"])
    assert sorted(b.get_all()["y"].tolist()) == [4, 5, 6, 7, 8]
