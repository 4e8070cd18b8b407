"""First in, first out: the buffer holds the `capacity` most recent samples of the stream.

The replay memory of DQN (Mnih et al. 2015) and of most deep reinforcement learning; in
continual learning, the "keep the most recent" baseline that reservoir sampling improves on
(a FIFO memory forgets the old tasks as fast as the stream moves on).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from sylvan.buffers.base import RehearsalBuffer


class FIFOBuffer(RehearsalBuffer):
    """A ring buffer: sample k of the stream (0-based) takes slot k mod capacity, replacing
    the oldest stored sample once the buffer is full."""

    policy = "fifo"

    def _select_slots(self, batch: Mapping[str, torch.Tensor], count: int) -> tuple[np.ndarray, np.ndarray]:
        kept = min(count, self.capacity)  # of a batch larger than the buffer, only its last samples stay
        positions = np.arange(count - kept, count, dtype=np.int64)
        slots = (self.seen + positions) % self.capacity
        self.size = min(self.capacity, self.seen + count)
        return slots, positions

    def _slot_of_one(self) -> int:
        self.size = min(self.capacity, self.seen + 1)
        return self.seen % self.capacity
