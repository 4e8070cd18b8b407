"""A task's transformation of uint8 images (rotations, pixel permutations, tensor conversion),
applied to the whole array at once with the same pixels as torchvision's per-sample path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class ArrayTransform:
    """A task's transformation of uint8 images, `Compose([RandomAffine..., ToTensor(),
    PermutationTransform...])`, as index gathers on the whole array of pixels (N, C, H, W):

    - a `RandomAffine` that can only draw one angle, with no translation, scaling or shear and
      nearest-neighbour sampling (continuum's `Rotations`), moves every output pixel from one
      input pixel or fills it: where from is found by running the transformation itself, once,
      on an image whose pixels hold their own positions, so the result is PIL's, pixel for pixel;
    - a `PermutationTransform` reorders each image's C * H * W values.

    `draws_per_sample` counts the floats the per-sample transformation draws from torch's
    global generator (a `RandomAffine` draws its angle even when it can draw only one), which
    the whole-array path draws too: the model, initialized from that generator next, must not
    depend on the path that read the data."""

    steps: tuple[tuple[str, torch.Tensor, int], ...]  # (operation, source index, fill)
    draws_per_sample: int

    @staticmethod
    def of(transform: Any, shape: tuple[int, ...]) -> ArrayTransform | None:
        """The plan of `transform` for images of `shape` (C, H, W); None for any other transformation."""
        from continuum.scenarios.permutations import PermutationTransform
        from torchvision.transforms import Compose, InterpolationMode, RandomAffine, ToTensor

        if not isinstance(transform, Compose):
            return None
        kinds = [type(step) for step in transform.transforms]
        if kinds.count(ToTensor) != 1:
            return None
        tensor_at = kinds.index(ToTensor)
        steps, draws = [], 0
        for step in transform.transforms[:tensor_at]:
            fixed = (
                type(step) is RandomAffine and step.degrees[0] == step.degrees[1] and step.translate is None
                and step.scale is None and step.shear is None and step.interpolation == InterpolationMode.NEAREST
                and (step.fill is None or type(step.fill) is int) and 0 <= (step.fill or 0) <= 255
            )
            if not fixed:
                return None
            steps.append(("pixels", affine_sources(step, shape[1], shape[2]), step.fill or 0))
            draws += 1
        for step in transform.transforms[tensor_at + 1:]:
            if type(step) is not PermutationTransform:
                return None
            if step.seed is not None:  # as PermutationTransform draws it for each sample
                generator = torch.Generator().manual_seed(step.seed)
                steps.append(("values", torch.randperm(int(np.prod(shape)), generator=generator), 0))
        return ArrayTransform(tuple(steps), draws)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The transformed copy of `images` (N, C, H, W), uint8."""
        n, c, h, w = images.shape
        for operation, source, fill in self.steps:
            if operation == "values":
                images = images.reshape(n, -1).index_select(1, source).reshape(n, c, h, w)
            else:  # source 0 is the fill, k the input pixel k - 1 of each channel
                padded = torch.cat([torch.full((n, c, 1), fill, dtype=images.dtype), images.reshape(n, c, h * w)], 2)
                images = padded.index_select(2, source).reshape(n, c, h, w)
        return images


def affine_sources(step: Any, height: int, width: int) -> torch.Tensor:
    """For each output pixel of the fixed `RandomAffine` `step`, 1 + the index of the input pixel
    it copies, or 0 where it is filled: the transformation applied, once, to a 32-bit PIL image
    whose pixels hold 1 + their index (nearest-neighbour sampling copies values, it never mixes
    them). Its parameters are drawn as the step draws them, from a fork of the global generator."""
    import torchvision.transforms.functional as F
    from PIL import Image

    positions = Image.fromarray(np.arange(1, height * width + 1, dtype=np.int32).reshape(height, width))
    with torch.random.fork_rng(devices=[]):
        params = step.get_params(step.degrees, step.translate, step.scale, step.shear, [width, height])
    moved = F.affine(positions, *params, interpolation=step.interpolation, fill=0, center=step.center)
    return torch.from_numpy(np.asarray(moved, dtype=np.int64).reshape(-1))
