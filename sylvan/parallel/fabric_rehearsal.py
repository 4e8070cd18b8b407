"""Distributed asynchronous rehearsal as a Lightning Fabric strategy, for anyone's own loop.

`Fabric(strategy="ddp_rehearsal", devices=N)` (registered when this module is imported, with
`lightning.fabric` and with the standalone `lightning_fabric`) is DDP whose training loaders, set
up with `fabric.setup_dataloaders`, serve every batch joined by r representatives drawn uniformly
from the union of all workers' rehearsal buffers, fetched while the previous step computed
(`sylvan.parallel.rehearsal_ddp`; the exchange itself: `sylvan.buffers.global_replay`). The
Trainer strategy of the same name (`sylvan.parallel.rehearsal_strategy`) wraps the same
`GlobalReplay`.
"""

from __future__ import annotations

from lightning.fabric.strategies import STRATEGY_REGISTRY, DDPStrategy

from sylvan.parallel.rehearsal_ddp import RehearsalDDPStrategy, ReplayingDDP, ReplayingLoader, register

__all__ = ["FabricRehearsalStrategy", "RehearsalDDPStrategy", "ReplayingLoader"]


class FabricRehearsalStrategy(ReplayingDDP, DDPStrategy):
    """DDP over `lightning.fabric` whose training batches are joined by r representatives of the
    global buffer. Give it a `GlobalReplay`, or the buffer options to build one."""


register(FabricRehearsalStrategy, STRATEGY_REGISTRY)
