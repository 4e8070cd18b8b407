"""Distributed asynchronous rehearsal as a Lightning strategy: DDP whose every training batch is
joined by r representatives drawn uniformly from the union of all workers' rehearsal buffers,
fetched while the previous step computes (the exchange itself: `sylvan.buffers.global_replay`).

Importing this module registers the strategy with Lightning as "ddp_rehearsal".
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

from sylvan.buffers.global_replay import GlobalReplay
from sylvan.parallel.launcher import ReportsDeadWorkers


class DataParallelStrategy(ReportsDeadWorkers, DDPStrategy):
    """Lightning's DDP, its workers' deaths reported by the run (`sylvan.parallel.launcher`)."""


class DistributedRehearsalStrategy(ReportsDeadWorkers, DDPStrategy):
    """DDP whose every training batch is joined by r representatives of the global buffer.

    Registered as "ddp_rehearsal". Give it a `GlobalReplay`, or the buffer options to build one.
    On the `distributed` setting sylvan's replay methods give theirs, made with
    `join_batch=False`: the strategy then prepares each step's draws, and the method replays them
    in its own loss and inserts its new samples itself.
    """

    strategy_name = "ddp_rehearsal"

    def __init__(
        self,
        replay: GlobalReplay | None = None,
        buffer_size: int = 200,
        replay_size: int = 10,
        buffer_policy: str = "reservoir",
        synchronous: bool = False,
        seed: int = 0,
        **ddp_kwargs: Any,
    ) -> None:
        super().__init__(**ddp_kwargs)
        if replay is None:
            from sylvan.buffers import make_buffer

            replay = GlobalReplay(make_buffer(buffer_policy, buffer_size, seed=seed), replay_size, synchronous, seed)
        self.replay = replay

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        batch, *rest = args
        return super().training_step(self.replay.training_batch(batch), *rest, **kwargs)

    def teardown(self) -> None:
        self.replay.wait()  # nothing stays in flight across tasks (the result is kept)
        super().teardown()


StrategyRegistry.register(
    DistributedRehearsalStrategy.strategy_name,
    DistributedRehearsalStrategy,
    description="DDP with distributed asynchronous rehearsal buffers",
)
