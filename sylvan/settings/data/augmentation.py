"""Training-time input augmentation, drawn per sample and applied to a whole batch at once.

The standard augmentation of the CIFAR benchmarks (a random crop of the image zero-padded by 4
pixels, and a random horizontal flip; as in the DER, ER-ACE and iCaRL reference code) is written
here as one gather over the batch, on the batch's own device: no per-sample Python loop, no
round trip through PIL images in the data loader. Rehearsal methods store the samples as they
came and augment each replayed sample afresh every time it is drawn (as the reference code
does), so the augmentation sits between the data and the network, not in the data stream.
"""

from __future__ import annotations

from typing import Any

import torch

from sylvan.transfer import to_device
from sylvan.workers import Workers

AUGMENTATIONS = ("none", "crop_flip")


class SeededAugmentation:
    """An augmentation whose per-sample draws come from a CPU generator seeded with `seed` (and,
    in a data-parallel run, the worker's rank), so that a run is repeatable and its state can be
    checkpointed. Each kind has a `seed_offset` of its own, so that two kinds in one run draw
    independently."""

    seed_offset = 0

    def __init__(self, seed: int = 0, workers: Workers | None = None) -> None:
        self.seed = seed
        self.workers = workers if workers is not None else Workers(seed=seed)  # the run's, or the process group's
        self.generator: torch.Generator | None = None  # made at the first batch (rank known)

    def _generator(self) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(self.workers.draw_seed(self.seed_offset, seed=self.seed))
        return self.generator

    def state_dict(self) -> dict[str, Any]:
        return {"generator": None if self.generator is None else self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("generator") is None:
            self.generator = None
        else:
            self._generator().set_state(state["generator"])


class RandomCropFlip(SeededAugmentation):
    """For each sample of a batch (N, C, H, W): a random H x W window of the sample zero-padded by
    `padding` pixels on every side (each of the (2 * padding + 1)^2 offsets equally likely), then
    mirrored left-right with probability `flip_probability`."""

    seed_offset = 104_729

    def __init__(self, padding: int = 4, flip_probability: float = 0.5, seed: int = 0) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
        super().__init__(seed)
        self.padding = int(padding)
        self.flip_probability = float(flip_probability)

    def draw(self, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per sample: the window's top and left offsets in the padded image, and whether it is
        flipped (CPU tensors)."""
        generator = self._generator()
        span = 2 * self.padding + 1
        top = torch.randint(span, (count,), generator=generator)
        left = torch.randint(span, (count,), generator=generator)
        flip = torch.rand(count, generator=generator) < self.flip_probability
        return top, left, flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"crop_flip augments image batches (N, C, H, W); got shape {tuple(x.shape)}")
        count, channels, height, width = x.shape
        if count == 0:
            return x
        top, left, flip = (to_device(t, x.device) for t in self.draw(count))
        pad = self.padding
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
        padded_width = width + 2 * pad
        columns = torch.arange(width, device=x.device).expand(count, width)
        columns = left[:, None] + torch.where(flip[:, None], width - 1 - columns, columns)  # mirrored read
        rows = top[:, None] + torch.arange(height, device=x.device)
        # each output pixel's position in its sample's padded plane, the same for every channel
        where = (rows[:, :, None] * padded_width + columns[:, None, :]).view(count, 1, height * width)
        out = padded.reshape(count, channels, -1).gather(2, where.expand(count, channels, height * width))
        return out.view(count, channels, height, width)


def build_augmentation(name: str, padding: int = 4, seed: int = 0) -> RandomCropFlip | None:
    """The augmentation registered as `name` (None for "none")."""
    if name == "none":
        return None
    if name == "crop_flip":
        return RandomCropFlip(padding=padding, seed=seed)
    raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, got {name!r}")
