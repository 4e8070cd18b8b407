"""Rehearsal-buffer throughput, and what rehearsal adds to a training step.

Part 1: steady-state insertion and sampling throughput (samples per second) of every policy
(measured after the buffer is first filled), for MNIST-sized (1x28x28) and CIFAR-sized (3x32x32)
samples and capacities 500 / 5,000 / 50,000, next to references that insert with a per-sample
Python loop and sample with `np.random.choice` (the way most research code does): the same
policy written one sample at a time (`reference_buffers.py`), and plain reservoir sampling
written so; with the ratios between them.

Part 2: on the Seq-MNIST protocol (batch 10, r = 10 replayed samples, buffer 200) and a batch-128
variant (buffer 5,000; r = 10, the protocol's, and r = 128), the wall time of a step of the
training loop (its median; set-up and evaluations left out) of `rehearsal`, of `naive` on the b
new samples, and of `naive` on b + r samples (the compute of a rehearsal step without a buffer).
rehearsal / naive is set next to the ideal 1 + r/b (the cost of computing on b + r samples
instead of b); rehearsal / naive on b + r is what the buffer itself adds (ideal 1.00). Beside
them, a plain PyTorch loop doing the same work on the same MLP and MNIST images (uint8 pixels made
float per minibatch, forward, backward, SGD step; for rehearsal also a reservoir buffer's insert
and a draw of r stored samples without replacement): what sylvan's step costs over it, with
every default of a run on (the training log, the FLOP sampling).

Part 1 times images of uint8 pixels (as MNIST and CIFAR are), as the replay methods use their
buffers: sylvan's buffers keep them as pixels (`pixel_fields`) and are handed the pixels
(`Batch.pixels`), and give float32 k / 255 back when sampled; the per-sample loops store and
return the same uint8 rows. With `--floats`, every buffer and loop stores float32 rows instead
(what a buffer keeps of fields that are not images, and kept of images before it kept pixels).

    python benchmarks/buffers.py [--device cpu|cuda] [--skip_steps | --skip_throughput] [--floats] [--data_dir DIR]
                                 [--policies gss reservoir ...] [--retrieval grasp]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch
from reference_buffers import REFERENCES, LoopBuffer, LoopReservoir, reservoir_slots

from sylvan.buffers import (
    BUFFER_POLICIES,
    RETRIEVALS,
    ReservoirBuffer,
    make_buffer,
    needs_features,
    needs_scores,
    needs_slots,
)
from sylvan.run.callbacks import Callback

BATCH = 128
SHAPES = {"1x28x28": (1, 28, 28), "3x32x32": (3, 32, 32)}
CAPACITIES = (500, 5_000, 50_000)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def insertion_rate(
    buffer, pool, name: str, fill_steps: int, steps: int, device: str, retrieval: str = "uniform"
) -> float:
    """Samples inserted per second into `buffer` over `steps` batches, after `fill_steps` untimed
    ones."""

    def insert(step: int) -> None:
        x, y, features, loop_x, scores = pool[step % len(pool)]
        supplied = {}  # what the method hands the policy: gss's gradient scores, aser's replacement slots
        if needs_scores(name):
            supplied["score"] = scores
        elif needs_slots(name):  # uniform in [-1, size): mostly replacements, a few turned away
            supplied["slot"] = (scores / 2 * (buffer.size + 1)).long() - 1
        if isinstance(buffer, LoopBuffer):
            buffer.add(loop_x, y, features, *supplied.values())
        elif needs_features(name, retrieval):  # herding, grasp: 64-d features supplied by the method
            buffer.add(x=x, y=y, features=features)
        else:
            buffer.add(x=x, y=y, **supplied)

    for step in range(fill_steps):
        insert(step)
    synchronize(device)
    start = time.perf_counter()
    for step in range(fill_steps, fill_steps + steps):
        insert(step)
    synchronize(device)
    return steps * BATCH / (time.perf_counter() - start)


def sampling_rate(buffer, device: str, draws: int = 200, repeats: int = 3) -> float:
    best = 0.0
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(draws):
            buffer.sample(BATCH)
        synchronize(device)
        best = max(best, draws * BATCH / (time.perf_counter() - start))
    return best


class RecordingReservoir(ReservoirBuffer):
    """A reservoir buffer that records which batch rows went to which slots."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[tuple[np.ndarray, np.ndarray]] = []

    def _write(self, slots, positions, batch) -> None:
        self.writes.append((slots.copy(), positions.copy()))
        super()._write(slots, positions, batch)


