"""What makes a Lightning Fabric DDP strategy `ddp_rehearsal`: training loaders whose every batch
is joined by r representatives drawn uniformly from the union of all workers' rehearsal buffers,
fetched while the previous step computed (the exchange itself: `sylvan.buffers.global_replay`).

`RehearsalDDPStrategy` is the strategy over the standalone `lightning_fabric` package, which
sylvan's engine runs on (`sylvan.parallel.fabric_package`), registered there as "ddp_rehearsal";
`sylvan.parallel.fabric_rehearsal.FabricRehearsalStrategy` is the same over `lightning.fabric`,
for one's own loop. sylvan's runs hand it the replay channel their method asked for (made with
`join_batch=False`): the strategy then prepares each step's draws as the batch is served, and the
method takes them and inserts its new samples itself, in its own loss."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sylvan.buffers.global_replay import GlobalReplay
from sylvan.parallel.fabric_package import fabric


class ReplayingLoader:
    """`loader`'s batches, each moved to `strategy`'s device and through `replay.training_batch`
    (joined by the replay, or the step's draws prepared), the exchange completed at the end of
    every pass; its other attributes are `loader`'s."""

    def __init__(self, loader: Any, replay: GlobalReplay, strategy: Any) -> None:
        self.loader = loader
        self.replay = replay
        self.strategy = strategy

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield self.replay.training_batch(self.strategy.batch_to_device(batch))
        self.replay.wait()  # nothing stays in flight between passes (the result is kept)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        if name in ("loader", "replay", "strategy"):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.loader, name)


class ReplayingDDP:
    """Mixed in before a Fabric DDP strategy class: its loaders serve batches joined by the replay
    (`ReplayingLoader`). Give it a `GlobalReplay`, or the buffer options to build one (as
    `Fabric(strategy="ddp_rehearsal")` does, with the defaults); the other arguments are DDP's."""

    strategy_name = "ddp_rehearsal"

    def __init__(self, replay: GlobalReplay | None = None, buffer_size: int = 200, replay_size: int = 10,
                 buffer_policy: str = "reservoir", synchronous: bool = False, seed: int = 0,
                 **ddp_kwargs: Any) -> None:
        super().__init__(**ddp_kwargs)
        if replay is None:
            from sylvan.buffers import make_buffer

            replay = GlobalReplay(make_buffer(buffer_policy, buffer_size, seed=seed), replay_size, synchronous, seed)
        self.replay = replay

    def process_dataloader(self, dataloader: Any) -> Any:
        return ReplayingLoader(super().process_dataloader(dataloader), self.replay, self)


def register(strategy: type, registry: Any) -> None:
    """Register `strategy` (a `ReplayingDDP`) under its name in a Fabric strategy registry."""
    if strategy.strategy_name not in registry:
        registry.register(strategy.strategy_name, strategy,
                          description="DDP with distributed asynchronous rehearsal buffers")


class RehearsalDDPStrategy(ReplayingDDP, fabric().strategies.DDPStrategy):
    """DDP over `lightning_fabric` whose training batches are joined by r representatives of the
    global buffer."""


register(RehearsalDDPStrategy, fabric().strategies.STRATEGY_REGISTRY)
