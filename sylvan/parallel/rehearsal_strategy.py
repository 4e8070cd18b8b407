"""Distributed asynchronous rehearsal as a Lightning Trainer strategy, a plugin for one's own
`LightningModule` projects: DDP whose every training batch is joined by r representatives drawn
uniformly from the union of all workers' rehearsal buffers, fetched while the previous step
computes (the exchange itself: `sylvan.buffers.global_replay`; sylvan's own runs train through
the Fabric strategy of the same name, `sylvan.parallel.fabric_rehearsal`).

Importing this module registers the strategy with Lightning's Trainer as "ddp_rehearsal".
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

from sylvan.buffers.global_replay import GlobalReplay


class DistributedRehearsalStrategy(DDPStrategy):
    """DDP whose every training batch is joined by r representatives of the global buffer.

    Registered as "ddp_rehearsal". Give it a `GlobalReplay`, or the buffer options to build one.
    A `GlobalReplay` made with `join_batch=False` leaves the batch as it is and prepares each
    step's draws, for a module that replays them in its own loss and inserts its new samples
    itself.
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
