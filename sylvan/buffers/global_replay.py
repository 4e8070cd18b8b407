"""The exchange engine of distributed asynchronous rehearsal (Bouvier et al., "Efficient
Data-Parallel Continual Learning with Asynchronous Distributed Rehearsal Buffers", CCGrid 2024);
`sylvan.parallel.fabric_rehearsal` wraps it in a Fabric strategy (and `sylvan.parallel.rehearsal_strategy`
in a Trainer strategy). It needs `torch.distributed` only.

Every data-parallel worker keeps a local rehearsal buffer (any policy); together they form the
global buffer. Each training step joins the worker's b new samples with r representatives drawn
uniformly from the union of all workers' buffers. The exchange that fetches the representatives
for the next step is issued with `async_op=True` on a process group of its own and runs while the
current step computes its forward and backward pass; inserting the new samples into the local
buffer happens on a side CUDA stream when there is one.

How a step draws uniformly from the union: every worker sends each worker a block of r
candidates drawn uniformly (without replacement) from its own buffer, with the size of that
buffer (`all_to_all_single`, equal splits). The receiver draws r distinct indices uniformly over
the concatenated buffers, counts how many fall in each worker's range (a multivariate
hypergeometric draw) and takes that many candidates from each block: exactly a uniform draw
without replacement from the union. It moves W times more candidates than it uses, in exchange
for fixed-size messages that need no negotiation round. A step may make several independent
draws (`replay_size` a sequence: DER++ replays two groups, MIR scores a larger set of
candidates): each has its own part of every block, drawn and chosen independently.

Two ways to serve a step. For any training loop (one's own on Fabric, a LightningModule),
`augment` joins the first draw to the batch (the module sees b + r samples). A method that
replays by itself (sylvan's replay methods: their loss treats replayed samples apart, DER
matches their stored logits) makes the replay with
`join_batch=False`: the strategy calls `begin_step` and the method then takes each draw with
`take` and gives the step's new samples with `insert`, which stores them (with whatever the
method keeps beside them, such as logits) and, when asynchronous, issues the next exchange.

The receiver needs the buffer sizes on the host to make that draw. On the CPU they travel in the
same message as the candidates. On CUDA, reading them from device memory would make the host wait
for every kernel queued before them (the previous step's backward pass) once per step. So there
they travel in a small collective of their own, on a CPU (gloo) group, issued with the same
`async_op=True`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from sylvan.buffers.base import RehearsalBuffer
from sylvan.buffers.channel import ReplayChannel
from sylvan.minibatches import float_inputs
from sylvan.transfer import to_device
from sylvan.workers import Workers

FIELDS = ("x", "y", "t")


class ExchangeBlocks:
    """The send and receive buffers of the exchange, allocated once on the buffer's device.

    Each is a byte tensor of one row per worker; a row holds the sender's buffer size (8 bytes),
    then r samples of each stored field, field after field, each field's bytes starting at a
    multiple of 8. Typed views (`send_fields[name]`: worker x r x sample shape) read and write
    the fields in place, so a step's candidates are gathered straight into the row that carries
    them, and all fields travel in a single collective.
    """

    ALIGN = 8  # bytes: the largest element size of the dtypes a buffer stores

    def __init__(self, storage: dict[str, torch.Tensor], replay_size: int, world_size: int) -> None:
        spans, offset = {}, self.ALIGN  # the first 8 bytes hold the sender's size
        for name, values in storage.items():
            if values.element_size() > self.ALIGN:
                raise ValueError(f"cannot exchange field {name!r} of dtype {values.dtype}")
            nbytes = replay_size * values[0].numel() * values.element_size()
            spans[name] = (offset, offset + nbytes)
            offset += -(-nbytes // self.ALIGN) * self.ALIGN
        device = next(iter(storage.values())).device
        self.send = torch.zeros((world_size, offset), dtype=torch.uint8, device=device)
        self.received = torch.zeros_like(self.send)

        def typed(rows: torch.Tensor) -> dict[str, torch.Tensor]:
            views = {}
            for name, values in storage.items():
                start, end = spans[name]
                views[name] = rows[:, start:end].view(values.dtype).view(world_size, replay_size, *values.shape[1:])
            return views

        self.send_fields, self.received_fields = typed(self.send), typed(self.received)
        self.send_sizes = self.send[:, : self.ALIGN].view(torch.int64)
        self.received_sizes = self.received[:, : self.ALIGN].view(torch.int64)


class GlobalReplay(ReplayChannel):
    """The exchange engine: local buffer, candidate blocks, pending asynchronous collectives. As
    a replay channel (`sylvan.buffers.channel`), its draws come from every worker's buffer."""

    is_global = True  # a replay channel's draws come from every worker's buffer

    def __init__(
        self,
        buffer: RehearsalBuffer,
        replay_size: int | Sequence[int],
        synchronous: bool = False,
        seed: int = 0,
        featurize: Callable[[torch.Tensor], torch.Tensor] | None = None,
        sizes_on_host: bool | None = None,
        join_batch: bool = True,
        workers: Workers | None = None,
    ) -> None:
        """`replay_size`: r, the samples each step draws from the union, or one r per independent
        draw. `sizes_on_host`: exchange the buffer sizes between CPU tensors on a gloo group of
        their own, so that the host reads them without a device synchronization; None (the
        default) does so when the buffer is on CUDA. `join_batch`: `training_batch` joins the
        first draw to the batch and inserts the batch (for any LightningModule); False: it only
        prepares the draws, for a method that takes them and inserts by itself. `workers`: the
        run's (`RunContext.workers`); by default, the process group this process is in."""
        self.buffer = buffer
        self.sizes_on_host = sizes_on_host
        self.size_group: Any = None
        self.host_sizes: tuple[torch.Tensor, torch.Tensor] | None = None  # (sent, received), int64 on the CPU
        self.featurize = featurize  # for policies that store features (herding, GRASP retrieval)
        sizes = (replay_size,) if isinstance(replay_size, int) else tuple(replay_size)
        if not sizes or any(int(size) < 0 for size in sizes):
            raise ValueError(f"replay sizes must be one or more counts >= 0, got {replay_size!r}")
        self.draw_sizes = tuple(int(size) for size in sizes)
        self.block_rows = sum(self.draw_sizes)  # rows of each worker's block: every draw's candidates
        self.join_batch = join_batch
        self._draws: list[tuple[int, dict[str, torch.Tensor]]] = []  # this step's draws not taken yet
        self._inserted = True  # whether the step since the last `begin_step` inserted its samples
        self.synchronous = synchronous
        self.seed = seed
        self.workers = workers if workers is not None else Workers(seed=seed)
        self.group: Any = None
        self.generator: torch.Generator | None = None
        self.pending: tuple[list[Any], dict[str, torch.Tensor], torch.Tensor] | None = None
        self.blocks: ExchangeBlocks | None = None
        self.side_stream: Any = None
        self.steps = 0
        # host seconds the replay adds to the training loop's critical path: all of `augment`,
        # and the part of it spent blocked on the exchange (synchronous: the whole exchange;
        # asynchronous: what the previous step's compute did not hide)
        self.critical_seconds = 0.0
        self.blocked_seconds = 0.0

    # ----- topology ---------------------------------------------------------------------------

    @property
    def world_size(self) -> int:
        return self.workers.world_size

    @property
    def rank(self) -> int:
        return self.workers.rank

    def _setup(self, device: torch.device) -> None:
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(self.workers.draw_seed(seed=self.seed))
        if self.sizes_on_host is None:
            self.sizes_on_host = device.type == "cuda"
        if self.group is None and self.world_size > 1:
            # a group of its own, so replay traffic never queues behind gradient all-reduces
            self.group = dist.new_group(backend="nccl" if device.type == "cuda" else "gloo")
            if self.sizes_on_host:
                self.size_group = dist.new_group(backend="gloo")
        if device.type == "cuda" and self.side_stream is None:
            self.side_stream = torch.cuda.Stream(device=device)

    # ----- one training step ------------------------------------------------------------------

    def training_batch(self, batch: Any) -> Any:
        """What the strategy trains on at each step: the batch joined by the first draw
        (`augment`), or, with `join_batch=False`, the batch as it is, the step's draws waiting
        for the method (`take`)."""
        if self.join_batch:
            return self.augment(batch)
        self._draws = list(zip(self.draw_sizes, self.begin_step(batch[0].device)))
        return batch

    def augment(self, batch: Any) -> Any:
        """The batch (x, y[, t]) followed by r representatives of the global buffer (the first
        draw); the batch goes into the local buffer."""
        replay = self.begin_step(batch[0].device)[0]
        fields = dict(zip(FIELDS, batch))
        self.insert(fields)
        if replay:
            start = time.perf_counter()
            device = fields["x"].device
            batch = tuple(torch.cat([fields[name], replay[name].to(device)]) for name in FIELDS[: len(batch)])
            self.critical_seconds += time.perf_counter() - start
        return batch

    def begin_step(self, device: torch.device) -> list[dict[str, torch.Tensor]]:
        """Start a training step: complete the exchange that fetched its candidates (run it now
        when synchronous) and draw each of its replays uniformly from the union. One dict of
        every stored field per draw size; {} while every buffer is empty."""
        start = time.perf_counter()
        self._setup(device)
        if not self.synchronous and not self._inserted:
            raise RuntimeError(
                "the previous training step did not insert its samples into the rehearsal buffer, so no "
                "exchange was issued for this one: a method that replays from the global buffer must call "
                "`insert` (sylvan's methods: `remember`) at every step"
            )
        if self.synchronous and self.buffer.storage:
            self._issue()
        draws = self._receive()
        self._inserted = False
        self.steps += 1
        self.critical_seconds += time.perf_counter() - start
        return draws

    def take(self, n: int) -> dict[str, torch.Tensor]:
        """The next of this step's draws (in the order of `replay_size`), cut to n samples chosen
        at random when it holds more (the step's last batch can be smaller than the others);
        {} while every buffer is empty."""
        if not self._draws:
            raise RuntimeError(
                f"this step has no draw from the global buffer left: it prepares {len(self.draw_sizes)} "
                f"(of {', '.join(map(str, self.draw_sizes))} samples); a method declares every draw it makes "
                "per step in `replay_draws`"
            )
        size, draw = self._draws[0]
        if n > size:
            raise ValueError(f"asked for {n} samples from a draw of {size} from the global buffer")
        self._draws.pop(0)
        first = next(iter(draw.values()), None)
        if first is not None and len(first) > n:
            assert self.generator is not None
            keep = to_device(torch.randperm(len(first), generator=self.generator)[:n], first.device)
            draw = {name: values.index_select(0, keep) for name, values in draw.items()}
        return draw

    def insert(self, fields: dict[str, torch.Tensor]) -> None:
        """Offer the step's new samples (and what the method keeps beside them) to the local
        buffer; when asynchronous, issue the exchange for the next step, which then travels
        while this one computes."""
        start = time.perf_counter()
        self._insert(fields)
        self._inserted = True
        if not self.synchronous:
            self._issue()
        self.critical_seconds += time.perf_counter() - start

    def timings(self) -> dict[str, float]:
        """Steps augmented so far, and the milliseconds per step the replay held the training
        loop: in all (`replay_critical_ms_per_step`) and blocked on the exchange
        (`replay_blocked_ms_per_step`). Host time: on CUDA, kernels launched but not finished
        are not counted."""
        steps = max(self.steps, 1)
        return {
            "replay_steps": self.steps,
            "replay_critical_ms_per_step": 1000 * self.critical_seconds / steps,
            "replay_blocked_ms_per_step": 1000 * self.blocked_seconds / steps,
        }

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue the replay as if never stopped: the generator of
        the draws from the union, the step count and timings, and the exchange that completed at
        the end of the last task (its candidates and sizes), which the next step draws from.
        The local buffer is saved by its owner (the method)."""
        pending = None
        if self.pending is not None:
            self.wait()
            _, fields, sizes = self.pending
            # copies: the fields are views of one byte tensor, which a checkpoint cannot hold as several dtypes
            pending = {"fields": {name: values.to("cpu", copy=True) for name, values in fields.items()},
                       "sizes": sizes.to("cpu", copy=True)}
        return {
            "generator": None if self.generator is None else self.generator.get_state(),
            "steps": self.steps, "critical_seconds": self.critical_seconds, "blocked_seconds": self.blocked_seconds,
            "pending": pending,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what `state_dict` returned, after the local buffer has been restored (the
        received candidates go into exchange blocks shaped after its storage, on its device)."""
        if state["generator"] is not None:
            self.generator = torch.Generator()
            self.generator.set_state(state["generator"])
        self.steps = state["steps"]
        self.critical_seconds, self.blocked_seconds = state["critical_seconds"], state["blocked_seconds"]
        self.pending, self._draws, self._inserted = None, [], True
        pending = state["pending"]
        if pending is not None:
            world = len(pending["sizes"])
            self.blocks = ExchangeBlocks(self.buffer.storage, self.block_rows, world)
            for name, values in pending["fields"].items():
                self.blocks.received_fields[name].copy_(values)
            self.pending = ([], self.blocks.received_fields, pending["sizes"])

    def _insert(self, fields: dict[str, torch.Tensor]) -> None:
        if self.featurize is not None:
            with torch.no_grad():
                fields = {**fields, "features": self.featurize(float_inputs(fields["x"])).detach()}
        if self.side_stream is None:
            self.buffer.add(**fields)
            return
        main = torch.cuda.current_stream(fields["x"].device)
        self.side_stream.wait_stream(main)  # the batch is ready before the side stream reads it
        with torch.cuda.stream(self.side_stream):
            self.buffer.add(**fields)
        main.wait_stream(self.side_stream)  # the next step samples from an up-to-date buffer

    def _issue(self) -> None:
        """Send every worker a block of candidates from the local buffer (every draw's), and its size."""
        world = self.world_size
        if self.block_rows == 0 or not self.buffer.storage:
            return
        if self.blocks is None:
            self.blocks = ExchangeBlocks(self.buffer.storage, self.block_rows, world)
        blocks, size = self.blocks, len(self.buffer)
        for receiver in range(world):  # an independent draw for every receiver, and every draw size
            start = 0
            for count in self.draw_sizes:
                chosen = self.buffer.draw(count)
                index = to_device(chosen, blocks.send.device)
                for name, values in self.buffer.storage.items():
                    rows = blocks.send_fields[name][receiver, start : start + len(chosen)]
                    torch.index_select(values, 0, index, out=rows)
                start += count
        if self.host_sizes is None:
            self.host_sizes = (torch.zeros(world, dtype=torch.int64), torch.zeros(world, dtype=torch.int64))
        sent_sizes, received_sizes = self.host_sizes
        sent_sizes.fill_(size)
        if world == 1:  # the size is this worker's own: known on the host
            self.pending = ([], blocks.send_fields, sent_sizes)
            return
        if self.sizes_on_host:
            size_handle = dist.all_to_all_single(received_sizes, sent_sizes, group=self.size_group, async_op=True)
            handles, sizes = [size_handle], received_sizes
        else:  # the sizes travel in the rows of the candidates' message
            blocks.send_sizes.fill_(size)
            handles, sizes = [], blocks.received_sizes
        # one collective for every field (and the sizes): they travel as the rows of one byte tensor
        handles.append(dist.all_to_all_single(blocks.received, blocks.send, group=self.group, async_op=True))
        self.pending = (handles, blocks.received_fields, sizes)

    def wait(self) -> None:
        """Complete the exchange in flight (its result is kept for the next step)."""
        if self.pending is not None:
            for handle in self.pending[0]:
                handle.wait()
            self.pending = ([], self.pending[1], self.pending[2])

    def _receive(self) -> list[dict[str, torch.Tensor]]:
        """Wait for the exchange in flight and make each draw uniformly from the union."""
        if self.pending is None:
            return [{} for _ in self.draw_sizes]
        start = time.perf_counter()
        self.wait()
        self.blocked_seconds += time.perf_counter() - start
        _, fields, sizes = self.pending
        self.pending = None
        sizes_np = sizes.cpu().numpy().reshape(-1).astype(np.int64)
        device = next(iter(fields.values())).device
        draws, offset = [], 0
        for count in self.draw_sizes:
            chosen = self.choose_from_union(sizes_np, count, offset)
            offset += count
            if not len(chosen):
                draws.append({})
                continue
            rows = to_device(chosen, device)
            sender, row = rows // self.block_rows, rows % self.block_rows
            # advanced indexing copies: the blocks can be overwritten by the next exchange; pixel
            # fields travel as stored (uint8) and become the method's float values here
            draws.append({name: self.buffer.decoded(name, values[sender, row]) for name, values in fields.items()})
        return draws

    def choose_from_union(self, sizes: np.ndarray, count: int | None = None, offset: int = 0) -> np.ndarray:
        """Rows of the received blocks that form a uniform draw without replacement of
        min(count, total) samples from the union (count: the first draw size by default).
        Worker w's block holds rows w*R .. w*R + R - 1 (R: all draw sizes together), and the
        candidates of the draw at `offset` from row w*R + offset on."""
        block, total = self.block_rows, int(sizes.sum())
        count = min(self.draw_sizes[0] if count is None else count, total)
        if count == 0:
            return np.empty(0, dtype=np.int64)
        assert self.generator is not None
        draws = torch.randperm(total, generator=self.generator)[:count].numpy()
        owners = np.searchsorted(np.cumsum(sizes), draws, side="right")
        per_worker = np.bincount(owners, minlength=len(sizes))
        rows = [w * block + offset + np.arange(k) for w, k in enumerate(per_worker) if k]
        return np.concatenate(rows).astype(np.int64)
