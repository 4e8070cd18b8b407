"""The training minibatch a method's step receives."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    """A training minibatch of float inputs, labels, and task labels where the setting gives
    them. Where the setting augments inputs, `x` is what the network trains on and `stored_x`
    the inputs as they came, which is what a buffer keeps. Images stored as uint8 pixels reach
    a method as float32 k / 255: pixels are decoded by the data loading and encoded again by
    the buffers that keep them (`RehearsalBuffer.pixel_fields`), never by a method."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor | None = None
    stored_x: torch.Tensor | None = None

    def fields(self) -> dict[str, torch.Tensor]:
        """The batch as named tensors (what a rehearsal buffer stores: inputs not augmented)."""
        x = self.x if self.stored_x is None else self.stored_x
        out = {"x": x, "y": self.y}
        if self.t is not None:
            out["t"] = self.t
        return out
