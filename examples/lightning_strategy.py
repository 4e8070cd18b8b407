"""sylvan's distributed rehearsal strategy in a plain Lightning project (no sylvan setting or method).

A LightningModule of your own, trained task after task with
`Trainer(strategy=DistributedRehearsalStrategy(...))`: every worker keeps a local buffer of the
samples of its shard, and each training step of every worker gets r representatives drawn
uniformly from the union of all workers' buffers, fetched while the previous step computed.
The strategy hands `training_step` the batch (x, y) with the replayed samples appended.

The data: scikit-learn's digits (embedded, nothing to download) as 5 class-incremental tasks of 2
classes. The same strategy object cannot serve two `Trainer`s, but the buffer must outlive each
task: the `GlobalReplay` (the local buffer and the exchange) is made once and handed to every
task's strategy.

    python examples/lightning_strategy.py                      # 2 CPU worker processes (gloo)
    python examples/lightning_strategy.py --devices 4 --accelerator gpu
    python examples/lightning_strategy.py --buffer_size 0      # no replay: fine-tuning, for comparison

Lightning starts the other workers by running this script again (so keep the `__main__` guard).
Worker 0 prints the accuracy on every task seen after each task.
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sylvan.buffers import make_buffer
from sylvan.parallel.rehearsal_strategy import DistributedRehearsalStrategy, GlobalReplay


class Classifier(L.LightningModule):
    """An MLP over the 64 pixels of a digit, trained with SGD."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # the worker's new samples, then the replayed ones
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def class_incremental_digits(nb_tasks: int, seed: int) -> list[tuple[TensorDataset, TensorDataset]]:
    """(train, test) per task: the digits split into tasks of consecutive classes, 80/20."""
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    cut = int(0.8 * len(y))
    per_task = 10 // nb_tasks
    tasks = []
    for task in range(nb_tasks):
        train = (y[:cut] // per_task) == task
        test = (y[cut:] // per_task) == task
        tasks.append((TensorDataset(x[:cut][train], y[:cut][train]), TensorDataset(x[cut:][test], y[cut:][test])))
    return tasks


def accuracy(model: nn.Module, data: TensorDataset) -> float:
    x, y = data.tensors
    with torch.no_grad():
        return float((model(x.to(model.device)).argmax(1).cpu() == y).float().mean())


def example_arguments(description: str) -> argparse.Namespace:
    """The options of the distributed rehearsal examples (this one and `fabric_strategy.py`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--devices", type=int, default=2, help="data-parallel workers")
    parser.add_argument("--accelerator", default="cpu", help="cpu or gpu")
    parser.add_argument("--buffer_size", type=int, default=200, help="buffer capacity of each worker")
    parser.add_argument("--replay_size", type=int, default=10, help="r: representatives per step")
    parser.add_argument("--buffer_policy", default="reservoir", help="reservoir, class_balanced, prs or gdumb")
    parser.add_argument("--batch_size", type=int, default=10, help="b: new samples per step and worker")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per task")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def report(task: int, model: nn.Module, tasks: list[tuple[TensorDataset, TensorDataset]], replay: GlobalReplay) -> None:
    """Worker 0's line after `task`: the accuracy on every task seen, and what its buffer holds."""
    seen = [accuracy(model, test) for _, test in tasks[: task + 1]]
    print(f"after task {task}: accuracy per task seen {[round(100 * a, 1) for a in seen]}, "
          f"average {100 * sum(seen) / len(seen):.1f}%, this worker's buffer holds {len(replay.buffer)} "
          f"samples of classes {sorted(replay.buffer.class_counts())}", flush=True)


def main() -> None:
    args = example_arguments(__doc__.splitlines()[0])

    L.seed_everything(args.seed, verbose=False)
    tasks = class_incremental_digits(nb_tasks=5, seed=args.seed)
    model = Classifier(args.lr)
    # made once: each worker's local buffer and the exchange outlive every task's Trainer
    replay = GlobalReplay(make_buffer(args.buffer_policy, args.buffer_size, seed=args.seed),
                          replay_size=args.replay_size if args.buffer_size else 0, seed=args.seed)
    for task, (train, _) in enumerate(tasks):
        trainer = L.Trainer(
            strategy=DistributedRehearsalStrategy(replay=replay),
            accelerator=args.accelerator, devices=args.devices, max_epochs=args.epochs,
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )
        loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)  # Lightning shards it per worker
        trainer.fit(model, loader)
        if trainer.is_global_zero:
            report(task, model, tasks, replay)


if __name__ == "__main__":
    main()
