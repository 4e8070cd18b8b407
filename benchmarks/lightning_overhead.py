"""What Lightning's training loop itself costs per step, without sylvan.

The MLP of the Seq-MNIST protocol (784-100-100-10) on random inputs, batch b, SGD, trained four
ways: a bare `LightningModule` under automatic optimization (what sylvan's learner uses), the same
under manual optimization (`manual_backward`, `optimizer.step()` in the step), manual optimization
with `--fused` k minibatches per Lightning step (the loader serves k b samples, the step takes k
SGD steps on its k minibatches in turn: Lightning's per-step work paid once per k), the same with
torch's own optimizer and `backward` inside the step (Lightning's optimizer wrapper and
`manual_backward` skipped: what 32-bit training needs of them is nothing), and a plain PyTorch
loop. Each figure is the median wall time of a minibatch's step (the interval between the
starts of consecutive Lightning batches, divided by k where fused), the best of `--rounds`
interleaved rounds, on one thread.

    python benchmarks/lightning_overhead.py [--batch_size 10] [--fused 10] [--samples 20000] [--rounds 2]

Set beside `benchmarks/buffers.py`'s step table, it tells how much of sylvan's step over a plain
loop is Lightning's and how much sylvan's own.
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


def lightning_step(x: torch.Tensor, y: torch.Tensor, batch_size: int, manual: bool, fused: int = 1,
                   raw: bool = False) -> float:
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
            self.automatic_optimization = not manual

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
            if self.automatic_optimization:
                return F.cross_entropy(self.net(batch[0]), batch[1])
            optimizer = self.optimizers().optimizer if raw else self.optimizers()
            for first in range(0, len(batch[1]), batch_size):  # k minibatches where fused, else one
                loss = F.cross_entropy(self.net(batch[0][first:first + batch_size]), batch[1][first:first + batch_size])
                optimizer.zero_grad()
                if raw:
                    loss.backward()
                else:
                    self.manual_backward(loss)
                optimizer.step()
            return None

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    clock = Clock()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    trainer.fit(Module(), DataLoader(TensorDataset(x, y), batch_size=batch_size * fused))
    return statistics.median(clock.intervals) / fused


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
    parser.add_argument("--fused", type=int, default=10, help="minibatches per Lightning step in the fused loop")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    x, y = torch.rand(args.samples, 1, 28, 28), torch.randint(0, 10, (args.samples,))
    ways = {
        "Lightning, automatic optimization": lambda: lightning_step(x, y, args.batch_size, manual=False),
        "Lightning, manual optimization": lambda: lightning_step(x, y, args.batch_size, manual=True),
        f"Lightning, manual, {args.fused} per step": lambda: lightning_step(x, y, args.batch_size, True, args.fused),
        "the same, torch's optimizer, backward": lambda: lightning_step(x, y, args.batch_size, True, args.fused, True),
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
        print(f"{name:>38} | {1000 * seconds:7.3f} ms | {seconds / plain:5.2f} x plain")


if __name__ == "__main__":
    main()
