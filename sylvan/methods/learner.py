"""The Lightning learner shared by supervised methods, and the base of those methods.

`SupervisedMethod` owns a backbone and an optimizer; `Learner` is the `LightningModule` that
wraps the backbone and delegates the loss of each step to the method, so that a method changes
only what it needs (the loss, the batch) and training runs under a `Trainer` the setting
configures (epochs, devices, progress bar, loggers, callbacks).
"""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from sylvan.errors import ConfigurationError, StoppedBySignal, raise_stopped_by_signal, unknown_name
from sylvan.methods.base import Method
from sylvan.minibatches import minibatch_loader
from sylvan.models import BACKBONES, build_backbone

for _logger in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
    logging.getLogger(_logger).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", ".*GPU available but not used.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in evaluation mode without gradients for the block; its training mode is
    restored afterwards (scoring, features, Fisher information between training steps)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)


class SigtermStopsTraining(L.Callback):
    """Once the `Trainer` has installed its signal handlers, make SIGTERM stop training the way
    Ctrl-C does (a `StoppedBySignal`, which Lightning shuts down on like a KeyboardInterrupt).

    Lightning's own SIGTERM handler broadcasts a tensor from inside the handler when training
    is data-parallel. A scheduler signals every worker at once, and each runs that broadcast
    wherever its step happens to be, against the other workers' unrelated collectives: the
    workers then wait on one another until the process group times out. The `Trainer` puts
    back the handler that was there before (the command line's) when the fit ends."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, raise_stopped_by_signal)


class Batch(NamedTuple):
    """A training minibatch: inputs, labels, and task labels where the setting gives them.
    Where the setting augments inputs, `x` is what the network trains on and `stored_x` the
    inputs as they came, which is what a buffer keeps."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor | None = None
    stored_x: torch.Tensor | None = None

    def fields(self) -> dict[str, torch.Tensor]:
        """The batch as named tensors (what a rehearsal buffer stores: inputs not augmented)."""
        out = {"x": self.x if self.stored_x is None else self.stored_x, "y": self.y}
        if self.t is not None:
            out["t"] = self.t
        return out


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

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        batch = Batch(*batch)
        method = self.method[0]
        if method.augmentation is not None:
            batch = batch._replace(x=method.augment_inputs(batch.x), stored_x=batch.x)
        if batch.t is not None:
            self.task_classes[batch.t, batch.y] = True
        loss = method.training_step(batch)
        if self.writes_logs_this_step():
            self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=len(batch.y))
        return loss

    def writes_logs_this_step(self) -> bool:
        """Whether the `Trainer` hands this step's logged values to its loggers: every
        `log_every_n_steps`-th step. A `self.log` call costs about 0.5 ms of Python on the CPU
        (an MLP's whole step at batch 128 takes 1.5 ms without it) and the loggers never see the
        other steps' values anyway, so the loss is logged on these steps only (the progress bar
        shows it as of the last one)."""
        every = self.trainer.log_every_n_steps
        # the optimizer steps once per batch (no gradient accumulation), so the count of steps
        # taken is Lightning's count of batches that stepped, which it checks for `+ 1`
        return every > 0 and (self.global_step + 1) % every == 0

    def on_after_backward(self) -> None:
        self.method[0].after_backward()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.method[0].after_step()

    def configure_optimizers(self) -> Any:
        return self.method[0].configure_optimizer(self.model.parameters())


