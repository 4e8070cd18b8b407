"""Reservoir sampling (Vitter 1985): after n samples, each is in the buffer with probability
capacity / n, whatever the order of the stream."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sylvan.buffers.base import RehearsalBuffer


class ReservoirBuffer(RehearsalBuffer):
    """Exact reservoir sampling, vectorized over a batch.

    Sample k of the stream (0-based) takes slot k while the buffer is not full; afterwards it
    draws j uniformly in [0, k] and replaces slot j if j < capacity. Within one batch, when two
    samples draw the same slot, the later one wins, exactly as if they arrived one at a time.
    """

    policy = "reservoir"

    def _select_slots(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        count = next(iter(batch.values())).shape[0]
        stream_index = torch.arange(self.seen, self.seen + count, device=self.device)
        draws = torch.rand(count, generator=self.generator, device=self.device)
        candidates = (draws * (stream_index + 1).to(draws.dtype)).long()
        candidates = torch.minimum(candidates, stream_index)  # guard float rounding at k+1
        slots = torch.where(stream_index < self.capacity, stream_index, candidates)
        accepted = slots < self.capacity
        slots, positions = slots[accepted], torch.nonzero(accepted).flatten()
        if slots.numel() > 1:
            # Keep, for each slot, the last sample of the batch that chose it.
            winner = torch.full((self.capacity,), -1, dtype=torch.long, device=self.device)
            winner.scatter_reduce_(0, slots, positions, reduce="amax")
            slots = torch.nonzero(winner >= 0).flatten()
            positions = winner[slots]
        self.size = min(self.capacity, self.seen + count)
        return slots, positions
