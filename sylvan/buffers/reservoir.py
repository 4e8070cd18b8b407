"""Reservoir sampling (Vitter 1985): after n samples, each is in the buffer with probability
capacity / n, whatever the order of the stream."""

from __future__ import annotations

from collections.abc import Sequence
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

    def __init__(
        self, capacity: int, device: torch.device | str | None = None, seed: int = 0, retrieval: str = "uniform",
        pixel_fields: Sequence[str] = (),
    ) -> None:
        super().__init__(capacity, device=device, seed=seed, retrieval=retrieval, pixel_fields=pixel_fields)
        self._stream_offsets = np.empty(0, dtype=np.float64)  # 1, 2, ...: k + 1 - seen for sample k of a batch

    def _slot_of_one(self) -> int | None:
        seen, capacity = self.seen, self.capacity
        scaled = self._uniform(1, reuse=True)[0] * (1.0 + seen)  # the draw and float64 product of a batch of one
        self.size = min(capacity, seen + 1)
        if seen < capacity:
            return seen
        return int(scaled) if scaled < capacity else None

    def _select_slots(self, batch: Mapping[str, torch.Tensor], count: int) -> tuple[np.ndarray, np.ndarray]:
        seen, capacity = self.seen, self.capacity
        if len(self._stream_offsets) < count:
            self._stream_offsets = np.arange(1, count + 1, dtype=np.float64)
        # sample k of the stream (0-based) draws j = floor(u * (k + 1)) <= k for u < 1, computed
        # in float64 (exact for any realistic stream length); j < capacity <=> u * (k + 1) < capacity
        scaled = self._uniform(count, reuse=True) * (self._stream_offsets[:count] + seen)
        self.size = min(capacity, seen + count)
        if seen >= capacity:  # the steady state: only the accepted samples become slots
            positions = (scaled < capacity).nonzero()[0]
            return last_writer_wins(scaled.take(positions).astype(np.int64), positions)
        slots = scaled.astype(np.int64)
        filling = np.arange(seen, seen + count, dtype=np.int64)
        slots = np.where(filling < capacity, filling, slots)  # the first `capacity` samples fill in order
        positions = (slots < capacity).nonzero()[0]
        return last_writer_wins(slots[positions], positions)
