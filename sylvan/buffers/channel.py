"""The replay channel: how a method reaches its rehearsal memory, whatever the run.

A method replays with `take(n)` and stores with `insert(fields)`; with one worker (or workers
that replay each from its own buffer) the channel is the local buffer (`LocalReplay`), with
several replaying globally it is the distributed asynchronous rehearsal
(`sylvan.buffers.global_replay.GlobalReplay`), whose draws come from every worker's buffer
(`is_global`). What a method reads of this worker's memory beside its replay (its contents for a
task's end, a uniform draw whatever the retrieval, its size) it reads through the channel too, so
that no method holds its buffer behind the channel's back: the buffer a method makes is handed to
the run's channel (`RunContext.replay_channel`, or `LocalReplay` for a memory that is only ever
this worker's), and kept by the method only to be saved with its state."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import torch

from sylvan.buffers.base import RehearsalBuffer, batch_of_one


class ReplayChannel:
    """Replay from, and store into, a rehearsal memory around this worker's `buffer`."""

    is_global = False  # whether `take` draws from every worker's buffer, not this one's alone

    def __init__(self, buffer: RehearsalBuffer) -> None:
        self.buffer = buffer

    def take(self, n: int) -> dict[str, torch.Tensor]:
        """A step's replay: up to `n` samples drawn by the buffer's retrieval ({} while empty)."""
        raise NotImplementedError

    def insert(self, fields: dict[str, torch.Tensor]) -> None:
        """Offer a batch's samples (and their extras: logits, features, ...) to the memory."""
        raise NotImplementedError

    def insert_row(self, row: dict[str, Any]) -> None:
        """Offer one sample, its fields NumPy arrays or numbers without a batch axis (an agent's
        transition): as a batch of one here; a channel around this worker's buffer alone writes
        it in place (`RehearsalBuffer.add_row`)."""
        self.insert(batch_of_one(row))

    # ----- this worker's memory, read beside the replay ---------------------------------------

    def __len__(self) -> int:
        """The samples this worker's buffer holds."""
        return len(self.buffer)

    def __bool__(self) -> bool:
        return True  # a channel is there even while its memory is empty

    @property
    def seen(self) -> int:
        """The samples this worker's buffer has been offered."""
        return self.buffer.seen

    @property
    def capacity(self) -> int:
        return self.buffer.capacity

    @property
    def device(self) -> torch.device:
        """Where this worker's buffer keeps its samples."""
        return self.buffer.device

    def stored(self, pixels: bool = False) -> dict[str, torch.Tensor]:
        """Every sample this worker's buffer holds, every field (pixel fields as float values,
        unless `pixels`): for what a method does with its whole memory at a task's end."""
        return self.buffer.get_all(pixels)

    def uniform(self, n: int) -> dict[str, torch.Tensor]:
        """Up to `n` samples drawn uniformly from this worker's buffer, whatever the retrieval
        ({} while empty): the reference samples of an admission, a method's own draws."""
        return self.buffer.uniform_sample(n)

    def uniform_slots(self, n: int) -> np.ndarray:
        """The slots of `uniform(n)`, for a caller that gathers some fields of them only (`gather`)."""
        return self.buffer.uniform_slots(n)

    def gather(self, slots: np.ndarray | torch.Tensor, names: Collection[str] | None = None) -> dict[str, torch.Tensor]:
        """Every field (or those in `names`) of this worker's stored samples in `slots`."""
        return self.buffer.gather(slots, names)

    def class_counts(self, field: str = "y") -> dict[int, int]:
        """How many stored samples each label of `field` has."""
        return self.buffer.class_counts(field)

    def continue_draws(self, previous: ReplayChannel) -> None:
        """Draw on from where `previous`'s buffer's draws stopped: for a memory made anew to
        replace that one (holding exactly what a task's end chose), one stream of draws over a run."""
        self.buffer.generator.set_state(previous.buffer.generator.get_state())

    # ----- what the run saves of the channel and reports of it ------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {}  # the buffer's is the method's to save

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def timings(self) -> dict[str, float]:
        return {}


class LocalReplay(ReplayChannel):
    """The replay channel of a run in one process (or of workers that replay each from its own
    buffer, `--replay_scope local`), and of a memory that is only ever this worker's (exemplars
    chosen at a task's end): the buffer itself."""

    def take(self, n: int) -> dict[str, torch.Tensor]:
        return self.buffer.sample(n)

    def insert(self, fields: dict[str, torch.Tensor]) -> None:
        self.buffer.add(**fields)

    def insert_row(self, row: dict[str, Any]) -> None:
        self.buffer.add_row(**row)
