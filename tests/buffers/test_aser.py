"""The aser policy (`sylvan.buffers.aser`): free slots first, then each sample where the method
sent it; and its one-sample-at-a-time reference."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sylvan.buffers import ASERBuffer
from tests.buffers.labelled_streams import check_storage, feed, label_batches, stream_slots

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from reference_buffers import LoopASER  # noqa: E402


def ids_held(buffer: ASERBuffer) -> list[int]:
    return buffer.get_all()["x"][:, 0].long().tolist()


def test_free_slots_fill_in_order_then_samples_go_where_they_are_sent():
    buffer = ASERBuffer(4)
    buffer.add(x=torch.arange(3.0).unsqueeze(1), slot=torch.tensor([2, 0, -1]))  # ignored while slots are free
    assert ids_held(buffer) == [0, 1, 2]
    # sample 3 fills the last free slot; 4 and 5 replace the samples held before the batch in slots 1 and 0
    buffer.add(x=torch.arange(3.0, 7.0).unsqueeze(1), slot=torch.tensor([2, 1, 0, -1]))
    assert ids_held(buffer) == [5, 4, 2, 3]
    assert (buffer.seen, buffer.replaced) == (7, 2)
    buffer.add(x=torch.tensor([[7.0], [8.0]]), slot=torch.tensor([3, 3]))  # one slot twice: the later wins
    assert ids_held(buffer) == [5, 4, 2, 8] and buffer.replaced == 3


@pytest.mark.parametrize(
    ("slots", "message"),
    [(None, "add\\(..., slot=...\\)"), ([0, 4], "below the buffer's size"), ([0, -2], "below the buffer's size"),
     ([0], "one integer per sample"), ([0.0, 1.0], "one integer per sample")],
)
def test_slots_that_are_missing_or_point_nowhere_are_refused(slots, message):
    buffer = ASERBuffer(4)
    buffer.add(x=torch.zeros(4, 1), slot=torch.full((4,), -1))
    supplied = {} if slots is None else {"slot": torch.tensor(slots)}
    with pytest.raises(ValueError, match=message):
        buffer.add(x=torch.ones(2, 1), **supplied)
    assert buffer.seen == 4 and (buffer.get_all()["x"] == 0).all()


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 25), batches=label_batches(4))
def test_the_vectorized_buffer_decides_as_the_per_sample_reference(capacity, batches):
    """Capacity, exact count, no sample twice, and the very samples the reference keeps, slot for
    slot, when both are handed the same choices."""
    buffer = ASERBuffer(capacity)
    total = feed(buffer, batches)
    check_storage(buffer, total)
    reference, start = LoopASER(capacity, (1,), "cpu"), 0
    for labels in batches:
        ids = torch.arange(start, start + len(labels))
        reference.add(ids.float().unsqueeze(1), torch.tensor(labels, dtype=torch.long), None,
                      stream_slots(ids, reference.size))
        start += len(labels)
    assert reference.size == len(buffer)
    assert reference.x[: reference.size, 0].long().tolist() == (ids_held(buffer) if total else [])
