"""Where a run's metrics go (`--loggers`): one interface, and the same metrics in each logger.

Every logger receives:

- the training log's steps, numbered across the run (`train/loss`, and `train/lr` where a schedule
  moves the learning rate; `episode_return` and `episode_length` in reinforcement learning);
- after each stage, its measure on each task and their average (`accuracy/task_0`, ...,
  `accuracy/average`), and what the stage cost (`cost/stage_...`), at the run's last logged step;
- at the end, the run's summary (final average accuracy, forgetting, ..., and `cost/...`) and
  its plots.

`csv` writes `logs/train.csv`, `logs/stages.csv` and `logs/summary.csv` in the run's folder;
`wandb` logs to Weights & Biases (`--wandb_project`); `tensorboard` writes event files under
`tensorboard/` in the run's folder (`tensorboard --logdir RUN_DIR/tensorboard`). A logger's
`state` goes into each checkpoint, so that a resumed run's logs are an uninterrupted run's.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from sylvan.errors import ConfigurationError, unknown_name, writing


class Logger:
    """A destination of a run's metrics; each method does nothing unless overridden."""

    name: ClassVar[str] = ""

    def expect_columns(self, names: Sequence[str]) -> None:
        """The training log will have these metrics (besides the loss), before its first row."""

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        """A logged training step (`step`: counted across the run's fits)."""

    def log_stage(self, stage: int, step: int, metrics: dict[str, float]) -> None:
        """Stage `stage` (from 0) is over; `step`: the run's last logged training step."""

    def log_summary(self, summary: dict[str, float], plots: dict[str, Path]) -> None:
        """The run is over: its summary and its plots (PNG files)."""

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the logger, for `restore`."""
        return {}

    def restore(self, state: dict[str, Any], step: int, stages: int) -> None:
        """Resuming from a checkpoint whose `state` this is, written after `stages` stages: the
        run goes on from training step `step`, and what was logged after the checkpoint is
        dropped where the logger can."""

    def close(self) -> None:
        """Nothing more will be logged."""


class CsvLogger(Logger):
    """`logs/train.csv` (a row per logged step), `logs/stages.csv` (a row per stage) and
    `logs/summary.csv` (the summary's names and values) in the run's folder. The training log is
    appended to; a checkpoint records its bytes and their SHA-256, and resuming cuts it back to
    them (refusing a log that no longer starts with them: `recorded_log`)."""

    name: ClassVar[str] = "csv"

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.train_path = run_dir / "logs" / "train.csv"
        self.fields: list[str] | None = None
        self.bytes = 0  # bytes written to train.csv, with a digest of them
        self.digest = hashlib.sha256()
        self.stages: list[dict[str, Any]] = []  # the rows of stages.csv
        # the columns train.csv will have from its first row on: the loss, and what the run expects
        self.expected = {"train/loss"}

    def expect_columns(self, names: Sequence[str]) -> None:
        self.expected.update(names)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **metrics}
        if self.fields is None or set(row) - set(self.fields):
            # the columns the run expects are there from the first row on, whichever comes first
            # (an agent's episodes or its losses): one header, which a reader (pandas, csv) takes whole
            known = set(self.fields or self.expected)
            self.fields = sorted(set(row) | known, key=lambda k: (k != "step", k))
            write_header = True
        else:
            write_header = not self.train_path.exists()
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.fields)
        if write_header:
            writer.writeheader()
        writer.writerow(row)
        written = text.getvalue().encode()
        with writing(self.train_path), open(self.train_path, "ab") as f:
            f.write(written)
        self.bytes += len(written)
        self.digest.update(written)

    def log_stage(self, stage: int, step: int, metrics: dict[str, float]) -> None:
        self.stages = [*self.stages[:stage], {"stage": stage, "step": step, **metrics}]
        write_rows(self.run_dir / "logs" / "stages.csv", self.stages)

    def log_summary(self, summary: dict[str, float], plots: dict[str, Path]) -> None:
        write_rows(self.run_dir / "logs" / "summary.csv", [{"name": k, "value": v} for k, v in summary.items()])

    def state(self) -> dict[str, Any]:
        return {"csv_bytes": self.bytes, "csv_sha256": self.digest.hexdigest(), "csv_fields": self.fields}

    def restore(self, state: dict[str, Any], step: int, stages: int) -> None:
        kept, problem = recorded_log(self.run_dir, state)
        if problem:
            raise ConfigurationError(problem)
        if self.train_path.exists():
            with open(self.train_path, "wb") as f:
                f.write(kept)
        self.bytes = len(kept)
        self.digest = hashlib.sha256(kept)
        self.fields = state["csv_fields"]
        stages_path = self.run_dir / "logs" / "stages.csv"
        if stages_path.exists():  # the rows of the stages the checkpoint holds, as they were written
            with open(stages_path, newline="") as f:
                self.stages = list(csv.DictReader(f))[:stages]
            write_rows(stages_path, self.stages)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """`path` rewritten whole (atomically) as a CSV of `rows`, its columns those of every row."""
    fields: list[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    tmp = path.with_suffix(".csv.tmp")
    with writing(path):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)


def recorded_log(run_dir: Path, state: dict[str, Any]) -> tuple[bytes, str | None]:
    """The part of `logs/train.csv` in `run_dir` that a checkpoint's logger `state` says it held,
    and why it cannot be restored where it cannot: shorter than it was then, or no longer the
    same bytes (cut, edited, overwritten). A checkpoint of an older version recorded its lines
    alone, and no digest: that part is not checked; a run that wrote no CSV log has none to check."""
    if "csv_bytes" not in state and "csv_lines" not in state:
        return b"", None
    path = Path(run_dir) / "logs" / "train.csv"
    try:
        with open(path, "rb") as f:
            head = f.read(state["csv_bytes"]) if "csv_sha256" in state else b"".join(
                f.readlines()[: state["csv_lines"]])
    except FileNotFoundError:
        head = b""
    except OSError as error:
        return b"", f"--resume {run_dir}: cannot read {path} ({error.strerror})"
    if "csv_sha256" not in state:
        return head, None
    recorded = state["csv_bytes"]
    if len(head) == recorded and hashlib.sha256(head).hexdigest() == state["csv_sha256"]:
        return head, None
    if not path.exists():
        found = "is gone since the last checkpoint was written"
    elif len(head) < recorded:
        found = f"holds {len(head)} of the {recorded} bytes it held when the last checkpoint was written"
    else:
        found = "has changed since the last checkpoint was written"
    return head, (
        f"--resume {run_dir}: the training log {path} {found}, so the resumed run's log would not be the run's. "
        "Nothing was written. Put the file back as it was (from a copy), or start the run again"
    )


class WandbLogger(Logger):
    """A Weights & Biases run (`sylvan.run.tracking.start_wandb`: offline without credentials; a
    resumed run logs into the W&B run it logged to)."""

    name: ClassVar[str] = "wandb"

    def __init__(self, run: Any) -> None:
        self.run = run

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log({"step": step, **metrics}, step=step)

    def log_stage(self, stage: int, step: int, metrics: dict[str, float]) -> None:
        self.run.log({**metrics, "stage": stage})

    def log_summary(self, summary: dict[str, float], plots: dict[str, Path]) -> None:
        import wandb

        self.run.log({name: wandb.Image(str(path)) for name, path in plots.items()})
        for key, value in summary.items():
            self.run.summary[key] = value

    def close(self) -> None:
        self.run.finish()


class TensorBoardLogger(Logger):
    """TensorBoard event files under `tensorboard/` in the run's folder, a scalar per metric at
    the run's step count (`torch.utils.tensorboard`). A resumed run's writer drops the events
    logged after the checkpoint (TensorBoard's `purge_step`)."""

    name: ClassVar[str] = "tensorboard"

    def __init__(self, run_dir: Path) -> None:
        self.log_dir = run_dir / "tensorboard"
        self.purge_step: int | None = None
        self._writer: Any = None
        self.last_step = 0

    @property
    def writer(self) -> Any:
        if self._writer is None:  # made at the first metric, after a resumed run's `restore`
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir), purge_step=self.purge_step)
        return self._writer

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.last_step = step

    def log_stage(self, stage: int, step: int, metrics: dict[str, float]) -> None:
        for name, value in {**metrics, "stage": stage}.items():
            self.writer.add_scalar(name, value, step)
        self.last_step = step

    def log_summary(self, summary: dict[str, float], plots: dict[str, Path]) -> None:
        for name, value in summary.items():
            self.writer.add_scalar(f"summary/{name}", value, self.last_step)
        for name, path in plots.items():
            self.writer.add_image(f"plots/{name}", png_pixels(path), self.last_step, dataformats="HWC")

    def restore(self, state: dict[str, Any], step: int, stages: int) -> None:
        self.purge_step = step or None  # before a run's first logged step, nothing is purged
        self.last_step = step

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def png_pixels(path: Path) -> Any:
    """The RGB pixels of a PNG file, height x width x 3 (uint8)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


LOGGERS: dict[str, type[Logger]] = {logger.name: logger for logger in (CsvLogger, WandbLogger, TensorBoardLogger)}


def check_loggers(names: list[str]) -> None:
    """Refuse an unknown logger's name, and `tensorboard` where its package is not installed."""
    for name in names:
        if name not in LOGGERS:
            raise unknown_name("logger", name, list(LOGGERS))
    if "tensorboard" in names:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "--loggers tensorboard needs the tensorboard package: pip install tensorboard "
                "(or install sylvan with its [tensorboard] extra)"
            ) from None
