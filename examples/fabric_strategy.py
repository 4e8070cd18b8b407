"""sylvan's distributed rehearsal strategy in a training loop of one's own on Lightning Fabric
(no sylvan setting or method).

`Fabric(strategy=FabricRehearsalStrategy(replay=...))` (or `strategy="ddp_rehearsal"`, with the
default buffer) is DDP whose loaders, set up with `fabric.setup_dataloaders`, serve every batch
(x, y) of a worker's shard with r representatives drawn uniformly from the union of all workers'
buffers appended, fetched while the previous step computed; the batch's own samples go into the
worker's local buffer. The loop is plain PyTorch otherwise.

The data: scikit-learn's digits (embedded, nothing to download) as 5 class-incremental tasks of 2
classes, as `examples/lightning_strategy.py` trains them with a Trainer.

    python examples/fabric_strategy.py                      # 2 CPU worker processes (gloo)
    python examples/fabric_strategy.py --devices 4 --accelerator gpu
    python examples/fabric_strategy.py --buffer_size 0      # no replay: fine-tuning, for comparison

Fabric starts the other workers by running this script again (so keep the `__main__` guard).
Worker 0 prints the accuracy on every task seen after each task.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.fabric import Fabric, seed_everything
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from sylvan.buffers import make_buffer
from sylvan.buffers.global_replay import GlobalReplay
from sylvan.parallel.fabric_rehearsal import FabricRehearsalStrategy

try:
    from lightning_strategy import class_incremental_digits, example_arguments, report
except ImportError:  # run from another folder
    from examples.lightning_strategy import class_incremental_digits, example_arguments, report


class Classifier(nn.Module):
    """An MLP over the 64 pixels of a digit."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))

    @property
    def device(self) -> torch.device:
        return self.net[0].weight.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def main() -> None:
    args = example_arguments(__doc__.splitlines()[0])

    replay = GlobalReplay(make_buffer(args.buffer_policy, args.buffer_size, seed=args.seed),
                          replay_size=args.replay_size if args.buffer_size else 0, seed=args.seed)
    fabric = Fabric(accelerator=args.accelerator, devices=args.devices, strategy=FabricRehearsalStrategy(replay=replay))
    fabric.launch()
    seed_everything(args.seed, verbose=False)
    tasks = class_incremental_digits(nb_tasks=5, seed=args.seed)
    model = Classifier()
    model, optimizer = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=args.lr))
    for task, (train, _) in enumerate(tasks):
        shard = DistributedSampler(train, num_replicas=fabric.world_size, rank=fabric.global_rank, seed=args.seed)
        loader = fabric.setup_dataloaders(DataLoader(train, batch_size=args.batch_size, sampler=shard),
                                          use_distributed_sampler=False)
        for _ in range(args.epochs):
            for x, y in loader:  # the worker's b new samples, then the replayed ones
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                fabric.backward(loss)
                optimizer.step()
        if fabric.global_rank == 0:
            report(task, model, tasks, replay)


if __name__ == "__main__":
    main()
