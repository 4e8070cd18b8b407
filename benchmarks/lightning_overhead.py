"""What a training loop costs per step, without sylvan: Lightning's Trainer, a loop on Lightning
Fabric (what sylvan's engine is built on), and a plain PyTorch loop.

The MLP of the Seq-MNIST protocol (784-100-100-10) on random inputs, batch b, SGD, trained three
ways: a bare `LightningModule` under the Trainer's automatic optimization (its loader a
`DataLoader`), a loop of one's own through Fabric (`fabric.setup`, `fabric.autocast`,
`fabric.backward`, the wrapped optimizer's step) and a plain PyTorch loop, both over slices of
the same tensors. Each figure is the median wall time of a step (the interval
between the starts of consecutive minibatches), the best of `--rounds` interleaved rounds, on
one thread.

    python benchmarks/lightning_overhead.py [--batch_size 10] [--samples 20000] [--rounds 2]

Set beside `benchmarks/buffers.py`'s step table (sylvan's whole step, every default on), it tells
how much of sylvan's step over a plain loop is the loop's and how much sylvan's own.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from typing import Any

import torch
import torch.nn.functional as F


def trainer_step(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from sylvan.models import MLP

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.intervals: list[float] = []
            self.last: float | None = None

        def on_train_batch_start(self, *args: Any) -> None:
            now = time.perf_counter()
            if self.last is not None:
                self.intervals.append(now - self.last)
            self.last = now

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = MLP((1, 28, 28), 10)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    clock = Clock()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    trainer.fit(Module(), DataLoader(TensorDataset(x, y), batch_size=batch_size))
    return statistics.median(clock.intervals)


def fabric_step(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    from lightning.fabric import Fabric

    from sylvan.models import MLP

    torch.manual_seed(0)
    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
    net = MLP((1, 28, 28), 10)
    net, optimizer = fabric.setup(net, torch.optim.SGD(net.parameters(), lr=0.01))
    intervals, last = [], None
    for first in range(0, len(y), batch_size):  # the plain loop's minibatches
        now = time.perf_counter()
        if last is not None:
            intervals.append(now - last)
        last = now
        with fabric.autocast():
            loss = F.cross_entropy(net(x[first:first + batch_size]), y[first:first + batch_size])
        optimizer.zero_grad()
        fabric.backward(loss)
        optimizer.step()
    return statistics.median(intervals)


def plain_step(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    from sylvan.models import MLP

    torch.manual_seed(0)
    net = MLP((1, 28, 28), 10)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    intervals, last = [], None
    for first in range(0, len(y), batch_size):
        now = time.perf_counter()
        if last is not None:
            intervals.append(now - last)
        last = now
        loss = F.cross_entropy(net(x[first:first + batch_size]), y[first:first + batch_size])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return statistics.median(intervals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=10)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(1)
    x, y = torch.rand(args.samples, 1, 28, 28), torch.randint(0, 10, (args.samples,))
    ways = {
        "Lightning Trainer": lambda: trainer_step(x, y, args.batch_size),
        "Lightning Fabric loop": lambda: fabric_step(x, y, args.batch_size),
        "plain PyTorch loop": lambda: plain_step(x, y, args.batch_size),
    }
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(args.rounds):
        for name, way in ways.items():
            best[name] = min(best[name], way())
    plain = best["plain PyTorch loop"]
    print(f"MLP 784-100-100-10, batch {args.batch_size}, one thread, torch {torch.__version__}: median step, "
          f"best of {args.rounds}")
    for name, seconds in best.items():
        print(f"{name:>22} | {1000 * seconds:7.3f} ms | {seconds / plain:5.2f} x plain")


if __name__ == "__main__":
    main()
