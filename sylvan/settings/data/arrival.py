"""The order in which classes or domains arrive in a stream: given, drawn with the seed, or natural."""

from __future__ import annotations

import numpy as np

from sylvan.errors import ConfigurationError


def check_arrival_order(kind: str, given: list[int] | None, shuffled: bool, count: int, of: str = "") -> None:
    """Refuse a `--KIND_order` given with `--random_KIND_order`, or one that is not a
    permutation of 0..count-1 (`of` says of what, for the message)."""
    if given is not None and shuffled:
        raise ConfigurationError(
            f"--{kind}_order and --random_{kind}_order contradict each other: give the order, or ask for "
            "a random one drawn with the seed"
        )
    if given is not None and sorted(given) != list(range(count)):
        raise ConfigurationError(f"--{kind}_order must be a permutation of 0..{count - 1}{of}, got {list(given)}")


def arrival_order(given: list[int] | None, shuffled: bool, count: int, seed: int) -> list[int]:
    """The order in which `count` things (classes, domains) arrive: the one given, or a
    permutation drawn with `seed` when `shuffled`, or 0..count-1."""
    if given is not None:
        return list(given)
    if shuffled:
        return np.random.default_rng(seed).permutation(count).tolist()
    return list(range(count))
