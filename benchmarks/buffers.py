"""Rehearsal-buffer throughput, and what rehearsal adds to a training step.

Part 1: steady-state insertion and sampling throughput (samples per second) of every policy
(measured after the buffer is first filled), for MNIST-sized
(1x28x28) and CIFAR-sized (3x32x32) samples and capacities 500 / 5,000 / 50,000, next to a
reference reservoir buffer that inserts with a per-sample Python loop and samples with
`np.random.choice` (the way most research code does), and the ratio between them.

Part 2: on the Seq-MNIST protocol (batch 10) and a batch-128 variant, the wall time per training
step of `rehearsal` (r = b replayed samples, buffer 200 / 5,000) divided by that of `naive`, next
to the ideal ratio 1 + r/b (the cost of computing on b + r samples instead of b).

    python benchmarks/buffers.py [--device cpu|cuda] [--skip_steps] [--data_dir DIR]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sylvan.buffers import BUFFER_POLICIES, make_buffer, needs_features

BATCH = 128
SHAPES = {"1x28x28": (1, 28, 28), "3x32x32": (3, 32, 32)}
CAPACITIES = (500, 5_000, 50_000)


class PerSampleReservoir:
    """The reference: reservoir sampling with a Python loop over the samples of each batch."""

    def __init__(self, capacity: int, shape: tuple[int, ...], device: str) -> None:
        self.capacity, self.seen = capacity, 0
        self.x = torch.empty((capacity, *shape), device=device)
        self.y = torch.empty(capacity, dtype=torch.long, device=device)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        for i in range(len(y)):
            slot = self.seen if self.seen < self.capacity else np.random.randint(0, self.seen + 1)
            if slot < self.capacity:
                self.x[slot] = x[i]
                self.y[slot] = y[i]
            self.seen += 1

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = np.random.choice(min(self.seen, self.capacity), size=n, replace=False)
        index = torch.from_numpy(index).to(self.x.device)
        return self.x[index], self.y[index]


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def throughput(shape: tuple[int, ...], capacity: int, device: str) -> dict[str, tuple[float, float]]:
    """{policy: (insertions per second, samples drawn per second)}, in steady state: the buffer is
    first filled (not timed); then a stream of 4x capacity samples (at least 40,960) is inserted
    in batches of 128, and 200 batches of 128 samples are drawn."""
    pool = [(torch.rand(BATCH, *shape, device=device), torch.randint(0, 10, (BATCH,), device=device),
             torch.rand(BATCH, 64, device=device)) for _ in range(16)]
    fill_steps = -(-capacity // BATCH)
    steps = max(40_960, 4 * capacity) // BATCH
    # herding's greedy selection costs O(surplus x pool x dim) per batch: run it up to 5,000
    policies = [name for name in sorted(BUFFER_POLICIES) if name != "herding" or capacity <= 5_000]
    buffers = {name: make_buffer(name, capacity, device=device) for name in policies}
    buffers["per-sample loop"] = PerSampleReservoir(capacity, shape, device)
    figures = {}
    for name, buffer in buffers.items():
        def insert(step: int, buffer=buffer, name=name) -> None:
            x, y, features = pool[step % len(pool)]
            if isinstance(buffer, PerSampleReservoir):
                buffer.add(x, y)
            elif needs_features(name, "uniform"):  # herding: 64-d features supplied by the method
                buffer.add(x=x, y=y, features=features)
            else:
                buffer.add(x=x, y=y)

        for step in range(fill_steps):
            insert(step)
        synchronize(device)
        start = time.perf_counter()
        for step in range(steps):
            insert(step)
        synchronize(device)
        insert_rate = steps * BATCH / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(200):
            buffer.sample(BATCH)
        synchronize(device)
        figures[name] = (insert_rate, 200 * BATCH / (time.perf_counter() - start))
    return figures


def print_throughput(device: str) -> None:
    print(f"Buffer throughput on {device}, batches of {BATCH} (samples per second; x = speed-up over the loop)")
    header = f"{'shape':>8} {'capacity':>8} {'policy':>16} | {'insert/s':>10} {'x':>6} | {'sample/s':>10} {'x':>6}"
    print(header)
    print("-" * len(header))
    for shape_name, shape in SHAPES.items():
        for capacity in CAPACITIES:
            figures = throughput(shape, capacity, device)
            ref_insert, ref_sample = figures["per-sample loop"]
            for name, (insert, sample) in figures.items():
                print(f"{shape_name:>8} {capacity:>8} {name:>16} | {insert:10.0f} {insert / ref_insert:6.1f} | "
                      f"{sample:10.0f} {sample / ref_sample:6.1f}", flush=True)


def step_ratio(batch_size: int, buffer_size: int, data_dir: str, train_samples: int) -> tuple[float, float, float]:
    """Seconds per step of naive and rehearsal (r = b) on the first two Seq-MNIST tasks."""
    from sylvan.methods import Naive, Rehearsal
    from sylvan.settings import ClassIncrementalSetting

    def seconds_per_step(method) -> float:
        setting = ClassIncrementalSetting(dataset="mnist", nb_tasks=5, batch_size=batch_size, epochs=1,
                                          data_dir=data_dir, train_samples=train_samples, progress_bar=False)
        results = setting.apply(method)
        steps = sum(-(-n // batch_size) for n in results.samples_seen)
        return sum(results.task_wall_time) / steps

    naive = min(seconds_per_step(Naive(lr=0.03)) for _ in range(2))
    rehearsal = min(seconds_per_step(Rehearsal(lr=0.03, buffer_size=buffer_size, replay_size=batch_size))
                    for _ in range(2))
    return naive, rehearsal, rehearsal / naive


def print_step_ratios(data_dir: str) -> None:
    print("\nRehearsal / naive time per training step (Seq-MNIST, MLP, r = b; includes evaluation after each task)")
    print(f"{'batch b':>8} {'replay r':>8} {'buffer':>7} | {'naive ms':>9} {'rehearsal ms':>12} | "
          f"{'ratio':>6} {'ideal':>6}")
    for batch_size, buffer_size, samples in ((10, 200, 20_000), (128, 5_000, 60_000)):
        naive, rehearsal, ratio = step_ratio(batch_size, buffer_size, data_dir, samples)
        print(f"{batch_size:>8} {batch_size:>8} {buffer_size:>7} | {1000 * naive:9.3f} {1000 * rehearsal:12.3f} | "
              f"{ratio:6.2f} {2.0:6.2f}", flush=True)


def main() -> None:
    from sylvan.settings.online import DEFAULT_DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--skip_steps", action="store_true", help="only the throughput table")
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    print_throughput(args.device)
    if not args.skip_steps:
        print_step_ratios(args.data_dir)


if __name__ == "__main__":
    main()
