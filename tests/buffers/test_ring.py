"""The class-balanced ring buffer (`ring`): each class keeps its most recent samples, up to its
equal share of the capacity."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sylvan.buffers import RingBuffer
from sylvan.buffers.balancing import equal_quotas
from tests.buffers.labelled_streams import check_storage, label_batches


def most_recent(history: list[int], capacity: int) -> set[int]:
    """The ids a per-class FIFO of equal quotas holds after the stream `history` (labels by id)."""
    labels = np.array(history)
    present = np.unique(labels)
    quotas = dict(zip(present.tolist(), equal_quotas(len(present), capacity).tolist()))
    kept: set[int] = set()
    for label, quota in quotas.items():
        ids = np.flatnonzero(labels == label)
        kept |= set(ids[max(0, len(ids) - quota):].tolist()) if quota else set()
    return kept


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 30), batches=label_batches(6))
def test_each_class_holds_its_most_recent_samples_after_every_batch(capacity, batches):
    """After every batch, class c holds exactly its last min(seen_c, quota_c) samples, whatever
    the batching: a buffer that kept random samples of each class (class_balanced) fails."""
    buffer, history = RingBuffer(capacity), []
    for labels in batches:
        ids = torch.arange(len(history), len(history) + len(labels))
        buffer.add(x=ids.float().unsqueeze(1), y=torch.tensor(labels, dtype=torch.long), id=ids)
        history += labels
        check_storage(buffer, len(history))
        if history:
            assert set(buffer.get_all()["id"].tolist()) == most_recent(history, capacity)
            counts = buffer.class_counts()
            assert all(counts.get(c, 0) == min(history.count(c), q) for c, q in enumerate(buffer.quotas()) if q)


@settings(max_examples=50, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=1, max_size=120), cuts=st.lists(st.integers(1, 20), max_size=30))
def test_one_sample_at_a_time_or_in_batches_the_memory_is_the_same(labels, cuts):
    """No random draw: how the stream is cut into batches changes nothing."""
    whole, pieces = RingBuffer(12), RingBuffer(12)
    ids = torch.arange(len(labels))
    y = torch.tensor(labels)
    whole.add(x=ids.float().unsqueeze(1), y=y, id=ids)
    start = 0
    for cut in [*cuts, len(labels)]:
        stop = min(start + cut, len(labels))
        if stop > start:
            pieces.add(x=ids[start:stop].float().unsqueeze(1), y=y[start:stop], id=ids[start:stop])
        start = stop
    assert sorted(whole.get_all()["id"].tolist()) == sorted(pieces.get_all()["id"].tolist())


def test_the_steady_state_replaces_the_oldest_slot_of_the_class_in_place():
    buffer = RingBuffer(4)
    buffer.add(x=torch.arange(4.0).unsqueeze(1), y=torch.tensor([0, 1, 0, 1]))  # full: 2 per class
    buffer.add(x=torch.tensor([[4.0]]), y=torch.tensor([0]))
    assert buffer.get_all()["x"][:, 0].tolist() == [4.0, 1.0, 2.0, 3.0]  # 0, the oldest of class 0, went
    buffer.add(x=torch.tensor([[5.0], [6.0], [7.0]]), y=torch.tensor([0, 1, 0]))
    # class 0's ring, oldest first, is slots 2 and 0: 5 takes slot 2, 7 slot 0; 6 takes class 1's slot 1
    assert buffer.get_all()["x"][:, 0].tolist() == [7.0, 6.0, 5.0, 3.0]
    assert buffer.replaced == 4


def test_a_new_class_takes_its_share_from_the_oldest_samples_of_the_others():
    buffer = RingBuffer(6)
    buffer.add(x=torch.arange(6.0).unsqueeze(1), y=torch.tensor([0, 0, 0, 1, 1, 1]))
    buffer.add(x=torch.tensor([[6.0]]), y=torch.tensor([2]))  # quotas 2, 2, 2: 0 and 3 go
    assert sorted(buffer.get_all()["x"][:, 0].tolist()) == [1.0, 2.0, 4.0, 5.0, 6.0]
    buffer.add(x=torch.tensor([[7.0], [8.0]]), y=torch.tensor([2, 0]))
    assert sorted(buffer.get_all()["x"][:, 0].tolist()) == [2.0, 4.0, 5.0, 6.0, 7.0, 8.0]


def test_state_restores_the_rings():
    a = RingBuffer(9)
    for step in range(6):
        ids = torch.arange(5 * step, 5 * step + 5)
        a.add(x=ids.float().unsqueeze(1), y=ids % 3)
    b = RingBuffer(9)
    b.load_state_dict(a.state_dict())
    for step in range(6, 12):
        ids = torch.arange(5 * step, 5 * step + 5)
        for buffer in (a, b):
            buffer.add(x=ids.float().unsqueeze(1), y=(ids * 7) % 4)
    assert torch.equal(a.get_all()["x"], b.get_all()["x"])
    assert np.array_equal(a.slot_arrivals, b.slot_arrivals)


def test_the_rings_are_rebuilt_only_when_a_new_class_appears():
    """A class that never fills its quota (a rare class) keeps taking free entries of its
    segment while the others replace in place: no batch sorts the slots again."""
    buffer, generator = RingBuffer(60), torch.Generator().manual_seed(0)
    rebuilt = []
    for step in range(40):
        y = torch.randint(0, 3, (16,), generator=generator)
        if step % 5 == 0:
            y[0] = 3  # rare: 8 samples in all, its quota 15
        before = buffer._rings
        buffer.add(x=torch.zeros(16, 1), y=y)
        rebuilt.append(buffer._rings is not before)
    assert buffer.class_counts()[3] == 8 and len(buffer) == 53
    assert not any(rebuilt[1:])  # every label appeared in the first batch, which built the rings
