"""OSAKA (Caccia et al., NeurIPS 2020), offline: Continual-MAML against the paper's baselines on
the `osaka` setting, at the paper's two stationarities (p = 0.9 and 0.98).

The rows: `continual_maml`; `maml` and `anil` (meta-trained, frozen in the stream); online SGD
(`naive`, no pre-training); fine-tuning (`naive` trained on the pre-training tasks first, then
online SGD); and `rehearsal` (pre-trained likewise, replaying a buffer of 500 samples). Each
gives the predict-then-train accuracy over the whole stream, per mode (the pre-training
distribution and the two out-of-distribution pools), and over the 4 steps that follow each
switch's first batch, per mode: how fast it adapts to a context of the pre-training
distribution against one outside it. Every figure is the mean ± standard deviation over the
seeds; the paired column is Continual-MAML minus the row, seed by seed (mean ± std, t with
n - 1 degrees of freedom).

Data: `--dataset mnist` (MNIST 0-4 for pre-training, 5-9 out of distribution, the 8x8 digits at
28x28 the second shift; needs MNIST's files) or `digits` (nothing to read). Every run is written
under `--out`; a complete run is not run again.

    python benchmarks/osaka.py --data_dir ~/.cache/sylvan/data --out osaka-results [--jobs 2]
    python benchmarks/osaka.py --quick     # digits, 2 seeds, short: under two minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from modular import paired, spread  # noqa: E402

MODES = ("pretraining", "ood1", "ood2")
# row -> (method, method options, whether the run has a pre-training phase)
ROWS = {
    "continual_maml": ("continual_maml", {}, True),
    "maml": ("maml", {}, True),
    "anil": ("anil", {}, True),
    "online_sgd": ("naive", {}, False),
    "fine_tuning": ("naive", {}, True),
    "rehearsal": ("rehearsal", {"buffer_size": 500}, True),
}
# the stream and pre-training sizes
FULL = {"stream_steps": 10_000, "pretraining_tasks": 4000}  # the paper's 10,000 steps
QUICK = {"stream_steps": 600, "pretraining_tasks": 400}


def jobs(dataset: str, seeds: list[int], stationarities: list[float], sizes: dict[str, int]) -> list[tuple]:
    return [(f"p{p}/{row}-seed{seed}", row, {"dataset": dataset, "stationarity": p, "seed": seed, **sizes})
            for p in stationarities for row in ROWS for seed in seeds]


def run_one(job: tuple[str, str, dict[str, Any], str, str]) -> tuple[str, float]:
    folder, row, options, data_dir, out = job
    import torch

    torch.set_num_threads(1)
    from sylvan.methods import METHODS
    from sylvan.run.experiment import RunOptions, run_experiment
    from sylvan.settings import OsakaSetting

    method_name, method_options, pretrains = ROWS[row]
    if not pretrains:
        options = {**options, "pretraining_tasks": 0}
    setting = OsakaSetting(data_dir=data_dir, progress_bar=False, accelerator="cpu", **options)
    path = Path(out) / folder
    start = time.perf_counter()
    run_experiment(setting, METHODS[method_name](**method_options),
                   RunOptions(results_dir=str(path.parent), run_name=path.name, save_checkpoints=False))
    return folder, time.perf_counter() - start


def finished(folder: Path) -> bool:
    results = folder / "results.json"
    return results.is_file() and json.loads(results.read_text()).get("complete", False)


def figures(out: Path, folder: str) -> dict[str, float]:
    """A run's figures, in percent: overall, per mode, and adaptation after a switch per mode."""
    stream = json.loads((out / folder / "results.json").read_text())["stream_accuracy"]
    values = {"all": stream["accuracy"]}
    values.update({mode: stream["accuracy_per_mode"][mode] for mode in MODES})
    values.update({f"adapt_{mode}": stream["adaptation_per_mode"][mode] for mode in MODES})
    values.update({f"adapt_{kind}": stream["adaptation_per_kind"][kind] for kind in ("first_visit", "revisit")})
    return {key: 100 * value for key, value in values.items() if value is not None}


def table(out: Path, seeds: list[int], p: float) -> list[str]:
    columns = ("all", *MODES, *(f"adapt_{mode}" for mode in MODES))
    runs = {row: [figures(out, f"p{p}/{row}-seed{seed}") for seed in seeds] for row in ROWS}
    reference = [run["all"] for run in runs["continual_maml"]]
    lines = [f"### p = {p} (seeds {' '.join(map(str, seeds))})", "",
             "| method | " + " | ".join(columns) + " | continual_maml minus it (t) |",
             "| --- " * (len(columns) + 2) + "|"]
    for row, values in runs.items():
        cells = [spread([v[c] for v in values if c in v]) for c in columns]
        difference = "-" if row == "continual_maml" else paired(reference, [v["all"] for v in values])
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {difference} |")
    lines += ["", "Accuracy over the 4 steps after a switch's first batch: to a context of the pre-training "
              "distribution minus to one out of distribution (the mean of both); back to a context seen before in "
              "the stream (relabelled) minus to one seen for the first time:", ""]
    for row, values in runs.items():
        known = [v["adapt_pretraining"] for v in values]
        new = [statistics.mean([v["adapt_ood1"], v["adapt_ood2"]]) for v in values]
        back = [v["adapt_revisit"] - v["adapt_first_visit"] for v in values]
        lines.append(f"- {row}: {paired(known, new)}; {paired(back, [0.0] * len(back))}")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="~/.cache/sylvan/data")
    parser.add_argument("--out", default="osaka-results")
    parser.add_argument("--dataset", default=None, help="mnist (default) or digits (--quick's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--stationarities", type=float, nargs="+", default=[0.9, 0.98])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="digits, 2 seeds, a short stream and pre-training")
    args = parser.parse_args()
    dataset = args.dataset or ("digits" if args.quick else "mnist")
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2, 3, 4])
    out = Path(args.out).expanduser()
    todo = [(*job, str(Path(args.data_dir).expanduser()), str(out))
            for job in jobs(dataset, seeds, args.stationarities, QUICK if args.quick else FULL)
            if not finished(out / job[0])]
    start = time.perf_counter()
    if todo:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            for folder, seconds in pool.imap_unordered(run_one, todo):
                print(f"  {folder}: {seconds:.0f} s", flush=True)
    print(f"\nOSAKA offline on {dataset}: {len(todo)} runs in {time.perf_counter() - start:.0f} s\n")
    for p in args.stationarities:
        print("\n".join(table(out, seeds, p)))


if __name__ == "__main__":
    main()
