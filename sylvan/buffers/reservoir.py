"""Reservoir sampling (Vitter 1985): after n samples, each is in the buffer with probability
capacity / n, whatever the order of the stream."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from sylvan.buffers.base import RehearsalBuffer


def last_writer_wins(slots: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where several batch samples target one slot, keep the latest (highest position), as
    inserting them one at a time would."""
    if len(slots) <= 1 or len(set(slots.tolist())) == len(slots):  # the common case: no slot shared
        return slots, positions
    order = np.argsort(positions)[::-1]  # latest first, so np.unique keeps it
    unique_slots, first = np.unique(slots[order], return_index=True)
    return unique_slots, positions[order][first]


class ReservoirBuffer(RehearsalBuffer):
    """Exact reservoir sampling, vectorized over a batch.

    Sample k of the stream (0-based) takes slot k while the buffer is not full; afterwards it
    draws j uniformly in [0, k] and replaces slot j if j < capacity. Within one batch, when two
    samples draw the same slot, the later one wins, exactly as if they arrived one at a time.
    """

    policy = "reservoir"

    def _select_slots(self, batch: Mapping[str, torch.Tensor], count: int) -> tuple[np.ndarray, np.ndarray]:
        stream_length = np.arange(self.seen + 1, self.seen + count + 1, dtype=np.int64)  # k + 1 for sample k
        # floor(u * (k + 1)) <= k for u < 1 (exact in float64 for any realistic stream length)
        slots = (self._uniform(count) * stream_length).astype(np.int64)
        if self.seen < self.capacity:  # the first `capacity` samples of the stream fill in order
            slots = np.where(stream_length <= self.capacity, stream_length - 1, slots)
        positions = (slots < self.capacity).nonzero()[0]
        self.size = min(self.capacity, self.seen + count)
        return last_writer_wins(slots[positions], positions)
