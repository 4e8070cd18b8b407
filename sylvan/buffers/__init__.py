"""Rehearsal memories. `buffers` imports nothing from `methods` or `settings`."""

from __future__ import annotations

from sylvan.buffers.base import RehearsalBuffer
from sylvan.buffers.class_balanced import ClassBalancedBuffer
from sylvan.buffers.gdumb import GDumbBuffer
from sylvan.buffers.reservoir import ReservoirBuffer
from sylvan.errors import unknown_name

BUFFER_POLICIES: dict[str, type[RehearsalBuffer]] = {
    cls.policy: cls for cls in (ReservoirBuffer, ClassBalancedBuffer, GDumbBuffer)
}


def make_buffer(
    policy: str, capacity: int, device: str | None = None, seed: int = 0
) -> RehearsalBuffer:
    """Build the buffer registered under `policy`."""
    if policy not in BUFFER_POLICIES:
        raise unknown_name("buffer policy", policy, list(BUFFER_POLICIES))
    return BUFFER_POLICIES[policy](capacity, device=device, seed=seed)


__all__ = [
    "BUFFER_POLICIES",
    "ClassBalancedBuffer",
    "GDumbBuffer",
    "RehearsalBuffer",
    "ReservoirBuffer",
    "make_buffer",
]
