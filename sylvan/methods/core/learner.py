"""The network a supervised method trains, with what the training loop needs of it (see
`sylvan.methods.core.supervised` and `sylvan.run.engine`).

`Learner` wraps a `SupervisedMethod`'s backbone and delegates the loss of each minibatch to the
method; the engine's loop calls its step hooks around the optimizer's step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.minibatches import Batch, float_inputs
from sylvan.run.first_step import mark_first_step

if TYPE_CHECKING:  # the method hands itself to its learner: a type only, no import cycle
    from sylvan.methods.core.supervised import SupervisedMethod


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


NOTE_EVERY = 64  # minibatches whose task labels' classes are noted at once (one indexing per column)


class Learner(nn.Module):
    """The method's backbone, the classes seen with each task label, and the method's hooks
    around each optimizer step; the method computes each minibatch's loss."""

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
        # the (task labels, labels) of minibatches trained on and not yet noted in `task_classes`:
        # noted NOTE_EVERY minibatches at a time, and whenever the record is read
        self._unnoted: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def device(self) -> torch.device:
        """Where the learner's weights are."""
        return self.task_classes.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def minibatch_loss(self, batch: Any) -> torch.Tensor:
        """The method's loss on one minibatch (as the loader serves it), its inputs made float
        and augmented first, its task labels' classes noted."""
        mark_first_step()
        x, *others = batch
        batch = Batch(float_inputs(x), *others)  # pixels as stored (`pixel_batches`) become float here, on the device
        method = self.method[0]
        if method.augmentation is not None:
            batch = batch._replace(x=method.augment_inputs(batch.x), stored_x=batch.x)
        if batch.t is not None:
            self._unnoted.append((batch.t, batch.y))
            if len(self._unnoted) == NOTE_EVERY:
                self.seen_task_classes()
        try:
            return method.training_step(batch)
        except ValueError as error:
            if "Expected more than 1 value per channel when training" not in str(error):
                raise
            raise single_value_batch_norm(method) from error

    def held_batch_loss(self, held: Any) -> torch.Tensor:
        """`minibatch_loss` of the minibatch `held` carries (`sylvan.run.engine.HeldBatch`): what the
        engine calls through DDP's forward, the minibatch kept as the loader served it."""
        return self.minibatch_loss(held.batch)

    def seen_task_classes(self) -> torch.Tensor:
        """`task_classes`, with every minibatch trained on so far noted: [t, c] is true where
        class c came with task label t."""
        if self._unnoted:
            device = self.task_classes.device
            tasks, classes = (torch.cat(column).to(device) for column in zip(*self._unnoted))
            self._unnoted.clear()
            self.task_classes.index_put_((tasks, classes), torch.ones((), dtype=torch.bool, device=device))
        return self.task_classes

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self.seen_task_classes()
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self._unnoted.clear()  # what the restored record holds replaces them
        return super().load_state_dict(*args, **kwargs)

    def gradients_ready(self, skipped: bool = False) -> None:
        """The method's hooks between the backward pass and the optimizer's step (`skipped`: the
        loss scaler of 16-bit mixed precision will skip the step, its gradients having
        overflowed, `sylvan.run.engine.step_overflowed`: a step the method's hooks
        then do not see)."""
        method = self.method[0]
        method.held.zero_gradients()
        if not skipped:
            method.after_backward()

    def minibatch_trained(self, skipped: bool = False) -> None:
        """The method's hooks after the optimizer's step on a minibatch (`skipped`: what
        `gradients_ready` said of it)."""
        method = self.method[0]
        method.held.restore()
        if not skipped:
            method.after_step()

    def fit_ended(self) -> None:
        """After the last minibatch of a fit: its task labels' classes noted."""
        self.seen_task_classes()
