"""Helpers shared by the buffer property tests: feed labelled batches, check the storage."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

from sylvan.buffers import needs_scores, needs_slots


def stream_scores(ids: torch.Tensor) -> torch.Tensor:
    """Stand-in gradient scores for a gss buffer (a function of the sample id, in [0, 2))."""
    return (ids.double() * 0.37) % 2


def stream_slots(ids: torch.Tensor, held: int) -> torch.Tensor:
    """Stand-in replacement choices for an aser buffer holding `held` samples: a stored slot that
    is a function of the sample id, or -1 (turned away) for every third id."""
    if held == 0:
        return torch.full_like(ids, -1)
    return torch.where(ids % 3 == 0, -1, (ids * 7919 + 3) % held)


def supplied_inputs(buffer, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a method hands the buffer's policy with a batch besides the samples: gss's gradient
    scores (`stream_scores`), aser's replacement slots (`stream_slots`); nothing for the others."""
    if needs_scores(buffer.policy):
        return {"score": stream_scores(ids)}
    if needs_slots(buffer.policy):
        return {"slot": stream_slots(ids, len(buffer))}
    return {}


def label_batches(max_label: int) -> st.SearchStrategy:
    """Up to 15 batches of up to 20 labels in 0..max_label (empty batches included)."""
    return st.lists(st.lists(st.integers(0, max_label), min_size=0, max_size=20), max_size=15)


def feed(buffer, batches, features: bool = False) -> int:
    """Add each list of labels as a batch; sample k of the stream has id k (stored as "id" and
    in x). With `features`, a 2-d feature vector per sample too; gss and aser buffers get
    `supplied_inputs`. Returns the stream length."""
    return feed_from(buffer, batches, 0, features) 


def feed_from(buffer, batches, start: int, features: bool = True) -> int:
    """As `feed`, with ids counting from `start`; returns the id after the last sample."""
    for labels in batches:
        ids = torch.arange(start, start + len(labels))
        fields = dict(x=ids.float().unsqueeze(1), y=torch.tensor(labels, dtype=torch.long), id=ids)
        if features:
            fields["features"] = torch.stack([ids.float() % 7, torch.tensor(labels, dtype=torch.float)], 1)
        buffer.add(**fields, **supplied_inputs(buffer, ids))
        start += len(labels)
    return start


def check_storage(buffer, total: int) -> None:
    """Capacity, exact count of seen samples, no sample twice, every slot's fields from one sample,
    and (class-aware buffers) the CPU mirror of the labels agrees with the stored labels."""
    assert len(buffer) <= buffer.capacity
    assert buffer.seen == total
    stored = buffer.get_all()
    if not stored:
        assert total == 0 or len(buffer) == 0
        return
    ids = stored["id"]
    assert len(set(ids.tolist())) == len(ids), "a sample is stored twice"
    assert torch.equal(stored["x"][:, 0].long(), ids), "fields of a slot come from one sample"
    if hasattr(buffer, "slot_labels"):
        mirror = np.bincount(buffer.slot_labels[: len(buffer)])
        assert buffer.class_counts() == {label: int(n) for label, n in enumerate(mirror) if n}
