"""Distributed asynchronous rehearsal: what it costs and what it buys.

Part 1, throughput: training samples per second (training time only: without evaluation, and
without the start of the worker processes, which runtime.json reports as `worker_startup_time`) of
`naive`, synchronous rehearsal (`--replay_sync true`) and asynchronous rehearsal on the
`distributed` setting with 1 and 2 workers, MNIST, 5 tasks, MLP, batch b per worker, r = b; and
the step time of `naive` on batches of b + r (the compute of a rehearsal step, without its
buffer or exchange), against which each rehearsal step is set.

Part 2, accuracy: final class-IL accuracy on MNIST (5 tasks) of naive, distributed asynchronous
rehearsal and from_scratch with 2 workers, so that the claim of Bouvier et al. (CCGrid 2024) can
be read off: accuracy close to from-scratch, runtime close to naive.

    python benchmarks/distributed_rehearsal.py --data_dir DIR [--accelerator gpu --workers 1]

Each run is the real command line (`cli.py`) in a subprocess; figures come from its results.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from cli_runs import run_cli


def run(method: str, workers: int, args: argparse.Namespace, extra: list[str]) -> dict:
    done = run_cli(["--setting", "distributed", "--method", method, "--devices", str(workers),
                    "--accelerator", args.accelerator, "--dataset", "mnist",
                    "--data_dir", str(Path(args.data_dir).expanduser().resolve()), "--nb_tasks", "5",
                    "--progress_bar", "false", *extra])
    if done.status != 0:
        sys.exit(f"{' '.join(done.command)} failed:\n{done.stderr[-3000:]}")
    metrics, runtime = done.results, done.runtime
    samples = sum(metrics["samples_seen"])
    return {
        **runtime.get("method_runtime", {}),
        "accuracy": 100 * metrics["final_average_accuracy"],
        "throughput": samples / sum(runtime["task_train_time"]),
        "train_seconds": sum(runtime["task_train_time"]),
        "total_seconds": runtime["total_wall_time"],
    }


def main() -> None:
    from sylvan.settings.online import DEFAULT_DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch_size", type=int, default=64, help="b, per worker (r = b)")
    parser.add_argument("--train_samples", type=int, default=20_000, help="MNIST training samples for part 1")
    parser.add_argument("--skip_accuracy", action="store_true")
    parser.add_argument("--skip_throughput", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="runs per throughput figure (median)")
    parser.add_argument("--buffer_policy", default="reservoir",
                        help="rehearsal's buffer policy in part 1 (gss stores a step's samples after it)")
    args = parser.parse_args()

    common = ["--batch_size", str(args.batch_size), "--epochs", "1", "--train_samples", str(args.train_samples)]
    replay = ["--lr", "0.05", "--buffer_size", "1000", "--replay_size", str(args.batch_size),
              "--buffer_policy", args.buffer_policy]
    print(f"Training throughput ({args.accelerator}, MNIST {args.train_samples} samples, 5 tasks, MLP, "
          f"b = r = {args.batch_size} per worker, {args.buffer_policy} buffer), samples per second, "
          f"median of {args.repeats} runs")
    print(f"{'workers':>7} | {'naive':>9} {'sync':>9} {'async':>9} | step time: {'async/naive':>11} "
          f"{'sync/naive':>10} {'ideal':>6} | {'async/naive b+r':>15} {'sync/naive b+r':>14} | "
          f"{'async speed-up over sync':>24} | {'async won':>9}")
    joint = ["--batch_size", str(2 * args.batch_size), *common[2:]]
    modes = {
        "naive": ("naive", [*common, "--lr", "0.05"]),
        "naive b+r": ("naive", [*joint, "--lr", "0.05"]),
        "sync": ("rehearsal", [*common, *replay, "--replay_sync", "true"]),
        "async": ("rehearsal", [*common, *replay]),
    }
    replay_cost: dict[int, dict[str, tuple[float, float]]] = {}
    for workers in [] if args.skip_throughput else args.workers:
        measured: dict[str, list[float]] = {mode: [] for mode in modes}
        held: dict[str, list[tuple[float, float]]] = {"sync": [], "async": []}
        for _ in range(args.repeats):  # interleaved, so that drift of the machine hits every mode
            for mode, (method, extra) in modes.items():
                figures = run(method, workers, args, extra)
                measured[mode].append(figures["throughput"])
                if mode in held:
                    held[mode].append((figures["replay_critical_ms_per_step"], figures["replay_blocked_ms_per_step"]))
        replay_cost[workers] = {mode: (statistics.median(c for c, _ in pairs), statistics.median(b for _, b in pairs))
                                for mode, pairs in held.items()}
        naive, joint_rate, sync, asynchronous = (statistics.median(measured[mode]) for mode in modes)
        # a step of naive on b + r trains 2b new samples: its step time per b new samples is half of it
        joint_step = 2 / joint_rate
        # paired: each repeat ran sync and async back to back, so drift hits both alike
        wins = sum(a > s for a, s in zip(measured["async"], measured["sync"]))
        print(f"{workers:>7} | {naive:9.0f} {sync:9.0f} {asynchronous:9.0f} | step time: "
              f"{naive / asynchronous:11.2f} {naive / sync:10.2f} {2.0:6.2f} | "
              f"{(1 / asynchronous) / joint_step:15.2f} {(1 / sync) / joint_step:14.2f} | "
              f"{asynchronous / sync:24.2f} | {wins:>4} of {args.repeats}", flush=True)
    print("(throughput counts new samples; a rehearsal step computes on b + r samples, so the ideal step-time\n"
          " ratio to naive is 1 + r/b = 2.00: below it, the replay costs less than its extra compute; against\n"
          " naive on b + r samples (the same compute, no buffer, no exchange) the ideal is 1.00. 'async won':\n"
          " in how many interleaved repeats asynchronous rehearsal was faster than the synchronous run beside it;\n"
          " with no real difference that count is binomial(repeats, 1/2))")
    if replay_cost:
        print("\nWhat the replay holds the training loop per step (ms, host time, median): all of it, and the part")
        print("blocked waiting for the exchange (synchronous: the whole exchange; asynchronous: what the previous")
        print("step's compute did not hide)")
        print(f"{'workers':>7} | {'sync held':>9} {'blocked':>8} | {'async held':>10} {'blocked':>8}")
        for workers, cost in replay_cost.items():
            print(f"{workers:>7} | {cost['sync'][0]:9.3f} {cost['sync'][1]:8.3f} | {cost['async'][0]:10.3f} "
                  f"{cost['async'][1]:8.3f}", flush=True)
    if args.skip_accuracy:
        return
    workers = max(args.workers)
    full = ["--batch_size", "32", "--epochs", "1", "--lr", "0.05"]
    print(f"\nMNIST, 5 tasks, class-incremental, {workers} workers, 1 epoch, batch 32 per worker")
    print(f"{'method':>24} | {'class-IL acc':>12} | {'train s':>8} | {'total s':>8}")
    for label, method, extra in (
        ("naive", "naive", []),
        ("async rehearsal (2,000)", "rehearsal", ["--buffer_size", "1000", "--replay_size", "32"]),
        ("from_scratch", "from_scratch", []),
    ):
        figures = run(method, workers, args, [*full, *extra])
        print(f"{label:>24} | {figures['accuracy']:12.2f} | {figures['train_seconds']:8.1f} | "
              f"{figures['total_seconds']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
