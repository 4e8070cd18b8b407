"""Start-up and whole-run time of sylvan's commands beside a framework-free PyTorch loop.

For each command, measured from the moment it is started (the interpreter's start included): the
seconds to its first training step (the process writes the time of that step to the file
`SYLVAN_FIRST_STEP_FILE` names) and to its end. The commands:

- `import torch, Fabric`: what importing torch and the Lightning Fabric sylvan trains on
  (`sylvan.parallel.fabric_package`) costs, the floor a run's start-up sits on;
- the main job: `cli.py --setting class_incremental --method rehearsal` (digits);
- Seq-MNIST ER-200: `rehearsal` on MNIST, 5 tasks of 2 classes, MLP 784-100-100-10, batch 10,
  1 epoch, buffer 200, r 10, lr 0.01 (the DER paper's recipe), with a run's defaults (its
  results folder, checkpoints and plots: what a user gets);
- the plain loop: the same ER-200 written with torch and NumPy alone (MNIST's IDX files read
  with NumPy, a reservoir buffer, the same network), run by this script with `--plain_loop`.

The commands run in turn, `--repeats` times (interleaved, so that drift of the machine hits
each alike), each with one thread and, with `--core`, pinned to one CPU core; the table gives
medians.

    python benchmarks/startup.py --data_dir ~/.cache/sylvan/data [--repeats 3] [--core 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(command: list[str], core: int | None) -> tuple[float | None, float]:
    """(seconds to the first training step or None, seconds to the end) of `command`."""
    with tempfile.TemporaryDirectory() as folder:
        mark = Path(folder) / "first_step"
        environment = {**os.environ, "SYLVAN_FIRST_STEP_FILE": str(mark), "OMP_NUM_THREADS": "1",
                       "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
        start = time.time()
        done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, preexec_fn=pin)
        end = time.time()
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        first = float(mark.read_text().split()[0]) - start if mark.exists() else None
    return first, end - start


def commands(data_dir: str) -> dict[str, list[str]]:
    cli = [sys.executable, str(REPO / "cli.py")]
    quiet = ["--progress_bar", "false", "--accelerator", "cpu"]
    er_200 = [*cli, "--setting", "class_incremental", "--method", "rehearsal", "--dataset", "mnist", "--data_dir",
              data_dir, "--nb_tasks", "5", "--epochs", "1", "--batch_size", "10", "--lr", "0.01", "--buffer_size",
              "200", "--replay_size", "10", "--seed", "0", *quiet]
    return {
        "import torch, Fabric": [sys.executable, "-c",
                                 "import torch; from sylvan.parallel.fabric_package import fabric; fabric()"],
        "main job (digits)": [*cli, "--setting", "class_incremental", "--method", "rehearsal", *quiet],
        "Seq-MNIST ER-200": er_200,
        "plain loop ER-200": [sys.executable, __file__, "--plain_loop", "--data_dir", data_dir],
    }


def plain_loop(data_dir: str, seed: int = 0, capacity: int = 200, replay: int = 10, batch: int = 10) -> None:
    """Experience replay on Seq-MNIST with torch and NumPy alone: reservoir sampling, r samples
    drawn without replacement each step, SGD; prints the final average accuracy."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    from sylvan.run.first_step import mark_first_step
    from sylvan.settings.data.idx_files import read_mnist_split

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    folder = Path(data_dir).expanduser() / "MNIST" / "raw"
    (x_train, y_train), (x_test, y_test) = (read_mnist_split(folder, train) for train in (True, False))
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                        nn.Linear(100, 10))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    memory_x = torch.zeros(capacity, 784)
    memory_y = torch.zeros(capacity, dtype=torch.long)
    seen = 0
    accuracies = []
    for task in range(5):
        classes = (2 * task, 2 * task + 1)
        rows = np.flatnonzero(np.isin(y_train, classes))
        rng.shuffle(rows)
        x_task = torch.from_numpy(x_train[rows].reshape(len(rows), 784))
        y_task = torch.from_numpy(y_train[rows])
        for first in range(0, len(rows), batch):
            mark_first_step()
            x = x_task[first:first + batch].float().div_(255)
            y = y_task[first:first + batch]
            inputs, labels = x, y
            held = min(seen, capacity)
            if held:
                drawn = torch.from_numpy(rng.choice(held, size=min(replay, held), replace=False))
                inputs, labels = torch.cat([x, memory_x[drawn]]), torch.cat([y, memory_y[drawn]])
            loss = F.cross_entropy(net(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for sample in range(len(y)):
                slot = seen if seen < capacity else int(rng.integers(seen + 1))
                if slot < capacity:
                    memory_x[slot], memory_y[slot] = x[sample], y[sample]
                seen += 1
        with torch.no_grad():
            correct = []
            for done in range(task + 1):
                mask = np.isin(y_test, (2 * done, 2 * done + 1))
                x = torch.from_numpy(x_test[mask].reshape(-1, 784)).float().div_(255)
                correct.append(float((net(x).argmax(1) == torch.from_numpy(y_test[mask])).float().mean()))
        accuracies.append(sum(correct) / len(correct))
    print(f"final average accuracy {100 * accuracies[-1]:.2f}")


def main() -> None:
    from sylvan.settings.online import DEFAULT_DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", type=int, default=None, help="pin every command to this CPU core")
    parser.add_argument("--plain_loop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_loop:
        plain_loop(args.data_dir)
        return
    if args.repeats < 1:
        sys.exit("startup: --repeats must be at least 1")
    chosen = commands(str(Path(args.data_dir).expanduser().resolve()))
    measured: dict[str, list[tuple[float | None, float]]] = {name: [] for name in chosen}
    for _ in range(args.repeats):
        for name, command in chosen.items():
            measured[name].append(timed(command, args.core))
    import torch

    where = f"core {args.core}" if args.core is not None else f"{os.cpu_count()} cores, unpinned"
    print(f"Start-up and whole run, seconds from the command's start, median of {args.repeats} "
          f"(one thread, {where}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')})")
    imports = statistics.median(total for _, total in measured["import torch, Fabric"])
    plain_total = statistics.median(total for _, total in measured["plain loop ER-200"])
    print(f"{'command':>24} | {'first step':>10} | {'- imports':>9} | {'whole run':>9} | {'/ plain loop':>12}")
    for name, figures in measured.items():
        firsts = [first for first, _ in figures if first is not None]
        total = statistics.median(total for _, total in figures)
        first = f"{statistics.median(firsts):10.2f}" if firsts else f"{'':>10}"
        over = f"{statistics.median(firsts) - imports:+9.2f}" if firsts else f"{'':>9}"
        print(f"{name:>24} | {first} | {over} | {total:9.2f} | {total / plain_total:12.2f}")
    print("('- imports': the first step's time less what importing torch and Fabric alone takes)")


if __name__ == "__main__":
    main()
