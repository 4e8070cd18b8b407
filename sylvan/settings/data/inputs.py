"""How a supervised stream's inputs reach the network: the training augmentation and the input
normalization, options every supervised setting has."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from sylvan.settings.data.augmentation import RandomCropFlip, build_augmentation


@dataclass
class InputOptions:
    """The options of the input pipeline (a dataclass the settings' fields come from), resolved
    against the setting's dataset (`dataset_spec`) and seed."""

    # input augmentation at training time, drawn afresh each time a sample is trained on (new and
    # replayed samples; never at evaluation, never in what a buffer stores): default (the
    # dataset's standard one: crop_flip for CIFAR, none for the others), none, or crop_flip (a
    # random crop of the image zero-padded by --crop_padding pixels, and a random horizontal flip)
    augmentation: str = "default"
    crop_padding: int = 4  # crop_flip: pixels of zero padding around the image before the random crop
    # normalize inputs by the dataset's per-channel mean and std, inside the network (after any
    # augmentation; buffers keep pixels in [0, 1]): true (or the bare flag), false, or by default
    # as its benchmarks do (CIFAR yes, the MNIST family no); digits and synthetic have no statistics
    normalize_inputs: Optional[bool] = field(default=None, metadata={"custom_args": {"const": True}})

    @property
    def resolved_augmentation(self) -> str:
        """`--augmentation`, with "default" replaced by the dataset's standard augmentation."""
        return self.dataset_spec.augmentation if self.augmentation == "default" else self.augmentation

    def train_augmentation(self) -> RandomCropFlip | None:
        """A fresh, seeded instance of the training augmentation (None where there is none), for
        the method to apply to every input it trains on."""
        return build_augmentation(self.resolved_augmentation, padding=self.crop_padding, seed=self.seed)

    def input_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The per-channel (mean, std) the network normalizes its inputs by, or None: from
        `--normalize_inputs`, by default the dataset's benchmark practice."""
        spec = self.dataset_spec
        wanted = spec.normalized if self.normalize_inputs is None else self.normalize_inputs
        return spec.channel_stats if wanted else None
