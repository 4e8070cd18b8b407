"""`--memory_budget BYTES`: the most a method may hold (its network and everything it keeps
beyond it, as `sylvan.run.accounting.memory_account` counts them) at the end of the stream.

Where the end is known before training (a rehearsal buffer has a fixed capacity, networks and
experts are allocated when the method is configured), a run whose method would exceed the
budget is refused before it trains. What only training reveals (extras a method stores with
its samples, a network that grows) is checked after every stage: the first stage that ends
above the budget stops the run, its results and checkpoints written first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch

from sylvan.errors import ConfigurationError, RunFailedError
from sylvan.run.accounting import memory_account


class MemoryBudgetExceeded(RunFailedError):
    """A run's method held more than `--memory_budget` after a stage."""


@dataclass
class MemoryBudgetOptions:
    """The option of a memory budget (a dataclass the supervised settings' fields come from)."""

    # the most bytes the method may hold at the end of the stream (its network and everything it
    # keeps beyond it: stored samples, logits, teachers, importance, masks, experts): a run that
    # would exceed it is refused before training where that is known then (a buffer's fixed
    # size, networks allocated up front), and stopped after the first task it ends above it
    # otherwise (default: no budget)
    memory_budget: Optional[int] = None

    def check_memory_budget(self) -> None:
        if self.memory_budget is not None and self.memory_budget < 1:
            raise ConfigurationError(f"--memory_budget must be a number of bytes >= 1, got {self.memory_budget}")


def _buffers(method: Any) -> list[Any]:
    """The rehearsal buffers `method` holds as attributes, or in lists, tuples or dicts of them,
    itself or behind a replay channel; each once."""
    from sylvan.buffers.base import RehearsalBuffer
    from sylvan.buffers.channel import ReplayChannel

    found: dict[int, Any] = {}
    for value in vars(method).values():
        members = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        for member in members:
            buffer = member.buffer if isinstance(member, ReplayChannel) else member
            if isinstance(buffer, RehearsalBuffer):
                found.setdefault(id(buffer), buffer)
    return list(found.values())


def example_fields(method: Any, run: Any) -> dict[str, torch.Tensor]:
    """The fields a buffer of `method` keeps for one sample of `run`'s stream, as the method hands
    them over: those of its `stored_example()` where it has one (a transition of an
    environment), else inputs, labels and task labels where the setting gives them."""
    from sylvan.minibatches import Batch

    if hasattr(method, "stored_example"):
        return method.stored_example()
    task_label = torch.zeros(1, dtype=torch.int64) if run.task_labels_at_train else None
    batch = Batch(torch.zeros(1, *run.input_shape), torch.zeros(1, dtype=torch.int64), task_label)
    stored = getattr(method, "stored_fields", None)
    return stored(batch) if stored is not None else batch.fields()


def planned_memory(method: Any, run: Any) -> dict[str, int]:
    """What a freshly configured `method` will hold at least at the end of `run`'s stream, in
    bytes: "held", what it holds now (its network, networks allocated up front) and what it will
    add at least as the stream goes (`least_growth()`, where it has one), and "buffers",
    the storage its empty rehearsal buffers allocate for their capacity when the first samples
    arrive. A lower bound: extras stored with the samples (logits, features) are not known
    before the first step."""
    fields = None
    planned = 0
    for buffer in _buffers(method):
        if buffer.storage:  # allocated: counted in what the method holds
            continue
        fields = fields if fields is not None else example_fields(method, run)
        planned += buffer.planned_bytes(fields)
    held = memory_account(method)
    growth = getattr(method, "least_growth", None)  # a network that grows as tasks come
    grows = growth() if growth is not None else 0
    return {"held": held["network"] + held["kept"] + grows, "buffers": planned}


def refuse_over_budget(method: Any, run: Any, budget: int | None, planned: dict[str, int] | None = None) -> None:
    """Raise `ConfigurationError` where `method`, configured for `run`, will hold more than
    `budget` bytes at the end of the stream however it trains (`planned_memory`, where the
    caller has not computed it: `planned`)."""
    if budget is None:
        return
    planned = planned if planned is not None else planned_memory(method, run)
    total = planned["held"] + planned["buffers"]
    if total <= budget:
        return
    buffers = f" and its buffers' storage {planned['buffers']:,}" if planned["buffers"] else ""
    raise ConfigurationError(
        f"--memory_budget {budget:,}: {method.name} would hold at least {total:,} bytes at the end of the stream "
        f"(its networks and state {planned['held']:,}{buffers}); raise the budget, or make the method smaller "
        "(a smaller buffer, a smaller network)"
    )