def row_copy_rate(pool, capacity: int, fill_steps: int, steps: int, pixel_fields: tuple[str, ...] = ()) -> float:
    """Samples per second if inserting cost nothing but copying the accepted rows into the
    storage (one NumPy gather-scatter per field and batch, each image row one block, as the
    buffers copy it): the reservoir stream's writes are recorded, then replayed alone. Any
    implementation, vectorized or per-sample, moves these bytes, so `rate / loop rate` bounds
    the speed-up over the loop (CPU storage only)."""
    buffer = RecordingReservoir(capacity, pixel_fields=pixel_fields)
    for step in range(fill_steps + steps):
        if step == fill_steps:
            buffer.writes.clear()
        x, y, _, _, _ = pool[step % len(pool)]
        buffer.add(x=x, y=y)
    host, records = buffer._host_views, buffer._host_records["x"]  # rows copied whole, as the buffers copy them
    start = time.perf_counter()
    for step, (slots, positions) in enumerate(buffer.writes, start=fill_steps):
        _, y, _, stored_x, _ = pool[step % len(pool)]  # the rows as stored: float32, or uint8 pixels
        records[slots] = np.frombuffer(stored_x.numpy(), dtype=records.dtype).take(positions)
        host["y"][slots] = y.numpy()[positions]
    return steps * BATCH / (time.perf_counter() - start)


def loop_buffer(cls: type[LoopBuffer], capacity: int, shape: tuple[int, ...], device: str, pixels: bool) -> LoopBuffer:
    """A reference buffer whose storage holds uint8 pixels where `pixels`, float32 otherwise."""
    buffer = cls(capacity, shape, device)
    if pixels:
        buffer.x = torch.empty((capacity, *shape), dtype=torch.uint8, device=device)
    return buffer


