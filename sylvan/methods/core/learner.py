"""The Lightning learner shared by supervised methods (see `sylvan.methods.core.supervised`).

`Learner` is the `LightningModule` that wraps a `SupervisedMethod`'s backbone and delegates the
loss of each step to the method. This module is the one that imports Lightning; methods import it
when they first build a learner or train.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.first_step import mark_first_step
from sylvan.methods.core.batch import Batch
from sylvan.methods.parts.loss_scaling import loss_scaler, step_overflowed
from sylvan.minibatches import float_inputs
from sylvan.run.fused_steps import minibatch_callbacks

if TYPE_CHECKING:  # the method hands itself to its learner: a type only, no import cycle
    from sylvan.methods.core.supervised import SupervisedMethod

for _logger in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
    logging.getLogger(_logger).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", ".*GPU available but not used.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")


def single_value_batch_norm(method: SupervisedMethod) -> ConfigurationError:
    """The error for a forward pass in training on one sample through a network whose batch norm
    then sees a single value per channel, which it cannot normalize (torch raises a ValueError):
    a ResNet on 8x8 inputs (digits) ends in 1x1 feature maps."""
    setting = method.run
    backbone = method.backbone_name(setting)
    size = "x".join(map(str, setting.input_shape[1:]))
    return ConfigurationError(
        f"training passed a single sample through {backbone}, whose batch norm then has one value per channel "
        f"to normalize, which it cannot ({backbone} on {size} inputs ends in 1x1 feature maps): the minibatch, or "
        "what the method drew from its memory, held one sample. Use a --batch_size that leaves no minibatch of one "
        "sample (a task of N training samples ends in one of N mod --batch_size, per worker when data-parallel) "
        "and memory draws of 2 or more, or a backbone without batch norm (mlp, cnn)"
    )


class Learner(L.LightningModule):
    """A LightningModule around the method's backbone; the method computes each step's loss."""

    def __init__(self, method: SupervisedMethod, model: nn.Module, num_tasks: int, num_classes: int) -> None:
        super().__init__()
        self.method = [method]  # a list, so that the method is not registered as a submodule
        self.model = model
        # task_classes[t, c]: class c was seen with task label t (learned from training batches).
        self.register_buffer("task_classes", torch.zeros(num_tasks, num_classes, dtype=torch.bool))
        # under DDP, each worker learns it from its own batches: not broadcast from worker 0
        # before every forward pass (DDP's default for buffers), which would cost a collective
        # per step and overwrite what the other workers learned
        self._ddp_params_and_buffers_to_ignore = ["task_classes"]
        self.step_skipped = False  # the step's gradients overflowed the loss scale (16-mixed)
        self.fused_steps = 1  # minibatches per Lightning step in this fit (`sylvan.run.fused_steps`)

    def __setattr__(self, name: str, value: Any) -> None:
        """Lightning names the hook it is in by setting `_current_fx_name` before and after each
        one, 44 times per training step. It is a plain attribute (a string or None), never a
        parameter, buffer or submodule, so it skips `nn.Module.__setattr__`'s checks for those,
        which cost about 1.4 us a time (60 us of a 1.5 ms step of an MLP at batch 128)."""
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.fused_steps > 1:  # a group of minibatches, each trained on here (`sylvan.run.fused_steps`)
            self.train_group(batch)
            return None
        step = self.global_step
        loss = self.minibatch_loss(batch)
        if self.writes_logs_at(step):
            self.log_loss(loss, step, len(batch[1]))
        return loss

    def minibatch_loss(self, batch: Any) -> torch.Tensor:
        """The method's loss on one minibatch (as the loader serves it), its inputs made float
        and augmented first, its task labels' classes noted."""
        mark_first_step()
        batch = Batch(*batch)
        if batch.x.dtype == torch.uint8:  # pixels as stored (`pixel_batches`): float here, on the device
            batch = batch._replace(x=float_inputs(batch.x))
        method = self.method[0]
        if method.augmentation is not None:
            batch = batch._replace(x=method.augment_inputs(batch.x), stored_x=batch.x)
        if batch.t is not None:
            self.task_classes[batch.t, batch.y] = True
        try:
            return method.training_step(batch)
        except ValueError as error:
            if "Expected more than 1 value per channel when training" not in str(error):
                raise
            raise single_value_batch_norm(method) from error

    def train_group(self, group: list[Any]) -> None:
        """Train on each minibatch of `group` in turn as Lightning's automatic optimization
        would, in its order: the per-minibatch callbacks, the loss, zero grad, backward, the
        method's gradient hooks, the optimizer's step (counted in Lightning's global step), the
        callbacks' end, the method's step hooks. The losses of the minibatches at whose steps
        Lightning would write logs go to the loggers at those steps, as one minibatch per step's do."""
        trainer = self.trainer
        optimizer = trainer.optimizers[0]
        callbacks = minibatch_callbacks(trainer)
        steps = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        scaler = loss_scaler(trainer)
        for minibatch in group:
            step = self.global_step  # this fit's optimizer steps so far: Lightning's step of a minibatch
            for callback in callbacks:
                callback.minibatch_started(trainer, self, minibatch)
            loss = self.minibatch_loss(minibatch)
            optimizer.zero_grad()
            loss.backward()
            self.gradients_ready(scaler)
            steps.increment_ready()
            optimizer.step()
            steps.increment_completed()
            for callback in callbacks:
                callback.minibatch_ended(trainer, self)
            self.minibatch_trained()
            if self.writes_logs_at(step):
                self.log_loss(loss, step, len(minibatch[1]))

    def log_loss(self, loss: torch.Tensor, step: int, batch_size: int) -> None:
        """Hand the loss of the minibatch at `step` (and under a schedule, the learning rate) to
        the loggers, as Lightning writes a step's logged values, and to the progress bar where
        one is shown. The loggers are called directly: `self.log` costs about 0.8 ms of Python
        on a CPU core (its result collection moves each value to the device), which only the
        progress bar needs."""
        loss = loss.detach()
        metrics = {"train/loss": float(loss)}
        if self.method[0].lr_schedule != "constant":
            metrics["train/lr"] = self.trainer.optimizers[0].param_groups[0]["lr"]
        metrics["epoch"] = self.current_epoch  # as Lightning adds it
        for logger in self.trainer.loggers:
            logger.log_metrics(metrics, step=step)
            logger.save()
        if self.trainer.progress_bar_callback is not None:
            self.log("train/loss", loss, on_step=True, prog_bar=True, logger=False, batch_size=batch_size)

    def writes_logs_at(self, step: int) -> bool:
        """Whether the `Trainer` hands the logged values of `step` (the count of this fit's
        optimizer steps before it) to its loggers: every `log_every_n_steps`-th step. The loggers
        never see the other steps' values, so the loss is logged on these steps only (the
        progress bar shows it as of the last one)."""
        every = self.trainer.log_every_n_steps
        # Lightning counts its steps (batches that stepped) from 0 and checks for `+ 1`; the
        # optimizer steps once per batch (no gradient accumulation), and once per minibatch of a group
        return every > 0 and (step + 1) % every == 0

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        # not `on_after_backward`: under 16-bit mixed precision the gradients are still scaled
        # by the loss scale there; here they are unscaled, as a method that clips, projects or
        # records them expects. A step whose gradients overflowed the loss scale is skipped by
        # the scaler: the method's hooks do not see it (SI would record an infinite gradient
        # times a move of zero, NaN)
        self.gradients_ready(loss_scaler(self._trainer))

    def gradients_ready(self, scaler: Any) -> None:
        """The method's hooks between the backward pass and the optimizer's step (`scaler`: the
        loss scaler of 16-bit mixed precision, or None)."""
        method = self.method[0]
        method.held.zero_gradients()
        self.step_skipped = step_overflowed(self.model.parameters(), scaler)
        if not self.step_skipped:
            method.after_backward()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.fused_steps == 1:  # else done after each minibatch of the group (`train_group`)
            self.minibatch_trained()

    def minibatch_trained(self) -> None:
        """The method's hooks after the optimizer's step on a minibatch."""
        method = self.method[0]
        method.held.restore()
        if not self.step_skipped:
            method.after_step()
        self.step_skipped = False

    def configure_optimizers(self) -> Any:
        return self.method[0].configure_optimizer(self.model.parameters())
