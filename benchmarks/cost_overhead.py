"""What counting a run's cost costs: the Seq-MNIST ER-200 run with its training FLOPs counted
(the default, `sylvan.run.accounting`) beside the same run with counting off
(`SYLVAN_COUNT_FLOPS=0`), run in turn `--repeats` times (interleaved, so that drift of the
machine hits both alike), each with one thread and, with `--core`, pinned to one CPU core. The
table gives the median whole-run wall time of each and their ratio, and the counted run's cost
as its results.json records it.

The run: `rehearsal` on MNIST, 5 tasks of 2 classes, MLP 784-100-100-10, batch 10, 1 epoch,
buffer 200, r 10, lr 0.01 (the DER paper's recipe).

    python benchmarks/cost_overhead.py --data_dir ~/.cache/sylvan/data [--repeats 3] [--core 0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def er_200(data_dir: str, results_dir: str) -> list[str]:
    return [sys.executable, str(REPO / "cli.py"), "--setting", "class_incremental", "--method", "rehearsal",
            "--dataset", "mnist", "--data_dir", data_dir, "--nb_tasks", "5", "--epochs", "1", "--batch_size", "10",
            "--lr", "0.01", "--buffer_size", "200", "--replay_size", "10", "--seed", "0", "--progress_bar", "false",
            "--save_checkpoints", "false", "--accelerator", "cpu", "--results_dir", results_dir, "--run_name", "run"]


def timed_run(data_dir: str, counting: bool, core: int | None) -> tuple[float, dict]:
    """Seconds the run took from its command's start to its end, and its results.json."""
    with tempfile.TemporaryDirectory() as folder:
        environment = {**os.environ, "SYLVAN_COUNT_FLOPS": "1" if counting else "0", "OMP_NUM_THREADS": "1",
                       "MKL_NUM_THREADS": "1"}
        pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
        start = time.time()
        done = subprocess.run(er_200(data_dir, folder), cwd=folder, env=environment, capture_output=True, text=True,
                              preexec_fn=pin)
        seconds = time.time() - start
        if done.returncode != 0:
            sys.exit(f"cost_overhead: the run failed:\n{done.stderr[-2000:]}")
        results = json.loads((Path(folder) / "run" / "results.json").read_text())
    return seconds, results


def main() -> None:
    from sylvan.settings.online import DEFAULT_DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", type=int, default=None, help="pin every run to this CPU core")
    args = parser.parse_args()
    if args.repeats < 1:
        sys.exit("cost_overhead: --repeats must be at least 1")
    data_dir = str(Path(args.data_dir).expanduser().resolve())
    times: dict[bool, list[float]] = {True: [], False: []}
    counted: dict = {}
    for _ in range(args.repeats):
        for counting in (True, False):
            seconds, results = timed_run(data_dir, counting, args.core)
            times[counting].append(seconds)
            if counting:
                counted = results
    import torch

    where = f"core {args.core}" if args.core is not None else f"{os.cpu_count()} cores, unpinned"
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"Seq-MNIST ER-200, whole run in seconds, median of {args.repeats} "
          f"(one thread, {where}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')})")
    print(f"{'counting':>12} | {'wall time':>9} | runs")
    for counting, label in ((True, "on"), (False, "off")):
        runs = ", ".join(f"{t:.2f}" for t in times[counting])
        print(f"{label:>12} | {statistics.median(times[counting]):9.2f} | {runs}")
    print(f"counting adds {100 * (on / off - 1):+.1f}% to the run's wall time")
    cost = counted["cost"]
    print(f"the run's cost: training {cost['training_flops']:.4g} FLOPs, inference "
          f"{cost['inference_flops_per_sample']:.4g} FLOPs per sample, memory {cost['memory_bytes']:,} bytes "
          f"(network {cost['network_bytes']:,}, kept beyond it {cost['kept_bytes']:,}); "
          f"final average accuracy {100 * counted['final_average_accuracy']:.2f}")


if __name__ == "__main__":
    main()
