"""The training log (`sylvan.run.training_log`): the rows it writes, and that on a GPU a fit's
steps never wait for the device to read a loss."""

from __future__ import annotations

import pytest
import torch

import sylvan.run.training_log as training_log
from sylvan.run.callbacks import Fit
from sylvan.run.training_log import LOG_EVERY, HostCopy, ProgressBar, TrainingLog


class RowsLogger:
    """The rows a run logger receives, in the order it receives them."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict]] = []

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, dict(metrics)))

    def continue_at(self, step: int) -> None:
        pass


class HeldCopy(HostCopy):
    """A loss whose copy lands only when the test says (a GPU still computing it)."""

    landed_now = False

    def __init__(self, tensor: torch.Tensor) -> None:
        self.value, self.landed = tensor.detach(), None

    def ready(self) -> bool:
        return HeldCopy.landed_now


def train_steps(log: TrainingLog, fit: Fit, steps: range) -> None:
    for fit.step in steps:
        fit.loss = torch.tensor(float(fit.step))
        log.minibatch_ended(fit)


def test_a_fits_rows_are_written_once_their_loss_has_reached_the_host_in_order_and_all_by_its_end(monkeypatch):
    monkeypatch.setattr(training_log, "HostCopy", HeldCopy)
    HeldCopy.landed_now = False
    logger = RowsLogger()
    log = TrainingLog([logger])
    fit = Fit(loader=None, epochs=1, planned_steps=5 * LOG_EVERY)
    log.fit_started(fit)
    train_steps(log, fit, range(3 * LOG_EVERY))
    assert logger.rows == [], "no loss read while the device computes it"
    HeldCopy.landed_now = True
    train_steps(log, fit, range(3 * LOG_EVERY, 4 * LOG_EVERY))
    logged = [LOG_EVERY - 1 + k * LOG_EVERY for k in range(4)]
    assert logger.rows == [(step, {"train/loss": float(step), "epoch": 0}) for step in logged]
    HeldCopy.landed_now = False
    train_steps(log, fit, range(4 * LOG_EVERY, 5 * LOG_EVERY))
    assert len(logger.rows) == 4
    log.fit_ended(fit)
    assert [step for step, _ in logger.rows] == [*logged, 5 * LOG_EVERY - 1], "the fit's end writes what is left"
    assert log.latest == 5 * LOG_EVERY - 1


def test_the_rows_a_fit_that_ended_in_an_error_never_wrote_stay_out_of_the_next_fit(monkeypatch):
    monkeypatch.setattr(training_log, "HostCopy", HeldCopy)
    HeldCopy.landed_now = False
    logger = RowsLogger()
    log = TrainingLog([logger])
    fit = Fit(loader=None, epochs=1, planned_steps=100)
    log.fit_started(fit)
    train_steps(log, fit, range(2 * LOG_EVERY))  # then an error: no fit_ended
    log.fit_started(fit := Fit(loader=None, epochs=1, planned_steps=100))
    train_steps(log, fit, range(LOG_EVERY))
    log.fit_ended(fit)
    assert logger.rows == [(LOG_EVERY - 1, {"train/loss": LOG_EVERY - 1.0, "epoch": 0})]


def test_a_methods_own_loop_writes_its_rows_at_once(monkeypatch):
    """An agent's loop logs its episodes at its step count too: its losses are written as they come."""
    monkeypatch.setattr(training_log, "HostCopy", HeldCopy)
    HeldCopy.landed_now = False
    logger = RowsLogger()
    log = TrainingLog([logger])
    fit = Fit(loader=None, epochs=1, planned_steps=100, unit="act", kind="learn")
    log.fit_started(fit)
    train_steps(log, fit, range(2 * LOG_EVERY))
    assert [step for step, _ in logger.rows] == [LOG_EVERY - 1, 2 * LOG_EVERY - 1]


def test_the_progress_bar_shows_the_latest_loss_the_log_wrote(monkeypatch, capsys):
    log = TrainingLog([RowsLogger()])
    bar = ProgressBar(log)
    fit = Fit(loader=None, epochs=1, planned_steps=2 * LOG_EVERY)
    for callback in (log, bar):
        callback.fit_started(fit)
    shown = []
    monkeypatch.setattr(bar.bar, "set_postfix", lambda postfix, refresh: shown.append(postfix["loss"]))
    for fit.step in range(2 * LOG_EVERY):
        fit.loss = torch.tensor(float(fit.step))
        log.minibatch_ended(fit)
        bar.minibatch_ended(fit)
    assert shown == [f"{LOG_EVERY - 1:.3f}", f"{2 * LOG_EVERY - 1:.3f}"]
    bar.fit_ended(fit)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_a_gpu_a_fits_steps_never_wait_for_the_device(monkeypatch):
    """Every training step of `naive`, with the GPU's synchronizing calls made errors: the loss
    the log reads reaches the host without the host waiting for it."""
    from sylvan.methods import Naive
    from sylvan.run.engine import Engine
    from sylvan.settings import ClassIncrementalSetting
    from tests.conftest import tiny_options

    train_on, steps = Engine.train_on, []

    def step_without_waits(self, step, batch, fit):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return train_on(self, step, batch, fit)
        finally:
            torch.cuda.set_sync_debug_mode(0)
            steps.append(fit.step)

    monkeypatch.setattr(Engine, "train_on", step_without_waits)
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "accelerator": "gpu"})
    results = setting.apply(Naive())
    assert len(steps) >= 2 * LOG_EVERY and results.final_average_accuracy is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_losss_host_copy_from_a_gpu_reads_its_value():
    loss = torch.tensor(1.5, device="cuda") * 2
    copy = HostCopy(loss)
    assert float(copy) == 3.0 and copy.ready() and copy.value.is_pinned()