def throughput(
    shape: tuple[int, ...], capacity: int, device: str, repeats: int = 3, pixels: bool = False,
    only: list[str] | None = None, retrieval: str = "uniform",
) -> dict[str, tuple[float, float, float]]:
    """{policy: (insertions per second, its per-sample reference's, samples drawn per second)},
    plus the reservoir loop's figures under "per-sample loop". In steady state: the buffer is
    first filled (not timed); then a stream of 4x capacity samples (at least 40,960) is inserted
    in batches of 128, and 200 batches of 128 samples are drawn."""
    # (x as methods give it, y, features, x as the reference loops are given it, gss scores (aser's slots
    # are drawn from them): on the host, where both gss buffers read them)
    pool = []
    for _ in range(16):
        y, features = torch.randint(0, 10, (BATCH,), device=device), torch.rand(BATCH, 64, device=device)
        scores = torch.rand(BATCH, dtype=torch.float64) * 2
        if pixels:
            raw = torch.randint(0, 256, (BATCH, *shape), dtype=torch.uint8, device=device)
            pool.append((raw, y, features, raw, scores))
        else:
            x = torch.rand(BATCH, *shape, device=device)
            pool.append((x, y, features, x, scores))
    pixel_fields = ("x",) if pixels else ()
    fill_steps = -(-capacity // BATCH)
    steps = max(40_960, 4 * capacity) // BATCH
    # herding's greedy selection costs O(surplus x pool x dim) per batch: run it up to 5,000;
    # its reference reselects every exemplar of a class by herding: time a few batches of it
    policies = [name for name in sorted(only or BUFFER_POLICIES) if name != "herding" or capacity <= 5_000]
    runs = {}  # figure -> (make a fresh buffer, policy name, timed batches)
    for name in policies:
        runs[name] = (lambda name=name: make_buffer(name, capacity, device=device, pixel_fields=pixel_fields,
                                                    retrieval=retrieval), name, steps)
        runs[f"{name} loop"] = (lambda name=name: loop_buffer(REFERENCES[name], capacity, shape, device, pixels),
                                name, 8 if name == "herding" else steps)
    runs["per-sample loop"] = (lambda: loop_buffer(LoopReservoir, capacity, shape, device, pixels), "reservoir", steps)
    # best of `repeats` rounds (best-of, as timeit does: a shared machine only ever slows a run
    # down); every round times every buffer, so that drift of the machine hits all of them alike
    best, last = dict.fromkeys(runs, 0.0), {}
    for round_ in range(repeats):
        for figure, (make, name, timed) in runs.items():
            if figure == "herding loop" and round_:  # seconds per batch: one round is enough
                continue
            buffer = make()
            rate = insertion_rate(buffer, pool, name, fill_steps, timed, device,
                                  "uniform" if figure.endswith(" loop") else retrieval)
            best[figure] = max(best[figure], rate)
            if not figure.endswith(" loop") or figure == "per-sample loop":  # kept for sampling
                last[figure] = buffer
            del buffer
        if device == "cpu":
            best["row copies"] = max(best.get("row copies", 0.0),
                                     row_copy_rate(pool, capacity, fill_steps, steps, pixel_fields))
    figures = {name: (best[name], best[f"{name} loop"], sampling_rate(last[name], device)) for name in policies}
    figures["per-sample loop"] = (best["per-sample loop"], float("nan"), sampling_rate(last["per-sample loop"], device))
    if device == "cpu":
        figures["row copies only"] = (best["row copies"], float("nan"), float("nan"))
    return figures


def print_throughput(
    device: str, shapes: list[str], capacities: list[int], rounds: int = 3, pixels: bool = False,
    policies: list[str] | None = None, retrieval: str = "uniform",
) -> None:
    if pixels:
        print("Images as uint8 pixels: every buffer is handed the pixels and stores them; sylvan's give float32")
        print("k / 255 back when sampled, the loops' sampling gives the pixels.")
    print(f"Buffer throughput on {device}, batches of {BATCH} (samples per second). 'own loop': the same policy")
    print("written one sample at a time (benchmarks/reference_buffers.py); 'x loop': speed-up over its own loop;")
    print("'x res. loop': over the per-sample reservoir loop; sampling is compared with the reservoir loop's")
    print("np.random.choice + indexing. 'row copies only': the reservoir stream's row copies alone, the")
    print("data movement any implementation pays; its 'x res. loop' bounds every speed-up over that loop.")
    if retrieval != "uniform":
        print(f"sylvan's buffers draw with retrieval {retrieval!r} (and are given 64-d features); the loops draw")
        print("uniformly.")
    header = (f"{'shape':>8} {'capacity':>8} {'policy':>16} | {'insert/s':>10} {'own loop/s':>10} {'x loop':>6} "
              f"{'x res. loop':>11} | {'sample/s':>10} {'x':>6}")
    print(header)
    print("-" * len(header))
    for shape_name in shapes:
        for capacity in capacities:
            figures = throughput(SHAPES[shape_name], capacity, device, repeats=rounds, pixels=pixels, only=policies,
                                 retrieval=retrieval)
            loop_insert, _, loop_sample = figures["per-sample loop"]
            for name, (insert, own_loop, sample) in figures.items():
                print(f"{shape_name:>8} {capacity:>8} {name:>16} | {insert:10.0f} {own_loop:10.0f} "
                      f"{insert / own_loop:6.1f} {insert / loop_insert:11.1f} | {sample:10.0f} "
                      f"{sample / loop_sample:6.1f}", flush=True)


class StepClock(Callback):
    """The wall time of each step of the training loop: the interval between the starts of
    consecutive minibatches (data loading, forward, backward, optimizer, the method's hooks, the
    run's callbacks), over every fit; each fit's set-up and the evaluations between tasks are
    left out."""

    def __init__(self) -> None:
        self.intervals: list[float] = []
        self._last: float | None = None

    def epoch_started(self, fit: Any) -> None:
        self._last = None  # an interval never spans the end of an epoch or a fit

    def minibatch_started(self, fit: Any, batch: Any) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.intervals.append(now - self._last)
        self._last = now


def clocked_run(method: Any, **options: Any) -> StepClock:
    """Run `method` on a class-incremental setting built from `options`, with a `StepClock`."""
    from sylvan.settings import ClassIncrementalSetting

    clock = StepClock()
    ClassIncrementalSetting(**options).apply(method, callbacks=[clock])
    return clock


def seconds_per_step(method: Any, batch_size: int, data_dir: str, train_samples: int) -> float:
    """Median wall time of a training step of `method` on the Seq-MNIST tasks (the median: the
    typical step, which a busy neighbour on a shared machine moves least), every default on."""
    clock = clocked_run(method, dataset="mnist", nb_tasks=5, batch_size=batch_size, epochs=1, data_dir=data_dir,
                        train_samples=train_samples, progress_bar=False)
    return statistics.median(clock.intervals)


def plain_step_times(batch_size: int, replay_size: int, buffer_size: int, data_dir: str,
                     train_samples: int) -> tuple[float, float]:
    """Median seconds per step of a plain PyTorch loop over `train_samples` MNIST images: naive
    (b new samples) and rehearsal (b new + r drawn from a reservoir buffer of `buffer_size`
    pixels), the same MLP and SGD as sylvan's runs."""
    from pathlib import Path

    import torch.nn.functional as F

    from sylvan.models import MLP
    from sylvan.settings.data.idx_files import read_mnist_split

    x_all, y_all = read_mnist_split(Path(data_dir).expanduser() / "MNIST" / "raw", train=True)
    x_all, y_all = torch.from_numpy(x_all[:train_samples]).unsqueeze(1), torch.from_numpy(y_all[:train_samples])
    rng = np.random.default_rng(0)
    medians = []
    for replay in (0, replay_size):
        torch.manual_seed(0)
        net = MLP((1, 28, 28), 10)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.03)
        memory_x = torch.zeros((buffer_size, 1, 28, 28), dtype=torch.uint8)
        memory_y = torch.zeros(buffer_size, dtype=torch.long)
        seen, intervals, last = 0, [], None
        for first in range(0, len(y_all), batch_size):
            now = time.perf_counter()
            if last is not None:
                intervals.append(now - last)
            last = now
            pixels, y = x_all[first:first + batch_size], y_all[first:first + batch_size]
            x, labels = pixels.float().div_(255), y
            held = min(seen, buffer_size)
            if replay and held:
                drawn = torch.from_numpy(rng.choice(held, size=min(replay, held), replace=False))
                x, labels = torch.cat([x, memory_x[drawn].float().div_(255)]), torch.cat([y, memory_y[drawn]])
            loss = F.cross_entropy(net(x), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if replay:
                slots, rows = (torch.from_numpy(a) for a in reservoir_slots(seen, len(y), buffer_size, rng))
                memory_x[slots], memory_y[slots] = pixels[rows], y[rows]
            seen += len(y)
        medians.append(statistics.median(intervals))
    return medians[0], medians[1]


def step_times(batch_size: int, replay_size: int, buffer_size: int, data_dir: str, train_samples: int,
               rounds: int) -> dict[str, float]:
    """Seconds per step of naive on b samples, naive on b + r samples (the compute rehearsal's
    step does, without a buffer) and rehearsal (b new + r replayed), and of the plain loop's
    naive and rehearsal steps: best of `rounds` interleaved rounds."""
    from sylvan.methods import Naive, Rehearsal

    def rehearsal() -> Rehearsal:
        return Rehearsal(lr=0.03, buffer_size=buffer_size, replay_size=replay_size)

    runs = (  # each gives its figures by name
        lambda: {"naive": seconds_per_step(Naive(lr=0.03), batch_size, data_dir, train_samples)},
        lambda: {"naive b + r": seconds_per_step(Naive(lr=0.03), batch_size + replay_size, data_dir, train_samples)},
        lambda: {"rehearsal": seconds_per_step(rehearsal(), batch_size, data_dir, train_samples)},
        lambda: dict(zip(("plain naive", "plain rehearsal"),
                         plain_step_times(batch_size, replay_size, buffer_size, data_dir, train_samples))),
    )
    best: dict[str, float] = {}
    for _ in range(rounds):
        for run in runs:
            for name, seconds in run().items():
                best[name] = min(best.get(name, float("inf")), seconds)
    return best


# (batch b, replayed r, buffer size, training samples): the Seq-MNIST protocol, then batches of 128
# with the protocol's 10 replayed samples and with as many replayed as new
STEP_CONFIGURATIONS = ((10, 10, 200, 20_000), (128, 10, 5_000, 60_000), (128, 128, 5_000, 60_000))


def print_step_ratios(data_dir: str, rounds: int, protocol_only: bool = False) -> None:
    print("\nTime per training step on Seq-MNIST (MLP; median step of the training loop, every default on, best of "
          f"{rounds} interleaved rounds):")
    print("naive on b samples, naive on b + r (the same compute as a rehearsal step, no buffer), rehearsal;")
    print("'x naive': rehearsal / naive (ideal 1 + r/b); 'buffer cost': rehearsal / naive on b + r (ideal 1.00);")
    print("'plain': the same steps as a plain PyTorch loop (median step, best of the rounds), and sylvan / plain")
    header = (f"{'batch b':>8} {'replay r':>8} {'buffer':>7} | {'naive ms':>9} {'naive b+r ms':>12} "
              f"{'rehearsal ms':>12} | {'x naive':>7} {'ideal':>6} | {'buffer cost':>11} | {'plain naive':>11} "
              f"{'plain rehearsal':>15} | {'naive / plain':>13} {'rehearsal / plain':>17}")
    print(header)
    print("-" * len(header))
    configurations = STEP_CONFIGURATIONS[:1] if protocol_only else STEP_CONFIGURATIONS
    for batch_size, replay_size, buffer_size, samples in configurations:
        best = step_times(batch_size, replay_size, buffer_size, data_dir, samples, rounds)
        naive, naive_joint, rehearsal = best["naive"], best["naive b + r"], best["rehearsal"]
        plain_naive, plain_rehearsal = best["plain naive"], best["plain rehearsal"]
        print(f"{batch_size:>8} {replay_size:>8} {buffer_size:>7} | {1000 * naive:9.3f} {1000 * naive_joint:12.3f} "
              f"{1000 * rehearsal:12.3f} | {rehearsal / naive:7.2f} {1 + replay_size / batch_size:6.2f} | "
              f"{rehearsal / naive_joint:11.2f} | {1000 * plain_naive:11.3f} {1000 * plain_rehearsal:15.3f} | "
              f"{naive / plain_naive:13.2f} {rehearsal / plain_rehearsal:17.2f}", flush=True)


def main() -> None:
    from sylvan.settings.online import DEFAULT_DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--skip_steps", action="store_true", help="only the throughput table")
    parser.add_argument("--skip_throughput", action="store_true", help="only the step-time table")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--capacities", nargs="+", type=int, default=list(CAPACITIES))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each figure is the best round")
    parser.add_argument("--protocol_only", action="store_true", help="step times of Seq-MNIST's protocol (b = 10) only")
    parser.add_argument("--floats", action="store_true", help="samples stored as float32 rows, not pixels (see above)")
    parser.add_argument("--policies", nargs="+", choices=sorted(BUFFER_POLICIES), help="time these policies only")
    parser.add_argument("--retrieval", choices=RETRIEVALS, default="uniform",
                        help="how sylvan's buffers draw (grasp: features are given with every batch)")
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    if not args.skip_throughput:
        print_throughput(args.device, args.shapes, args.capacities, args.rounds, not args.floats, args.policies,
                         args.retrieval)
    if not args.skip_steps:
        print_step_ratios(args.data_dir, args.rounds, args.protocol_only)


if __name__ == "__main__":
    main()
