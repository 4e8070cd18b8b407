"""The rehearsal-buffer interface: fixed capacity, preallocated tensors, vectorized I/O.

A buffer stores samples under named fields ("x", "y", "t", "logits", ...). The storage for
each field is allocated once, on the buffer's device (CPU or CUDA), at the first insertion, with
the shape of one sample times the capacity. Insertion and sampling move whole index vectors,
never one sample at a time.

Which slots to write and which to read is small index arithmetic: it runs on the CPU (NumPy on a
few hundred integers), driven by a CPU `torch.Generator`, so that the choices are reproducible,
survive `state_dict()` / `load_state_dict()`, and never make a CUDA buffer wait on a device
synchronization; only the resulting index vectors travel to the device (through pinned memory,
see `sylvan.transfer`), where the data stay.

Fields named in `pixel_fields` hold images of uint8 pixels k, which methods see as float32
k / 255 (`sylvan.minibatches.float_inputs`). They are stored as the pixels, a quarter of the
memory (and of the bytes each insertion writes, and each distributed exchange sends): a method
hands the buffer float values k / 255, which it stores as k (255 times them rounds back to k
exactly; uint8 pixels are stored as they are), and reads back as the very same float32 values,
made the way the loaders make them.

Each field's storage has one spare row past the capacity. On the device, a batch is written
with one scatter per field: every sample of the batch has a target row, and the samples the
policy turns away target the spare row, which is never read. That is one kernel launch per field
instead of a gather and a scatter of the accepted samples, and the launches, not the bytes,
are what a GPU insertion costs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Collection, Mapping, Sequence

import numpy as np
import torch

from sylvan.buffers.retrieval import RETRIEVALS, make_retrieval
from sylvan.errors import ConfigurationError
from sylvan.minibatches import float_inputs
from sylvan.transfer import to_device


def saved_device(state: Mapping[str, Any]) -> torch.device | None:
    """The device a saved buffer lived on, where this machine has it: a checkpoint is loaded on
    the CPU (a GPU buffer included), and a buffer that took its device from the batches it was
    given goes back to that device, so that its draws meet the model there."""
    device = state.get("device")
    if device is None or (device.startswith("cuda") and not torch.cuda.is_available()):
        return None
    return torch.device(device)


_PIXEL_SCALE = np.float32(255)
# gathered pixels decoded by NumPy below this many elements, by torch from it (see `_decoded_host`)
NUMPY_DECODE_ELEMENTS = 50_000


def record_rows(array: np.ndarray) -> np.ndarray | None:
    """The rows of `array` (along its first axis) as a 1-D array of opaque records, each the
    bytes of one row, sharing `array`'s memory; None where a row is a single element or the
    array's rows are not contiguous. NumPy's fancy indexing copies a multi-dimensional row
    element by element, a record as one block: fewer, larger copies when rows of an image batch
    are written into a buffer."""
    if array.ndim < 2 or not array.flags.c_contiguous:
        return None
    row_bytes = array.itemsize * int(np.prod(array.shape[1:]))
    if row_bytes == 0:
        return None
    return array.reshape(len(array), row_bytes // array.itemsize).view(np.dtype((np.void, row_bytes)))[:, 0]


def batch_of_one(row: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """One sample's fields (NumPy arrays or numbers, no batch axis) as a batch of one: tensors
    that view the values with a batch axis added (no copy where a value is already an array)."""
    return {name: torch.from_numpy(np.asarray(value)[None]) for name, value in row.items()}


class RehearsalBuffer:
    """Base class: storage, sampling and persistence. A policy decides which slots new samples
    take by implementing `_select_slots`; it may free slots with `_remove_slots`."""

    policy: str = "base"
    # the dataclass of the policy's own options (`POLICY_OPTIONS`), or None for a policy without any
    options: ClassVar[type | None] = None
    # whether the policy chooses the slot of a single sample without reading it (`_slot_of_one`)
    _one_slot: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a subclass that chooses slots for batches anew chooses them for one sample anew too
        cls._one_slot = "_slot_of_one" in cls.__dict__ or (cls._one_slot and "_select_slots" not in cls.__dict__)

    def __init__(
        self,
        capacity: int,
        device: torch.device | str | None = None,
        seed: int = 0,
        retrieval: str = "uniform",
        pixel_fields: Sequence[str] = (),
    ) -> None:
        """`pixel_fields`: the fields that hold images, kept as their uint8 pixels (see above)."""
        if capacity < 0:
            raise ConfigurationError(f"buffer capacity must be >= 0, got {capacity}")
        if retrieval not in RETRIEVALS:
            raise ConfigurationError(f"retrieval must be one of {', '.join(RETRIEVALS)}, got {retrieval!r}")
        self.retrieval = make_retrieval(retrieval, capacity)  # which stored samples a draw replays
        self.pixel_fields = frozenset(pixel_fields)
        self.capacity = int(capacity)
        self.device = torch.device(device) if device is not None else None
        self.seed = seed
        self.storage: dict[str, torch.Tensor] = {}  # field -> its first `capacity` rows
        self._rows: dict[str, torch.Tensor] = {}  # field -> capacity + 1 rows: the spare row last
        # NumPy views of CPU storage: on the CPU, NumPy's fancy assignment writes rows several
        # times faster than torch's index_copy_; None where the storage is on CUDA (or a dtype
        # NumPy lacks), where torch writes on the device
        self._host_views: dict[str, np.ndarray] | None = None
        # the same storage as `record_rows` (fields with more than one element per sample): rows
        # of the same dtype are copied through these, each row as one block
        self._host_records: dict[str, np.ndarray] = {}
        self.size = 0
        self.seen = 0
        self.replaced = 0  # samples written over a stored one (the buffer's turnover once full)
        self.generator = torch.Generator().manual_seed(seed)
        # output of `_uniform(..., reuse=True)`; not state: it holds nothing once consumed
        self._reused_uniform = torch.empty(0, dtype=torch.float64)
        self._reused_uniform_view = self._reused_uniform.numpy()

    def __len__(self) -> int:
        return self.size

    @property
    def is_full(self) -> bool:
        return self.size >= self.capacity

    # ----- random numbers (CPU, reproducible) ---------------------------------------------------

    def _uniform(self, count: int, reuse: bool = False) -> np.ndarray:
        """`count` floats uniform in [0, 1), as float64 (exact for stream indices < 2**53): the
        values of `torch.rand(count, generator=self.generator)`. With `reuse`, for the draws of
        every batch, they are written into the front of an array kept for the next such call,
        which overwrites them (consume them at once): no allocation, no conversion per batch."""
        if not reuse:
            return torch.rand(count, generator=self.generator, dtype=torch.float64).numpy()
        kept = self._reused_uniform
        if count > len(kept):
            kept = self._reused_uniform = torch.empty(count, dtype=torch.float64)
            self._reused_uniform_view = kept.numpy()
        if count == len(kept):  # the usual case, a batch as large as the last: no slicing
            kept.uniform_(generator=self.generator)
            return self._reused_uniform_view
        kept[:count].uniform_(generator=self.generator)
        return self._reused_uniform_view[:count]

    def _permutation(self, count: int) -> np.ndarray:
        return torch.randperm(count, generator=self.generator).numpy()

    def _choose(self, population: int, count: int) -> np.ndarray:
        """`count` distinct integers drawn uniformly from range(population), in random order."""
        count = min(count, population)
        if 4 * count >= population:
            return self._permutation(population)[:count]
        chosen: dict[int, None] = {}  # the distinct draws in the order drawn (a dict keeps it)
        while len(chosen) < count:  # rejection of repeats: one round but for rare collisions
            draws = torch.randint(population, (count + count // 4 + 4,), generator=self.generator)
            chosen.update(dict.fromkeys(draws.tolist()))
        return np.fromiter(chosen, dtype=np.int64, count=len(chosen))[:count]

    # ----- insertion ----------------------------------------------------------------------------

    def _allocate(self, batch: Mapping[str, torch.Tensor]) -> None:
        """Storage for the fields of `batch` (shape of one sample and dtype), on `self.device`
        (the batch's device if the buffer has none yet)."""
        if self.device is None:
            self.device = next(iter(batch.values())).device
        self._rows = {
            name: torch.empty((self.capacity + 1, *values.shape[1:]), dtype=self._stored_dtype(name, values),
                              device=self.device)
            for name, values in batch.items()
        }
        self.storage = {name: rows[: self.capacity] for name, rows in self._rows.items()}
        self.device = next(iter(self._rows.values())).device  # "cuda" resolved to "cuda:0", ...
        self._host_views = self._numpy_views(self.storage)
        records = {name: record_rows(values) for name, values in (self._host_views or {}).items()}
        self._host_records = {name: values for name, values in records.items() if values is not None}

    def planned_bytes(self, fields: Mapping[str, torch.Tensor]) -> int:
        """The bytes of the storage `_allocate` makes for samples whose fields are like `fields`
        (a batch of any size): every stored row (the spare one included) at its stored dtype.
        What a buffer of fixed capacity will hold, known before its first sample arrives."""
        if not self.capacity:
            return 0
        row = sum(values[0].numel() * self._stored_dtype(name, values).itemsize for name, values in fields.items())
        return (self.capacity + 1) * row

    def _stored_dtype(self, name: str, values: torch.Tensor) -> torch.dtype:
        return torch.uint8 if name in self.pixel_fields else values.dtype

    def _encoded(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """`values` of field `name` as stored: float pixels k / 255 as uint8 k."""
        if name not in self.pixel_fields or values.dtype == torch.uint8:
            return values
        return values.mul(255).round_().to(torch.uint8)

    @staticmethod
    def _encoded_host(rows: np.ndarray) -> np.ndarray:
        """`_encoded` for `rows` of a pixel field on the host (a copy, scaled in place: no
        temporary); the uint8 storage they are assigned to takes the whole numbers."""
        if rows.dtype != np.uint8:
            np.multiply(rows, 255, out=rows)
            np.rint(rows, out=rows)
        return rows

    def decoded(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """Stored `values` of field `name` as the method gave them: uint8 pixels of a pixel field
        back to float32 k / 255, the same values bit for bit; any other field as it is."""
        return float_inputs(values) if name in self.pixel_fields else values

    @staticmethod
    def _numpy_views(storage: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray] | None:
        try:
            return {name: values.numpy() for name, values in storage.items()}
        except (TypeError, RuntimeError):  # on CUDA, or a dtype such as bfloat16
            return None

    def add(self, **batch: torch.Tensor) -> None:
        """Offer a batch of new samples (fields of equal first dimension) to the buffer."""
        if not batch:
            raise ValueError("add() needs at least one field, e.g. add(x=..., y=...)")
        count = -1
        for values in batch.values():
            if values.shape[0] != count and count >= 0:
                raise ValueError("all fields of a batch must have the same number of samples")
            count = values.shape[0]
        if self.storage and batch.keys() != self.storage.keys():
            raise ValueError(f"fields {sorted(batch)} differ from stored {sorted(self.storage)}")
        if count and self.capacity:
            if not self.storage:
                self._allocate(batch)
            held = self.size
            slots, positions = self._select_slots(batch, count)
            if held:  # an empty buffer replaces nothing
                self.replaced += int(np.count_nonzero(slots < held))
            if len(slots):
                self._write(slots, positions, batch)
        self.seen += count

    def add_row(self, **row: Any) -> None:
        """Offer one sample whose fields are NumPy arrays or numbers of that sample alone (no batch
        axis): what `add` does with a batch of one, without a tensor per field (an agent stores a
        transition at every environment step, where building them cost more than the write).
        Where the storage is on the host and the policy picks one sample's slot without reading it
        (`_slot_of_one`), the fields are written through NumPy's views of the storage, cast to its
        dtypes as NumPy's assignment casts; otherwise (before the first sample, whose fields' dtypes
        the storage takes; on CUDA; pixel fields; a policy that reads the sample) through `add`."""
        host = self._host_views
        if host is None or not self._one_slot or self.pixel_fields:
            self.add(**batch_of_one(row))
            return
        if row.keys() != host.keys():
            raise ValueError(f"fields {sorted(row)} differ from stored {sorted(host)}")
        held = self.size
        slot = self._slot_of_one()
        if slot is not None:
            for name, value in row.items():
                host[name][slot] = value
            if slot < held:
                self.replaced += 1
            self.retrieval.stored(np.array([slot]))
        self.seen += 1

    def _slot_of_one(self) -> int | None:
        """The slot one new sample takes (None: turned away), setting `self.size`: what
        `_select_slots` chooses for a batch of one, for a policy whose choice reads no field of it."""
        raise NotImplementedError

    def _select_slots(self, batch: Mapping[str, torch.Tensor], count: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (slots, positions) as int64 arrays: batch sample `positions[k]` goes into
        `slots[k]`; slots are distinct and below the new `self.size`, which this method sets, and
        positions are distinct.
        `self.seen` still counts the samples before this batch."""
        raise NotImplementedError

    def _write(self, slots: np.ndarray, positions: np.ndarray, batch: Mapping[str, torch.Tensor]) -> None:
        host = self._host_views
        on_device = self._all_on(batch, self.device)
        count = next(iter(batch.values())).shape[0]
        if host is not None and on_device:  # CPU storage that NumPy can view
            # every sample of the batch, in batch order (FIFO-like policies): the rows are read in place
            whole = len(positions) == count and (count == 1 or bool((positions == np.arange(count)).all()))
            records = self._host_records
            for name, values in batch.items():
                rows = (values.detach() if values.requires_grad else values).numpy()
                stored = host[name]
                if (name in records and rows.dtype == stored.dtype and rows.flags.c_contiguous
                        and rows.shape[1:] == stored.shape[1:]):
                    batch_records = np.frombuffer(rows, dtype=records[name].dtype)  # one call: a view
                    records[name][slots] = batch_records if whole else batch_records.take(positions)
                    continue
                if name in self.pixel_fields and rows.dtype != np.uint8:  # scaled in place: a copy first
                    rows = self._encoded_host(rows.copy() if whole else rows[positions])
                elif not whole:
                    rows = rows[positions]
                stored[slots] = rows
        elif on_device:
            targets = np.full(count, self.capacity, dtype=np.int64)  # turned away: the spare row
            targets[positions] = slots
            target_index = to_device(targets, self.device)
            for name, values in batch.items():
                self._rows[name].index_copy_(0, target_index, self._encoded(name, values.detach()))
        else:  # the batch lives elsewhere: move only the accepted samples
            slot_index = to_device(slots, self.device)
            for name, values in batch.items():
                taken = self._encoded(name, values.detach().index_select(0, to_device(positions, values.device)))
                self.storage[name].index_copy_(0, slot_index, taken.to(self.device, non_blocking=True))
        self.retrieval.stored(slots)

    @staticmethod
    def _all_on(batch: Mapping[str, torch.Tensor], device: torch.device) -> bool:
        if device.type == "cpu":  # the usual case, told without a device object per field
            for values in batch.values():
                if not values.is_cpu:
                    return False
            return True
        for values in batch.values():
            if values.device != device:
                return False
        return True

    def _remove_slots(self, slots: np.ndarray) -> None:
        """Free `slots` and keep the occupied slots contiguous in [0, size): the last occupied
        slots move into the holes, so the cost grows with the number removed, not the capacity."""
        if len(slots) == 0:
            return
        self._on_remove(slots)
        new_size = self.size - len(slots)
        removed = np.zeros(self.size, dtype=bool)
        removed[slots] = True
        holes = np.flatnonzero(removed[:new_size])
        movers = new_size + np.flatnonzero(~removed[new_size:])
        if len(holes):
            self._move(movers, holes)
        self.size = new_size

    def _on_remove(self, slots: np.ndarray) -> None:
        """Hook: `slots` are about to be freed."""

    def _move(self, sources: np.ndarray, targets: np.ndarray) -> None:
        if self._host_views is not None:
            for name, values in self._host_views.items():
                values = self._host_records.get(name, values)
                values[targets] = values[sources]
        else:
            source_index = to_device(sources, self.device)
            target_index = to_device(targets, self.device)
            for values in self.storage.values():
                values.index_copy_(0, target_index, values.index_select(0, source_index))
        self.retrieval.moved(sources, targets)

    # ----- retrieval ----------------------------------------------------------------------------

    def draw(self, n: int) -> np.ndarray:
        """The slots of min(n, len(self)) distinct stored samples, chosen by the buffer's
        retrieval (`sylvan.buffers.retrieval`: uniformly at random, or in the order it keeps)."""
        if n <= 0 or self.size == 0:
            return np.empty(0, dtype=np.int64)
        return self.retrieval.draw(self, int(n))

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        """Draw min(n, len(self)) distinct stored samples (see `draw`), every field."""
        chosen = self.draw(n)
        return self.gather(chosen) if len(chosen) else {}

    def uniform_sample(self, n: int) -> dict[str, torch.Tensor]:
        """min(n, len(self)) distinct stored samples drawn uniformly, whatever the retrieval, and
        leaving its record of replays alone: for draws that are not replays (the samples a new
        sample's gradient is compared with, a copy of the network fine-tuned on the buffer).
        {} while empty."""
        slots = self.uniform_slots(n)
        return self.gather(slots) if len(slots) else {}

    def uniform_slots(self, n: int) -> np.ndarray:
        """The slots `uniform_sample` draws, for a caller that gathers some fields of them only."""
        if n <= 0 or self.size == 0:
            return np.empty(0, dtype=np.int64)
        return self._choose(self.size, n)

    def gather(self, slots: np.ndarray | torch.Tensor, names: Collection[str] | None = None) -> dict[str, torch.Tensor]:
        """Every field (or those in `names`) of the samples in `slots` (slot numbers, on the host
        or on the buffer's device), pixel fields as float values: only those rows are copied and
        decoded."""
        host = self._host_views
        if host is not None and isinstance(slots, np.ndarray):  # CPU storage: NumPy, a call per field
            return {name: self._decoded_host(name, values.take(slots, axis=0))
                    for name, values in host.items() if names is None or name in names}
        on_device = isinstance(slots, torch.Tensor) and slots.device == self.device
        index = slots if on_device else to_device(slots, self.device)
        return {name: self.decoded(name, values.index_select(0, index))
                for name, values in self.storage.items() if names is None or name in names}

    def _decoded_host(self, name: str, rows: np.ndarray) -> torch.Tensor:
        """`decoded` for `rows` gathered from the host storage (NumPy's `take` copies each row as
        one block), as a tensor: uint8 pixels of a pixel field become float32 k / 255 by the same
        correctly rounded float32 division, so the same values bit for bit; NumPy divides a few
        rows in less time than a torch call costs, torch many rows faster."""
        if name not in self.pixel_fields:
            return torch.from_numpy(rows)
        if rows.size < NUMPY_DECODE_ELEMENTS:
            return torch.from_numpy(np.divide(rows, _PIXEL_SCALE, dtype=np.float32))
        return float_inputs(torch.from_numpy(rows))

    def get_all(self, pixels: bool = False) -> dict[str, torch.Tensor]:
        """Every stored sample, in slot order: pixel fields as float values (a copy), or with
        `pixels` as the stored uint8 pixels (views, for another buffer's `add`). Other fields are
        views of the storage: the next `add` may overwrite them (copy what must outlast it)."""
        return {name: values[: self.size] if pixels else self.decoded(name, values[: self.size])
                for name, values in self.storage.items()}

    def class_counts(self, field: str = "y") -> dict[int, int]:
        """How many stored samples carry each label of `field`."""
        if self.size == 0:
            return {}
        labels, counts = torch.unique(self.storage[field][: self.size], return_counts=True)
        return {int(k): int(v) for k, v in zip(labels.tolist(), counts.tolist())}

    # ----- persistence --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: contents, counters and the generator's state."""
        return {
            "policy": self.policy,
            "capacity": self.capacity,
            "size": self.size,
            "seen": self.seen,
            "replaced": self.replaced,
            "storage": {k: v.clone() for k, v in self.storage.items()},
            "device": None if self.device is None else str(self.device),
            "generator": self.generator.get_state(),
            **self.retrieval.state_dict(),
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
        self.replaced = int(state.get("replaced", 0))  # (absent from checkpoints written before it was counted)
        if state["storage"]:
            if self.device is None:
                self.device = saved_device(state) or next(iter(state["storage"].values())).device
            self._allocate(state["storage"])
            for name, values in state["storage"].items():
                self.storage[name].copy_(self._encoded(name, values))  # saved before pixels were kept as uint8
        self.generator.set_state(state["generator"])
        self.retrieval.load_state_dict(state)
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass
