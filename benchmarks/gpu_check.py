"""One command that checks sylvan on a GPU machine and says what it found.

Parts (each a subprocess with a time limit of its own, so that one slow part cannot eat the rest;
each writes its whole log to OUT/<part>.log):

- `cuda_tests`: the tests that run only where CUDA is (buffers in GPU memory, transfers, mixed
  precision), every test's outcome listed;
- `suite`: the whole fast suite (`python -m pytest -n WORKERS`) with the GPU present, failures
  and errors listed by name;
- `runs`: the main job (`--setting class_incremental --method rehearsal`) on the GPU, then
  under `--precision 16-mixed` and `--precision bf16-mixed`, `derpp` under `bf16-mixed`,
  `continual_maml` on a short `osaka` stream (its own loop: fast weights, meta-updates) in
  `32-true` and `16-mixed`, and `sac` on a HalfCheetah drift (an agent's loop; MuJoCo) on the GPU
  and on the CPU: final average accuracy or return and wall time;
- `distributed`: `benchmarks/distributed_rehearsal.py` on one GPU (naive, synchronous and
  asynchronous rehearsal throughput; NCCL), when MNIST is at hand;
- `cifar`: the Seq-CIFAR-10 pipeline (ResNet-18, batch 32, crops and flips, 5 tasks of 10,000
  images, two epochs each) on `random_cifar10` (random images of CIFAR-10's shape, size and
  labels, made in memory: nothing to download) for `er-200`, beside a plain PyTorch loop doing
  what it does (the same network, batch, augmentation, a reservoir buffer in GPU memory, the
  images served from host memory in pinned minibatches; and, for reference, the same loop with
  every image in GPU memory beforehand), in `32-true` and `16-mixed`: seconds per warm epoch
  (sylvan's: the median of each task's second epoch; the plain loop's: epochs 2 and 3 of one
  task) and their ratio; and `er-200` under `--compile` in `32-true`;
- `syncs`: where the training steps of `naive`, `er-200`, `der-200` and distributed `er-200` on
  one GPU make the host wait for it (every synchronizing CUDA call torch reports, by the line of
  sylvan's code it came from), per step;
- `compile_step`: what `torch.compile` buys the plain training step of the MLP and the ResNet-18
  (`benchmarks/compile_step.py`): first step (the compilation) and median step, eager and compiled.

    python benchmarks/gpu_check.py --out DIR [--only suite cifar] [--workers 14] [--suite_beside]

Parts run one after another in the order given; with `--suite_beside`, the suite runs beside the
parts listed after it (for correctness: figures of parts beside it are not timings). On an H200
machine with 16 cores (2026-11-29) the parts took, alone: `cuda_tests` 33 s, `distributed` 63 s,
`compile_step` 43 s, `syncs` 84 s, `runs` about 180 s, and `cifar` 124 s when it trained one
epoch per task and ran no compiled run (its runs now train twice as long, and one more compiles:
about 250 s expected); the suite, with 12 workers beside `cuda_tests`, `runs` and `syncs`,
finished 3,757 of 3,789 tests in 270 s. Where one command may run 10 minutes at most:

    python benchmarks/gpu_check.py --out DIR --only cuda_tests cifar syncs distributed
    python benchmarks/gpu_check.py --out DIR/suite --only suite runs --suite_beside --workers 14

The last thing printed is a table of every part: what passed, what failed, the figures. It
also runs on a machine without a GPU: the CUDA tests then skip and the GPU runs say so.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cli_runs import REPO, Finished, run_cli, run_command

from sylvan.run.callbacks import Callback

PARTS = ("cuda_tests", "suite", "runs", "cifar", "syncs", "distributed", "compile_step")
# the test modules that hold the tests that run only where CUDA is (each run whole)
CUDA_TEST_FILES = (
    "tests/buffers/test_device.py", "tests/test_transfer.py", "tests/test_minibatches.py",
    "tests/methods/test_precision.py", "tests/run/test_training_log.py",
)


class Log:
    """The whole output of a part's commands, in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("")

    def run(self, command: list[str], timeout: float) -> tuple[int, str, float]:
        """Run `command`, append its output whole; (exit status, output, seconds). A command past
        `timeout` is killed (status 124), what it printed kept."""
        return self.record(command, run_command(command, timeout))

    def record(self, command: list[str], done: Finished) -> tuple[int, str, float]:
        """Append what `command` printed and how it ended; (exit status, output, seconds)."""
        output = done.stdout + done.stderr
        with self.path.open("a") as log:
            log.write(f"$ {' '.join(command)}\n{output}\n[gpu_check] exit {done.status} after {done.seconds:.1f} s\n\n")
        return done.status, output, done.seconds


def pytest_outcome(output: str) -> tuple[str, list[str]]:
    """pytest's last summary line, and the names of the tests that failed or errored."""
    summary = [line.strip("= ") for line in output.splitlines()
               if re.match(r"^=* ?\d+ (passed|failed|error|skipped).* in [\d.]+s", line)]
    # "FAILED tests/...::name - why" in the short summary, "[gw3] [ 5%] FAILED tests/...::name" as
    # the tests finish (-v), which a part killed at its time limit still has
    failed = sorted({match.group(2) for match in re.finditer(r"\b(FAILED|ERROR) (tests/\S+)", output)})
    return (summary[-1] if summary else "no summary (killed or crashed)"), failed


def cuda_tests(out: Path, args: argparse.Namespace) -> list[str]:
    log = Log(out / "cuda_tests.log")
    _, output, seconds = log.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q", *CUDA_TEST_FILES],
        timeout=args.cuda_tests_timeout)
    summary, failed = pytest_outcome(output)
    return [f"cuda_tests: {summary} ({seconds:.0f} s)", *(f"  failed: {name}" for name in failed)]


def suite(out: Path, args: argparse.Namespace) -> list[str]:
    log = Log(out / "suite.log")
    _, output, seconds = log.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", str(args.workers), "-v", "-rfE",
         "--durations", "20", *(["--timeout", str(args.test_timeout)] if has_pytest_timeout() else [])],
        timeout=args.suite_timeout)
    summary, failed = pytest_outcome(output)
    return [f"suite: {summary} ({seconds:.0f} s)", *(f"  failed: {name}" for name in failed)]


def has_pytest_timeout() -> bool:
    try:
        import pytest_timeout  # noqa: F401
    except ImportError:
        return False
    return True


def cli_run(log: Log, options: list[str], timeout: float) -> tuple[str, dict]:
    """One run of the command line with `options`: a line for the table, and its results."""
    done = run_cli([*options, "--progress_bar", "false"], timeout)
    log.record(done.command, done)
    if done.status != 0 or not done.results:
        return f"exit {done.status} after {done.seconds:.0f} s (see the log)", {}
    figures = {**done.results, **done.runtime}
    if "final_average_return" in figures:
        return f"return {figures['final_average_return']:.1f}, {done.seconds:.1f} s", figures
    return f"accuracy {100 * figures['final_average_accuracy']:.2f}, {done.seconds:.1f} s", figures


def runs(out: Path, args: argparse.Namespace) -> list[str]:
    log = Log(out / "runs.log")
    main_job = ["--setting", "class_incremental", "--method", "rehearsal", "--accelerator", args.accelerator]
    lines = []
    for precision in ("32-true", "16-mixed", "bf16-mixed"):
        line, _ = cli_run(log, [*main_job, "--precision", precision], args.run_timeout)
        lines.append(f"runs: main job, {precision}: {line}")
    derpp = ["--setting", "class_incremental", "--method", "derpp", "--buffer_size", "200", "--accelerator",
             args.accelerator, "--precision", "bf16-mixed"]
    line, _ = cli_run(log, derpp, args.run_timeout)
    lines.append(f"runs: derpp, bf16-mixed: {line}")
    # a method's own loop on the GPU: fast weights (torch.func) and meta-updates at the run's precision
    meta = ["--setting", "osaka", "--method", "continual_maml", "--stream_steps", "500", "--pretraining_tasks", "200",
            "--accelerator", args.accelerator]
    for precision in ("32-true", "16-mixed"):
        line, _ = cli_run(log, [*meta, "--precision", precision], args.run_timeout)
        lines.append(f"runs: continual_maml on osaka, {precision}: {line}")
    # an agent's own loop on the GPU against the CPU: sac on a HalfCheetah drift (MuJoCo, the rl extra)
    sac = ["--setting", "incremental_rl", "--method", "sac", "--env", "HalfCheetah-v5", "--nb_tasks", "2",
           "--steps_per_task", "600", "--eval_episodes", "2", "--max_episode_steps", "300", "--learning_starts", "200"]
    for accelerator in (args.accelerator, "cpu"):
        line, _ = cli_run(log, [*sac, "--accelerator", accelerator], args.run_timeout)
        lines.append(f"runs: sac on HalfCheetah-v5, {accelerator}: {line}")
    return lines


def distributed(out: Path, args: argparse.Namespace) -> list[str]:
    data = Path(args.data_dir)
    if not (data / "MNIST" / "raw").exists():
        return [f"distributed: skipped, no MNIST under {data}"]
    log = Log(out / "distributed.log")
    status, output, seconds = log.run(
        [sys.executable, "benchmarks/distributed_rehearsal.py", "--accelerator", args.accelerator, "--workers", "1",
         "--repeats", "1", "--skip_accuracy", "--data_dir", str(data)], timeout=args.distributed_timeout)
    rows = [line for line in output.splitlines() if re.match(r"^\s+1 \|", line)]
    if status != 0 or not rows:
        return [f"distributed: exit {status} after {seconds:.0f} s (see the log)"]
    naive, sync, asynchronous = rows[0].split("|")[1].split()
    return [f"distributed: 1 {args.accelerator}, samples/s: naive {naive}, sync {sync}, async {asynchronous} "
            f"({seconds:.0f} s)"]


ER_200 = dict(lr=0.1, buffer_size=200, replay_size=32)
CIFAR_PRECISIONS = ("32-true", "16-mixed")


def cifar(out: Path, args: argparse.Namespace) -> list[str]:
    """`er-200` on Seq-CIFAR-10's pipeline beside the plain loop doing its work, in each
    precision: warm epochs against warm epochs (`time_er_epochs`, `plain_loop`)."""
    log = Log(out / "cifar.log")
    lines = []
    for precision in CIFAR_PRECISIONS:
        size = ["--accelerator", args.accelerator, "--precision", precision, "--cifar_samples", str(args.cifar_samples)]
        line, sylvan_epoch = timed_er_run(log, size, args.cifar_timeout)
        lines.append(f"cifar: er-200, {precision}: {line}")
        if precision == "32-true":  # what --compile buys the same run
            line, compiled_epoch = timed_er_run(log, [*size, "--compile_network"], args.cifar_timeout)
            both = compiled_epoch and sylvan_epoch
            ratio = f", compiled / eager: {compiled_epoch / sylvan_epoch:.3f}" if both else ""
            lines.append(f"cifar: er-200 --compile, {precision}: {line}{ratio}")
        for data in ("host", "device"):
            status, output, _ = log.run([sys.executable, __file__, "--plain_loop", *size, "--plain_data", data],
                                        timeout=args.cifar_timeout)
            found = re.search(r"plain loop: ([\d.]+) (s per epoch.*)", output)
            if not found:
                lines.append(f"cifar: plain PyTorch er-200, data in {data} memory, {precision}: exit {status} "
                             "(see the log)")
                continue
            ratio = f", er-200 / plain: {sylvan_epoch / float(found.group(1)):.3f}" if sylvan_epoch else ""
            lines.append(f"cifar: plain PyTorch er-200, data in {data} memory, {precision}: "
                         f"{found.group(1)} {found.group(2)}{ratio}")
    return lines


def timed_er_run(log: Log, options: list[str], timeout: float) -> tuple[str, float | None]:
    """`time_er_epochs` in a process of its own with `options`: its line for the table, and its
    seconds per warm epoch (None where it did not finish)."""
    status, output, seconds = log.run([sys.executable, __file__, "--time_er_epochs", *options], timeout=timeout)
    found = re.search(r"sylvan er-200: ([\d.]+) (s per warm epoch.*)", output)
    if not found:
        return f"exit {status} after {seconds:.0f} s (see the log)", None
    return f"{found.group(1)} {found.group(2)}", float(found.group(1))


class EpochClock(Callback):
    """Times each epoch of each fit (from its start to the next one's or to the fit's end), the
    GPU's queued work finished at both ends."""

    def __init__(self) -> None:
        self.epochs: list[tuple[int, float]] = []  # (epoch of its fit, seconds)
        self.started: tuple[int, float] | None = None

    def epoch_started(self, fit: Any) -> None:
        self.lap(fit.epoch)

    def fit_ended(self, fit: Any) -> None:
        self.lap(None)

    def lap(self, epoch: int | None) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self.started is not None:
            self.epochs.append((self.started[0], now - self.started[1]))
        self.started = None if epoch is None else (epoch, now)


def time_er_epochs(accelerator: str, precision: str, samples: int = 10_000, compile: bool = False, tasks: int = 5,
                   epochs: int = 2) -> None:
    """sylvan's `er-200` on `random_cifar10` (ResNet-18, batch 32 + 32 replayed, crops and flips,
    `tasks` tasks of `samples` images, `epochs` epochs each): prints the median seconds of the warm
    epochs (every epoch but each task's first, which pays for the fit's set-up and, in the first
    task, the kernels' warm-up), the epochs a plain loop's warm epochs are set against."""
    from sylvan.methods import Rehearsal
    from sylvan.settings import ClassIncrementalSetting

    clock = EpochClock()
    setting = ClassIncrementalSetting(dataset="random_cifar10", nb_tasks=tasks, epochs=epochs, batch_size=32,
                                      train_samples=samples * tasks, accelerator=accelerator, precision=precision,
                                      compile=compile, progress_bar=False)
    start = time.perf_counter()
    results = setting.apply(Rehearsal(**ER_200), callbacks=[clock])
    warm = sorted(seconds for epoch, seconds in clock.epochs if epoch > 0)
    first = [seconds for epoch, seconds in clock.epochs if epoch == 0]
    print(f"sylvan er-200: {warm[len(warm) // 2]:.2f} s per warm epoch of {samples:,} images (median of {len(warm)}: "
          f"epochs 2 to {epochs} of {tasks} tasks; first epochs {' '.join(f'{s:.2f}' for s in first)} s), "
          f"{setting.device.type}, {precision}{', compiled' if compile else ''}, "
          f"whole run {time.perf_counter() - start:.1f} s, "
          f"accuracy {100 * results.final_average_accuracy:.2f}")


SYNC_RUNS = ("naive", "er-200", "der-200", "distributed er-200, 1 GPU")


def syncs(out: Path, args: argparse.Namespace) -> list[str]:
    log = Log(out / "syncs.log")
    lines = []
    for name in SYNC_RUNS:
        status, output, seconds = log.run(
            [sys.executable, __file__, "--count_syncs", name, "--accelerator", args.accelerator],
            timeout=args.cifar_timeout)
        found = [line for line in output.splitlines() if line.startswith("syncs:")]
        lines.extend(found or [f"syncs: {name}: exit {status} after {seconds:.0f} s (see the log)"])
        if found and "skipped" in found[0]:
            break
    return lines


def compile_step(out: Path, args: argparse.Namespace) -> list[str]:
    log = Log(out / "compile_step.log")
    device = "cpu" if args.accelerator == "cpu" else "cuda"
    status, output, seconds = log.run(
        [sys.executable, "benchmarks/compile_step.py", "--device", device, "--networks", "mlp", "resnet18",
         "--steps", "100"], timeout=args.compile_timeout)
    rows = [line.strip() for line in output.splitlines() if re.match(r"^\s*(mlp|resnet18) ", line)]
    if status != 0 or not rows:
        return [f"compile_step: exit {status} after {seconds:.0f} s (see the log)"]
    return [f"compile_step: {' '.join(row.split())}" for row in rows]


def sync_place(stack: list[Any]) -> str | None:
    """Where a synchronizing call with this Python `stack` (frames, outermost first) was made: the
    innermost frame in sylvan's package, else the innermost of all; None outside a training
    step of sylvan's engine (set-up, evaluation)."""
    if not any(frame.filename.endswith(os.path.join("run", "engine.py")) and frame.name == "train_on"
               for frame in stack):
        return None
    ours = [frame for frame in stack if f"{os.sep}sylvan{os.sep}" in frame.filename]
    frame = (ours or stack)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} ({frame.name})"


def sync_run(name: str) -> tuple[Any, Any]:
    """The setting and method of one of `SYNC_RUNS`: 2 tasks of random CIFAR-shaped images, the
    ResNet-18, batch 32 (+ 32 replayed) on the GPU."""
    from sylvan.methods import DER, Naive, Rehearsal
    from sylvan.settings import ClassIncrementalSetting, DistributedSetting

    data = dict(dataset="random_cifar10", nb_tasks=2, train_samples=2_000, batch_size=32, accelerator="gpu",
                progress_bar=False)
    if name == "naive":
        method = Naive(lr=0.1)
    else:
        method = DER(**ER_200, alpha=0.3) if name == "der-200" else Rehearsal(**ER_200)
    setting = (DistributedSetting(devices=1, **data) if name.startswith("distributed")
               else ClassIncrementalSetting(**data))
    return setting, method


def count_syncs(name: str, accelerator: str, top: int = 8) -> None:
    """Where the training steps of `name` (one of `SYNC_RUNS`) make the host wait for the GPU:
    every synchronizing CUDA call torch reports (`torch.cuda.set_sync_debug_mode`) while the
    engine trains on a minibatch, by the innermost line of sylvan's code it came from (else of
    Lightning's or torch's), per training step."""
    import collections
    import traceback
    import warnings

    import torch

    if accelerator == "cpu" or not torch.cuda.is_available():
        print("syncs: skipped, no CUDA device")
        return
    from sylvan.run.engine import Engine

    setting, method = sync_run(name)
    places: collections.Counter[str] = collections.Counter()
    steps = [0]
    train_on = Engine.train_on

    def counted_step(self, step, batch, fit):
        steps[0] += 1
        return train_on(self, step, batch, fit)

    def record(message, category, filename, lineno, file=None, line=None) -> None:
        place = sync_place(traceback.extract_stack()[:-1]) if "synchroniz" in str(message) else None
        if place is not None:
            places[place] += 1

    Engine.train_on = counted_step
    warnings.showwarning = record
    warnings.simplefilter("always")
    torch.cuda.set_sync_debug_mode("warn")
    setting.apply(method)
    torch.cuda.set_sync_debug_mode(0)
    total = sum(places.values())
    print(f"syncs: {name}: {total} in {steps[0]} training steps ({total / max(steps[0], 1):.2f} per step)")
    for place, count in places.most_common(top):
        print(f"syncs:   {count:6d}  {place}")


