"""The training minibatch a method's step receives."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    """A training minibatch: inputs, labels, and task labels where the setting gives them.
    Where the setting augments inputs, `x` is what the network trains on and `stored_x` the
    inputs as they came, which is what a buffer keeps. Where the inputs are images of uint8
    pixels, `pixels` holds those (`x` and `stored_x` are float32 k / 255 of them)."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor | None = None
    stored_x: torch.Tensor | None = None
    pixels: torch.Tensor | None = None

    def fields(self, pixels: bool = False) -> dict[str, torch.Tensor]:
        """The batch as named tensors (what a rehearsal buffer stores: inputs not augmented);
        with `pixels`, the inputs as uint8 pixels where the batch has them (for a buffer that
        keeps pixels: `RehearsalBuffer.pixel_fields`)."""
        x = self.x if self.stored_x is None else self.stored_x
        out = {"x": self.pixels if pixels and self.pixels is not None else x, "y": self.y}
        if self.t is not None:
            out["t"] = self.t
        return out
