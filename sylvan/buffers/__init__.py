"""Rehearsal memories. `buffers` imports nothing from `methods` or `settings`.

Storage policies decide which samples stay; a retrieval (`uniform` or `grasp`) decides which
stored samples are replayed, on top of any policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

from sylvan.buffers.aser import ASERBuffer, ASEROptions
from sylvan.buffers.base import RehearsalBuffer
from sylvan.buffers.class_balanced import ClassBalancedBuffer
from sylvan.buffers.fifo import FIFOBuffer
from sylvan.buffers.gdumb import GDumbBuffer
from sylvan.buffers.gss import GSSBuffer, GSSOptions
from sylvan.buffers.herding import HerdingBuffer
from sylvan.buffers.prs import PRSBuffer
from sylvan.buffers.reservoir import ReservoirBuffer
from sylvan.buffers.retrieval import RETRIEVALS
from sylvan.buffers.ring import RingBuffer
from sylvan.errors import ConfigurationError, unknown_name

BUFFER_POLICIES: dict[str, type[RehearsalBuffer]] = {
    cls.policy: cls
    for cls in (
        ReservoirBuffer, ClassBalancedBuffer, PRSBuffer, GDumbBuffer, HerdingBuffer, FIFOBuffer, GSSBuffer, RingBuffer,
        ASERBuffer,
    )
}

# policies and retrievals that need the method to supply a "features" field with every batch
NEEDS_FEATURES = {HerdingBuffer.policy}
# policies that need the method to supply a gradient "score" per sample with every batch
NEEDS_SCORES = {GSSBuffer.policy}
# policies that need the method to supply the stored sample each new sample replaces ("slot") with every batch
NEEDS_SLOTS = {ASERBuffer.policy}


def make_buffer(
    policy: str,
    capacity: int,
    device: str | None = None,
    seed: int = 0,
    retrieval: str = "uniform",
    pixel_fields: Sequence[str] = (),
) -> RehearsalBuffer:
    """Build the buffer registered under `policy`, replaying with `retrieval`, keeping
    `pixel_fields` as uint8 pixels (see `RehearsalBuffer`)."""
    if policy not in BUFFER_POLICIES:
        raise unknown_name("buffer policy", policy, list(BUFFER_POLICIES))
    if retrieval not in RETRIEVALS:
        raise ConfigurationError(f"unknown retrieval {retrieval!r}; valid retrievals: {', '.join(RETRIEVALS)}")
    return BUFFER_POLICIES[policy](capacity, device=device, seed=seed, retrieval=retrieval, pixel_fields=pixel_fields)


def needs_features(policy: str, retrieval: str) -> bool:
    """Whether the method must pass `features=` (one vector per sample) to `add`."""
    return policy in NEEDS_FEATURES or retrieval == "grasp"


def needs_scores(policy: str) -> bool:
    """Whether the method must pass `score=` (GSS's gradient score, one per sample) to `add`."""
    return policy in NEEDS_SCORES


def needs_slots(policy: str) -> bool:
    """Whether the method must pass `slot=` (the stored sample each new one replaces, or -1) to `add`."""
    return policy in NEEDS_SLOTS


# each policy's own options (a dataclass), for the policies that have any: a replay method takes
# the chosen policy's as its `buffer_options`, and `--help` shows them only where it is chosen
POLICY_OPTIONS: dict[str, type] = {
    policy: cls.options for policy, cls in BUFFER_POLICIES.items() if cls.options is not None
}


def policy_of_option(name: str) -> str | None:
    """The buffer policy whose options include the flag `name`, or None (flags of different
    policies never share a name: each begins with its policy's)."""
    return next((policy for policy, options in POLICY_OPTIONS.items()
                 if name in {option.name for option in fields(options)}), None)


def policy_option_defaults() -> dict[str, Any]:
    """Every policy's options at their defaults, by flag name (what a run's config.yaml records
    for the policies it did not choose)."""
    return {name: value for options in POLICY_OPTIONS.values() for name, value in asdict(options()).items()}


__all__ = [
    "BUFFER_POLICIES",
    "POLICY_OPTIONS",
    "ASERBuffer",
    "ASEROptions",
    "RETRIEVALS",
    "ClassBalancedBuffer",
    "FIFOBuffer",
    "GDumbBuffer",
    "GSSBuffer",
    "GSSOptions",
    "HerdingBuffer",
    "PRSBuffer",
    "RehearsalBuffer",
    "ReservoirBuffer",
    "RingBuffer",
    "make_buffer",
    "needs_features",
    "needs_scores",
    "needs_slots",
    "policy_of_option",
    "policy_option_defaults",
]