def plain_loop(accelerator: str, precision: str = "32-true", data: str = "host", epochs: int = 3,
               samples: int = 10_000, batch: int = 32, capacity: int = 200) -> None:
    """Experience replay on one task of random CIFAR-shaped images as a plain PyTorch loop: the
    ResNet-18, batch 32 of new samples plus 32 replayed, crops and flips, SGD, a reservoir buffer
    of uint8 pixels in the device's memory; under `16-mixed`, the forward pass in float16 autocast
    and the loss scaled (`torch.amp.GradScaler`). The images are in host memory (`data="host"`:
    torch's shuffling `DataLoader` over a `TensorDataset`, which collates each minibatch sample by
    sample, serving it pinned, copied to the GPU as it comes, as sylvan's loader serves its
    minibatches, gathered in one indexing) or all in the GPU's memory beforehand (`"device"`: no
    loader, no copy). Prints seconds per epoch (the first epoch, which pays for the kernels' warm-up, left out)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from reference_buffers import reservoir_slots

    from sylvan.minibatches import float_inputs
    from sylvan.models import build_backbone, with_input_normalization
    from sylvan.settings.data.augmentation import RandomCropFlip
    from sylvan.settings.data.datasets import DATASETS

    device = torch.device("cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    spec = DATASETS["random_cifar10"]
    net = with_input_normalization(build_backbone("resnet18", spec.input_shape, 10), *spec.channel_stats).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    mixed = precision == "16-mixed"
    scaler = torch.amp.GradScaler(device.type, enabled=mixed)
    augment = RandomCropFlip(seed=0)
    x_all = torch.randint(0, 256, (samples, *spec.input_shape), dtype=torch.uint8)
    y_all = torch.randint(0, 2, (samples,))
    on_device = data == "device"
    if on_device:
        x_all, y_all = x_all.to(device), y_all.to(device)
    else:
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_all, y_all), batch_size=batch,
                                             shuffle=True, generator=torch.Generator().manual_seed(0),
                                             pin_memory=device.type == "cuda")
    memory_x = torch.empty((capacity, *spec.input_shape), dtype=torch.uint8, device=device)
    memory_y = torch.empty(capacity, dtype=torch.long, device=device)
    rng = torch.Generator().manual_seed(0)
    host_rng = np.random.default_rng(0)
    seen = 0
    times = []
    for _ in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if on_device:
            order = torch.randperm(samples, generator=rng).to(device)
            minibatches = ((x_all[index], y_all[index]) for index in order.split(batch))
        else:
            minibatches = ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in loader)
        for x, y in minibatches:
            inputs, labels = float_inputs(x), y
            held = min(seen, capacity)
            if held >= batch:
                drawn = torch.randint(held, (batch,), generator=rng).to(device, non_blocking=True)
                inputs = torch.cat([inputs, float_inputs(memory_x[drawn])])
                labels = torch.cat([labels, memory_y[drawn]])
            with torch.autocast(device.type, dtype=torch.float16, enabled=mixed):
                loss = F.cross_entropy(net(augment(inputs)), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            # reservoir sampling, decided on the host, written with one scatter per field
            slots, rows = (torch.from_numpy(a).to(device, non_blocking=True)
                           for a in reservoir_slots(seen, len(y), capacity, host_rng))
            memory_x[slots], memory_y[slots] = x[rows], y[rows]
            seen += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    measured = times[1:] or times
    print(f"plain loop: {sum(measured) / len(measured):.2f} s per epoch of {samples:,} images "
          f"(epochs 2 to {epochs}; first {times[0]:.2f} s), data in {data} memory, {device.type}, {precision}")


def timed_part(part: str, out: Path, args: argparse.Namespace) -> list[str]:
    """Run one part; its lines for the table, printed as it ends."""
    start = time.perf_counter()
    lines = globals()[part](out, args)
    print("\n".join(lines) + f"   [{part}: {time.perf_counter() - start:.0f} s]", flush=True)
    return lines


def write_summary(out: Path, header: str, parts: list[str], found: dict[str, list[str]]) -> list[str]:
    """OUT/summary.txt: the table of the parts finished so far, in the order asked (written after
    each part, so that a check stopped at its time limit keeps what it found)."""
    table = [header, *(line for part in parts for line in found.get(part, []))]
    (out / "summary.txt").write_text("\n".join(table) + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check", help="folder for the logs (made if missing)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2), help="pytest-xdist workers")
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--data_dir", default=os.environ.get("SYLVAN_DATA_DIR", str(REPO / "data")))
    parser.add_argument("--cuda_tests_timeout", type=float, default=90)
    parser.add_argument("--suite_timeout", type=float, default=420)
    parser.add_argument("--test_timeout", type=float, default=120, help="per test, where pytest-timeout is installed")
    parser.add_argument("--run_timeout", type=float, default=60)
    parser.add_argument("--distributed_timeout", type=float, default=100)
    parser.add_argument("--cifar_timeout", type=float, default=120, help="per run")
    parser.add_argument("--compile_timeout", type=float, default=150)
    parser.add_argument("--suite_beside", action="store_true",
                        help="run the suite beside the parts listed after it (those listed before it run alone)")
    parser.add_argument("--plain_loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="32-true", help=argparse.SUPPRESS)
    parser.add_argument("--plain_data", choices=("host", "device"), default="host", help=argparse.SUPPRESS)
    parser.add_argument("--time_er_epochs", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compile_network", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cifar_samples", type=int, default=10_000,
                        help="cifar: images per task (and in the plain loop's one task)")
    parser.add_argument("--count_syncs", choices=SYNC_RUNS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_loop:
        plain_loop(args.accelerator, args.precision, args.plain_data, samples=args.cifar_samples)
        return
    if args.time_er_epochs:
        time_er_epochs(args.accelerator, args.precision, args.cifar_samples, args.compile_network)
        return
    if args.count_syncs:
        count_syncs(args.count_syncs, args.accelerator)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    header = (f"sylvan GPU check, {time.strftime('%Y-%m-%d')}: {card}, torch {torch.__version__}, "
              f"python {sys.version.split()[0]}")
    print(header, flush=True)
    found: dict[str, list[str]] = {}
    beside = None
    for part in args.only:
        if part == "suite" and args.suite_beside:
            beside = threading.Thread(target=lambda: found.update(suite=timed_part("suite", out, args)))
            beside.start()
            continue
        found[part] = timed_part(part, out, args)
        write_summary(out, header, args.only, found)
    if beside is not None:
        beside.join()
    table = write_summary(out, header, args.only, found)
    print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
