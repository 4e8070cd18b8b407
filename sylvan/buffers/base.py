"""The rehearsal-buffer interface: fixed capacity, preallocated tensors, vectorized I/O.

A buffer stores samples under named fields ("x", "y", "t", "logits", ...). The storage for
each field is allocated once, on the buffer's device, at the first insertion, with the shape of
one sample times the capacity; insertion and sampling index these tensors with whole index
vectors, never one sample at a time. A `torch.Generator` on the buffer's device drives every
random choice, so that draws are reproducible and survive `state_dict()` / `load_state_dict()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from sylvan.errors import ConfigurationError


class RehearsalBuffer:
    """Base class: storage, sampling and persistence. Policies decide which slots new samples
    take by implementing `_select_slots`."""

    policy: str = "base"

    def __init__(
        self, capacity: int, device: torch.device | str | None = None, seed: int = 0
    ) -> None:
        if capacity < 0:
            raise ConfigurationError(f"buffer capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self.device = torch.device(device) if device is not None else None
        self.seed = seed
        self.storage: dict[str, torch.Tensor] = {}
        self.size = 0
        self.seen = 0
        self.generator: torch.Generator | None = None
        if self.device is not None:
            self._make_generator(self.device)

    def _make_generator(self, device: torch.device) -> None:
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(self.seed)

    def __len__(self) -> int:
        return self.size

    @property
    def is_full(self) -> bool:
        return self.size >= self.capacity

    def _allocate(self, batch: Mapping[str, torch.Tensor]) -> None:
        if self.device is None:
            self.device = next(iter(batch.values())).device
            self._make_generator(self.device)
        for name, values in batch.items():
            self.storage[name] = torch.empty(
                (self.capacity, *values.shape[1:]), dtype=values.dtype, device=self.device
            )

    def add(self, **batch: torch.Tensor) -> None:
        """Offer a batch of new samples (fields of equal first dimension) to the buffer."""
        if not batch:
            raise ValueError("add() needs at least one field, e.g. add(x=..., y=...)")
        count = next(iter(batch.values())).shape[0]
        if any(v.shape[0] != count for v in batch.values()):
            raise ValueError("all fields of a batch must have the same number of samples")
        if count == 0 or self.capacity == 0:
            self.seen += count
            return
        if not self.storage:
            self._allocate(batch)
        elif set(batch) != set(self.storage):
            raise ValueError(f"fields {sorted(batch)} differ from stored {sorted(self.storage)}")
        slots, positions = self._select_slots(batch)
        if slots.numel():
            for name, values in batch.items():
                self.storage[name][slots] = values.detach().to(self.device)[positions]
        self.seen += count

    def _select_slots(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (slots, positions): batch sample `positions[k]` goes into `slots[k]`. Slots are
        distinct; `self.size` is updated here. `self.seen` still counts the samples before."""
        raise NotImplementedError

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        """Draw min(n, len(self)) distinct stored samples uniformly at random."""
        n = min(int(n), self.size)
        if n <= 0:
            return {}
        assert self.generator is not None
        if n == self.size:
            index = torch.randperm(self.size, generator=self.generator, device=self.device)
        else:
            # Uniform without replacement: the n smallest of i.i.d. uniform keys.
            keys = torch.rand(self.size, generator=self.generator, device=self.device)
            index = torch.topk(keys, n, largest=False, sorted=False).indices
        return {name: values[index] for name, values in self.storage.items()}

    def get_all(self) -> dict[str, torch.Tensor]:
        """Every stored sample, in slot order."""
        return {name: values[: self.size] for name, values in self.storage.items()}

    def _remove_slots(self, slots: torch.Tensor) -> None:
        """Free `slots` and keep the occupied slots contiguous in [0, size) by moving the
        survivors down (relative order is kept)."""
        if slots.numel() == 0:
            return
        keep = torch.ones(self.size, dtype=torch.bool, device=self.device)
        keep[slots] = False
        survivors = torch.nonzero(keep).flatten()
        for values in self.storage.values():
            values[: len(survivors)] = values[survivors]
        self.size = len(survivors)

    def _random_slots_of(self, label: int, count: int, field: str = "y") -> torch.Tensor:
        """`count` distinct occupied slots, drawn uniformly among those holding `label`."""
        members = torch.nonzero(self.storage[field][: self.size] == label).flatten()
        order = torch.randperm(len(members), generator=self.generator, device=self.device)
        return members[order[:count]]

    def class_counts(self, field: str = "y") -> dict[int, int]:
        """How many stored samples carry each label of `field`."""
        if self.size == 0:
            return {}
        labels, counts = torch.unique(self.storage[field][: self.size], return_counts=True)
        return {int(k): int(v) for k, v in zip(labels.tolist(), counts.tolist())}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: contents, counters and the generator's state."""
        return {
            "policy": self.policy,
            "capacity": self.capacity,
            "size": self.size,
            "seen": self.seen,
            "storage": {k: v.clone() for k, v in self.storage.items()},
            "generator": self.generator.get_state() if self.generator is not None else None,
            **self._extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["policy"] != self.policy or state["capacity"] != self.capacity:
            raise ValueError(
                f"state of a {state['policy']} buffer of capacity {state['capacity']} cannot be "
                f"loaded into a {self.policy} buffer of capacity {self.capacity}"
            )
        self.size = int(state["size"])
        self.seen = int(state["seen"])
        if state["storage"]:
            if self.device is None:
                self.device = next(iter(state["storage"].values())).device
            self.storage = {k: v.to(self.device).clone() for k, v in state["storage"].items()}
        if state["generator"] is not None:
            if self.generator is None:
                self._make_generator(self.device or torch.device("cpu"))
            assert self.generator is not None
            self.generator.set_state(state["generator"])
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass
