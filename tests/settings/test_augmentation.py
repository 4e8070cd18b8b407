"""The batched training augmentation (`crop_flip`): each output is a window of the zero-padded
input, mirrored or not; every window and both orientations are equally likely; draws are
repeatable and checkpointable; and settings pick the dataset's standard augmentation by default."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError, UnknownNameError
from sylvan.settings import ClassIncrementalSetting
from sylvan.settings.data.augmentation import RandomCropFlip


def windows_matching(out: torch.Tensor, source: torch.Tensor, padding: int) -> list[tuple[int, int, bool]]:
    """Every (top, left, flipped) whose window of `source` (C, H, W) zero-padded by `padding`
    equals `out` (C, H, W)."""
    height, width = source.shape[1:]
    padded = F.pad(source, (padding,) * 4)
    found = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            window = padded[:, top : top + height, left : left + width]
            for flipped in (False, True):
                if torch.equal(window.flip(-1) if flipped else window, out):
                    found.append((top, left, flipped))
    return found


def is_augmented_view(out: torch.Tensor, source: torch.Tensor, padding: int) -> bool:
    return bool(windows_matching(out, source, padding))


def decoded_draws(augment: RandomCropFlip, count: int) -> list[tuple[int, int, bool]]:
    """(top, left, flipped) of each sample of one call, read back from the output of an 8x8
    image whose every pixel holds its own index + 1 (the padding reads 0)."""
    side, padding = 8, augment.padding
    assert padding <= 2
    image = (torch.arange(side * side, dtype=torch.float32) + 1).view(1, 1, side, side)
    out = augment(image.expand(count, 1, side, side).contiguous())
    draws = []
    for sample in out[:, 0]:
        centre, right = int(sample[4, 4]) - 1, int(sample[4, 5]) - 1
        flipped = right < centre
        row, column = divmod(centre, side)
        top = row - 4 + padding
        left = column - (3 if flipped else 4) + padding
        draws.append((top, left, flipped))
    return draws


def test_each_sample_is_a_window_of_the_padded_input_mirrored_or_not():
    torch.manual_seed(0)
    x = torch.rand(48, 3, 10, 12)  # not square: rows and columns must not be swapped
    out = RandomCropFlip(padding=2, seed=3)(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    matches = [windows_matching(o, s, 2) for o, s in zip(out, x)]
    assert all(len(m) == 1 for m in matches), "every output is exactly one window of its own input"
    draws = [m[0] for m in matches]
    assert len({(top, left) for top, left, _ in draws}) > 10 and {f for _, _, f in draws} == {False, True}


def test_windows_and_flips_are_uniform():
    augment = RandomCropFlip(padding=2, seed=0)
    draws = [d for _ in range(5) for d in decoded_draws(augment, 2000)]
    counts = torch.zeros(5, 5)
    for top, left, _ in draws:
        counts[top, left] += 1
    expected = len(draws) / 25
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 51.2, counts  # 24 degrees of freedom, p = 0.001; "keep the centre" gives ~240,000
    flipped = sum(f for _, _, f in draws) / len(draws)
    assert abs(flipped - 0.5) < 0.02
    # the flip is drawn independently of the window
    centre_flips = [f for top, left, f in draws if (top, left) == (2, 2)]
    assert abs(sum(centre_flips) / len(centre_flips) - 0.5) < 0.1


def test_no_padding_only_mirrors():
    x = torch.rand(64, 1, 5, 7)
    out = RandomCropFlip(padding=0, seed=1)(x)
    mirrored = [torch.equal(o, s.flip(-1)) for o, s in zip(out, x)]
    assert all(m or torch.equal(o, s) for m, o, s in zip(mirrored, out, x))
    assert 10 < sum(mirrored) < 54


def test_same_seed_same_draws_and_a_saved_state_gives_the_same_future():
    x = torch.rand(32, 3, 8, 8)
    first, second = RandomCropFlip(seed=7), RandomCropFlip(seed=7)
    assert torch.equal(first(x), second(x))
    assert not torch.equal(RandomCropFlip(seed=8)(x), RandomCropFlip(seed=7)(x))
    state = first.state_dict()
    expected = [first(x) for _ in range(3)]
    restored = RandomCropFlip(seed=0)
    restored.load_state_dict(state)
    assert all(torch.equal(restored(x), e) for e in expected)
    fresh = RandomCropFlip(seed=7)
    fresh.load_state_dict(RandomCropFlip(seed=7).state_dict())  # saved before any draw
    assert torch.equal(fresh(x), RandomCropFlip(seed=7)(x))


def test_data_parallel_workers_draw_their_own_crops(monkeypatch):
    x = torch.rand(32, 3, 8, 8)
    first = RandomCropFlip(seed=7)(x)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    assert not torch.equal(RandomCropFlip(seed=7)(x), first)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="padding"):
        RandomCropFlip(padding=-1)
    with pytest.raises(ValueError, match="N, C, H, W"):
        RandomCropFlip()(torch.rand(4, 64))


@pytest.mark.parametrize(("dataset", "expected"), [
    ("cifar10", "crop_flip"), ("cifar100", "crop_flip"), ("mnist", "none"), ("digits", "none"), ("synthetic", "none"),
])
def test_settings_use_the_datasets_standard_augmentation_by_default(dataset, expected):
    setting = ClassIncrementalSetting(dataset=dataset)
    assert setting.resolved_augmentation == expected
    assert (setting.train_augmentation() is None) == (expected == "none")
    assert ClassIncrementalSetting(dataset=dataset, augmentation="none").train_augmentation() is None
    chosen = ClassIncrementalSetting(dataset=dataset, augmentation="crop_flip", crop_padding=2, seed=4)
    augment = chosen.train_augmentation()
    assert isinstance(augment, RandomCropFlip) and augment.padding == 2 and augment.seed == 4


def test_settings_refuse_unknown_augmentations_and_negative_padding():
    with pytest.raises(UnknownNameError, match="crop_flip, default, none"):
        ClassIncrementalSetting(augmentation="cutout").validate()
    with pytest.raises(ConfigurationError, match="--crop_padding"):
        ClassIncrementalSetting(augmentation="crop_flip", crop_padding=-2).validate()


def test_a_crop_padding_without_crops_is_refused():
    """digits trains without augmentation by default: a padding given for it would be ignored."""
    with pytest.raises(ConfigurationError, match="--crop_padding 2 has no effect.*--augmentation none"):
        ClassIncrementalSetting(crop_padding=2).validate()
    with pytest.raises(ConfigurationError, match="--crop_padding 8 has no effect"):
        ClassIncrementalSetting(dataset="cifar10", augmentation="none", crop_padding=8).validate()
    ClassIncrementalSetting(dataset="cifar10", crop_padding=8).validate()  # its default augmentation crops
    ClassIncrementalSetting(augmentation="crop_flip", crop_padding=2).validate()