def held_after_last_stage(results: Any) -> int | None:
    """The bytes the method held after the last stage `results` record (None without a cost account)."""
    if not results.has_cost or not results.network_bytes:
        return None
    return results.network_bytes[-1] + results.kept_bytes[-1]


def stop_over_budget(results: Any, stage: int, nb_stages: int, budget: int | None, method_name: str,
                     tracker: Any = None) -> None:
    """Raise `MemoryBudgetExceeded` where what the method held after `stage` (of `nb_stages`;
    the last entry of `results`' memory accounting) is more than `budget` bytes; the message
    says where the results of the finished stages are (the run's folder, where `tracker` writes one)."""
    held = held_after_last_stage(results)
    if budget is None or held is None or held <= budget:
        return
    where = f"in {tracker.run_dir}" if tracker is not None else "in the results returned so far"
    raise MemoryBudgetExceeded(
        f"--memory_budget {budget:,}: {method_name} held {held:,} bytes after stage {stage + 1} of {nb_stages} "
        f"(network {results.network_bytes[-1]:,}, kept beyond it {results.kept_bytes[-1]:,}), so the run stops; "
        f"the results of the stages finished so far are {where}"
    )


def refuse_resuming_over_budget(results: Any, stage: int, budget: int | None, method_name: str) -> None:
    """Raise `ConfigurationError` where the run whose checkpoint after `stage` recorded `results`
    was stopped by its `budget`: resumed, it would train one more stage and stop again, further
    over it. The message gives the budget it would need at least."""
    held = held_after_last_stage(results)
    if budget is None or held is None or held <= budget:
        return
    raise ConfigurationError(
        f"--resume: the run stopped over its --memory_budget {budget:,}: {method_name} held {held:,} bytes after "
        f"stage {stage + 1}, and holds more with every stage; resumed, it would stop again. Its results so far "
        f"are kept; to train further, start it again with --memory_budget of at least {held:,} bytes (more for "
        "the stages to come)"
    )


def machine_memory(device: Any) -> int:
    """The bytes of memory where tensors on `device` live: the GPU's, or the machine's RAM."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device.index or 0).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def refuse_beyond_machine(method: Any, run: Any, planned: dict[str, int]) -> None:
    """Raise `ConfigurationError` where the rehearsal buffers of `method`, configured for `run`,
    would allocate more than the memory of the machine (or GPU) they live on (`planned`:
    `planned_memory`): the allocation would fail, or swap the machine to a standstill, once the
    first samples arrive."""
    buffers = planned["buffers"]
    device = getattr(run, "device", None)
    available = machine_memory(device)
    if buffers <= available:
        return
    size = getattr(method, "buffer_size", None)
    option = f"--buffer_size {size:,}" if size is not None else "the method's buffers"
    where = "GPU" if torch.device(device or "cpu").type == "cuda" else "machine"
    raise ConfigurationError(
        f"{option}: {method.name}'s buffer would allocate {buffers:,} bytes, more than this {where}'s "
        f"{available:,} bytes of memory; give a smaller --buffer_size"
    )


def refuse_over_budget_ahead(setting: Any, method: Any) -> None:
    """`refuse_over_budget` and `refuse_beyond_machine` before a run starts (before its folder is
    written), for a run with a memory budget or a method with a rehearsal buffer: on a copy of
    `method` configured outside the run, its inputs taken as uint8 pixels, the smallest a stored
    input can be (so that the bound stays a lower one), the global generators left as they were.
    Data-parallel runs are checked by their run, once its workers are up."""
    budget = getattr(setting, "memory_budget", None)
    if getattr(setting, "world_size", 1) > 1 or setting.data_parallel:
        return
    if budget is None and not hasattr(method, "buffer_size"):
        return
    import copy

    from sylvan.run.checkpoints import restore_rng_states, rng_states
    from sylvan.run.context import RunContext

    states = rng_states()
    try:
        probe, run = copy.deepcopy(method), RunContext.standalone(setting)
        run.pixel_inputs = True
        probe.configure(run)
        planned = planned_memory(probe, run)
        refuse_beyond_machine(probe, run, planned)
        refuse_over_budget(probe, run, budget, planned)
    finally:
        restore_rng_states(states)
