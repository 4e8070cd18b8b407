"""The memory update of adversarial Shapley value experience replay (ASER: Shim, Mai, Jeong,
Sanner, Kim & Jang, "Online Class-Incremental Continual Learning with Adversarial Shapley
Value", AAAI 2021).

ASER keeps the samples that matter most to a k-nearest-neighbour classifier over the network's
features: once the memory is full, each batch's samples compete with a random part of it by
their KNN Shapley values, and every new sample that beats a stored one takes that one's slot.
The values need the network, so the method computes them (`sylvan.buffers.shapley`) and hands
the buffer, with `add(..., slot=...)`, the slot each new sample replaces (-1: turned away); the
buffer fills its free slots first, whatever the slots say, and writes the rest where they point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from sylvan.buffers.base import RehearsalBuffer
from sylvan.buffers.reservoir import last_writer_wins
from sylvan.buffers.shapley import knn_shapley_values, replacement_slots, update_sets
from sylvan.errors import require_at_least

TURNED_AWAY = -1  # the slot of a new sample that replaces nothing


@dataclass
class ASEROptions:
    """The aser policy's options (`--aser_neighbours`, `--aser_samples_per_class`), which a replay
    method takes as its `buffer_options` where `--buffer_policy` is aser."""

    aser_neighbours: int = 5  # aser policy: K, the neighbours of the KNN Shapley values
    aser_samples_per_class: int = 2  # aser policy: stored samples of each class that judge (x the classes compete)

    def __post_init__(self) -> None:
        require_at_least(self, 1, "aser_neighbours", "aser_samples_per_class")


class ASERBuffer(RehearsalBuffer):
    """A memory whose replacements are chosen by the method: the first samples offered fill the
    free slots in order; once full, sample i of a batch replaces the stored sample in slot
    `slot[i]`, or nothing where that is -1. The slots refer to the buffer as it was before the
    batch (they must be below its size then); where two samples name one slot, the later wins,
    as if they arrived one at a time."""

    policy = "aser"
    options = ASEROptions
    slot_input = "slot"

    _incoming = np.empty(0, dtype=np.int64)

    def add(self, **batch: torch.Tensor) -> None:
        """Offer a batch of new samples; `slot` (one int per sample: the stored sample it replaces,
        or -1) is read, not stored as a field."""
        if self.slot_input not in batch:
            raise ValueError(
                "the aser policy stores samples where the method's Shapley values put them: add(..., slot=...), "
                "one per sample (the replay methods compute them when --buffer_policy is aser)"
            )
        slots = batch.pop(self.slot_input)
        slots = np.asarray(slots.detach().cpu() if isinstance(slots, torch.Tensor) else slots)
        count = next(iter(batch.values())).shape[0] if batch else 0
        if slots.shape != (count,) or not np.issubdtype(slots.dtype, np.integer):
            raise ValueError(f"slot must hold one integer per sample ({count}), got {slots.dtype}, shape {slots.shape}")
        filling = min(count, self.capacity - self.size)
        replacing = slots[filling:]
        if ((replacing < TURNED_AWAY) | (replacing >= self.size)).any():
            raise ValueError(f"a slot must be -1 or a stored sample's, below the buffer's size ({self.size})")
        self._incoming = slots.astype(np.int64)
        super().add(**batch)

    def _select_slots(self, batch: Mapping[str, torch.Tensor], count: int) -> tuple[np.ndarray, np.ndarray]:
        filling = min(count, self.capacity - self.size)
        slots = np.arange(self.size, self.size + filling, dtype=np.int64)
        positions = np.arange(filling, dtype=np.int64)
        replacing = filling + np.flatnonzero(self._incoming[filling:] != TURNED_AWAY)
        self.size += filling
        if len(replacing):
            slots = np.concatenate([slots, self._incoming[replacing]])
            positions = np.concatenate([positions, replacing])
            slots, positions = last_writer_wins(slots, positions)
        return slots, positions


class ASERReplacement:
    """What the aser policy is handed with new samples: the stored sample each replaces (`slots`),
    judged in the network's features, which the buffer does not have: `features(x)` computes them
    (in evaluation mode); `num_classes`: of the run; draws of its own, from `seed` (checkpointed
    as "aser_draws")."""

    def __init__(self, buffer: ASERBuffer, options: ASEROptions, features: Callable[[torch.Tensor], torch.Tensor],
                 num_classes: int, seed: int) -> None:
        self.buffer, self.options, self.features, self.num_classes = buffer, options, features, num_classes
        # the draws of the stored samples that judge and compete
        self.draws = torch.Generator().manual_seed(seed)

    def extras(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"slot": self.slots(x, y)}

    def slots(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The stored sample each of (x, y) replaces, or -1 (`sylvan.buffers.shapley`). The
        first samples fill the free slots; each later one competes, with `aser_samples_per_class`
        x the classes stored samples drawn at random, by the sum of its KNN Shapley values (K =
        `aser_neighbours`, in the features of the network in evaluation mode) for
        `aser_samples_per_class` stored samples of each class and the new samples of classes the
        memory nearly lacks; the best of them stay. Samples beyond the free slots of the batch
        that fills the buffer compete with the samples stored before it."""
        buffer, count = self.buffer, len(y)
        held = len(buffer)
        filling = min(count, buffer.capacity - held)
        slots = torch.full((count,), -1, dtype=torch.long)
        if filling == count or held == 0:
            return slots
        stored_labels = buffer.gather(np.arange(held), names=("y",))["y"].cpu()
        new_labels = y[filling:].cpu()
        judges, competing, new_judges = update_sets(
            stored_labels, new_labels, buffer.capacity, self.num_classes, self.options.aser_samples_per_class,
            self.draws,
        )
        stored_x = buffer.gather(torch.cat([judges, competing]).numpy(), names=("x",))["x"].to(x.device)
        features = self.features(torch.cat([stored_x, x[filling:]]))
        judged, competed = len(judges), len(competing)
        values = knn_shapley_values(
            torch.cat([features[:judged], features[judged + competed:][new_judges.to(x.device)]]),
            torch.cat([stored_labels[judges], new_labels[new_judges]]).to(x.device),
            features[judged:],
            torch.cat([stored_labels[competing], new_labels]).to(x.device),
            self.options.aser_neighbours,
        ).sum(0)
        slots[filling:] = replacement_slots(values, competing, count - filling)
        return slots

    def on_task_start(self) -> None:
        pass

    def on_task_end(self, task_id: int | None) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"aser_draws": self.draws.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.draws.set_state(state["aser_draws"])