@dataclass
class SupervisedMethod(Method):
    """A method trained by gradient descent through the shared learner. Subclasses override
    `training_step` (the loss of one minibatch) and, when they need to, the task hooks."""

    lr: float = 0.1  # learning rate
    optimizer: str = "sgd"  # sgd or adam
    momentum: float = 0.0  # SGD momentum
    weight_decay: float = 0.0  # L2 penalty
    backbone: str = ""  # network: mlp, mlp_400, cnn, resnet18, resnet18_reduced (default: the dataset's)

    augmentation = None  # not a field: the setting's training augmentation, set by `configure`

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "lr", strict=True)
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigurationError(f"--optimizer must be sgd or adam, got {self.optimizer!r}")
        self.require_at_least(0, "momentum", "weight_decay")
        if self.backbone and self.backbone not in BACKBONES:  # before the run's folder is made
            raise unknown_name("backbone", self.backbone, list(BACKBONES))

    # ----- building --------------------------------------------------------------------------

    def configure(self, setting: Any) -> None:
        super().configure(setting)
        self.learner = self.build_learner()
        # the setting's training augmentation: the learner applies it to every training batch,
        # methods to the samples they replay (`augment_inputs`)
        self.augmentation = setting.train_augmentation()

    def augment_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """`x` augmented as the setting asks (a fresh draw per sample and call), for inputs a
        method trains on besides the minibatch, e.g. samples replayed from a buffer; `x` itself
        where the setting does not augment."""
        return x if self.augmentation is None else self.augmentation(x)

    def build_model(self) -> nn.Module:
        """A fresh backbone for the setting's input shape and classes."""
        setting = self.setting
        name = self.backbone or setting.dataset_spec.default_backbone
        return build_backbone(name, setting.input_shape, setting.num_classes)

    def build_learner(self) -> Learner:
        setting = self.setting
        return Learner(self, self.build_model(), setting.nb_tasks, setting.num_classes)

    @property
    def model(self) -> nn.Module:
        return self.learner.model

    def configure_optimizer(self, parameters: Any) -> Any:
        """The optimizer of each `fit` (or, as Lightning accepts, a dict that adds a scheduler)."""
        if self.optimizer == "adam":
            return torch.optim.Adam(parameters, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(
            parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )

    # ----- training --------------------------------------------------------------------------

    def training_step(self, batch: Batch) -> torch.Tensor:
        """The loss of one minibatch. Default: cross-entropy on the batch (fine-tuning)."""
        return F.cross_entropy(self.learner(batch.x), batch.y)

    def after_backward(self) -> None:
        """Hook: the gradients of this step exist and the optimizer has not stepped yet (where
        a method projects, clips or records gradients)."""

    def after_step(self) -> None:
        """Hook: the optimizer has stepped (where a method tracks how the weights moved)."""

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self.train_learner(train_data, val_data)

    def train_learner(
        self, train_data: DataLoader, val_data: DataLoader | None = None, epochs: int | None = None,
        measure_online: bool = True,
    ) -> None:
        """Train the learner on `train_data` under a `Trainer` the setting configures; `epochs`
        overrides the setting's epochs, and `measure_online=False` leaves out the setting's
        callbacks (e.g. when a method trains on its own memory rather than on the stream)."""
        kwargs = self.setting.trainer_kwargs()
        if epochs is not None:
            kwargs["max_epochs"] = epochs
        if not measure_online:
            kwargs["callbacks"] = [c for c in kwargs["callbacks"] if not getattr(c, "measures_stream", False)]
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), SigtermStopsTraining()]
        trainer = L.Trainer(**kwargs)
        try:
            trainer.fit(self.learner, train_dataloaders=train_data, val_dataloaders=val_data)
        except SystemExit as stop:
            if not trainer.interrupted:
                raise
            # Lightning shut down on a KeyboardInterrupt (Ctrl-C, or a StoppedBySignal that the
            # command line's SIGTERM handler raised) and called sys.exit(1), or on SIGTERM alone
            if isinstance(stop.__context__, StoppedBySignal):
                raise stop.__context__ from None
            raise StoppedBySignal(signal.SIGTERM if isinstance(stop, SIGTERMException) else signal.SIGINT) from None
        # Lightning hands the module back on the CPU at the end of every fit; bring it back, so
        # that what a method derives from the weights between tasks (anchors, Fisher information,
        # exemplar means) lives on the device the next task trains on
        self.learner.to(self.setting.device)

    # ----- evaluation ------------------------------------------------------------------------

    def predict(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        learner = self.learner.to(self.setting.device)
        with evaluating(learner):
            return self.scores(x.to(learner.device), task_labels)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """Class scores for `x`. Given task labels, scores of classes never seen with that
        task label are pushed to -inf (task-incremental inference with one head)."""
        return self.mask_to_tasks(self.learner(x), task_labels)

    def mask_to_tasks(self, scores: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """Given task labels, push to -inf the scores of classes never seen with that task label
        (task-incremental inference with one head); without them, return `scores` unchanged."""
        if task_labels is None:
            return scores
        allowed = self.learner.task_classes[task_labels.to(scores.device)]
        return scores.masked_fill(~allowed & allowed.any(1, keepdim=True), float("-inf"))

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.learner.state_dict()}
        if self.augmentation is not None:  # its generator: a resumed run draws the same crops
            state["augmentation"] = self.augmentation.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["model"])
        if self.augmentation is not None:
            self.augmentation.load_state_dict(state["augmentation"])


def dataset_tensors(dataset: Dataset, batch_size: int = 4096) -> tuple[torch.Tensor, ...]:
    """Every sample of a map-style dataset of (x, y[, t]) tuples, as stacked tensors in dataset
    order (for methods that revisit a task's data at its end: Fisher information, exemplars)."""
    if isinstance(dataset, TensorDataset):
        return tuple(dataset.tensors)
    columns: list[list[torch.Tensor]] = []
    for batch in minibatch_loader(dataset, batch_size, shuffle=False):
        if not columns:
            columns = [[] for _ in batch]
        for column, values in zip(columns, batch):
            column.append(values)
    return tuple(torch.cat(column) for column in columns)
