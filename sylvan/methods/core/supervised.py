"""The base of methods trained by gradient descent, and what they share: the training batch,
evaluation mode, a dataset's tensors.

`SupervisedMethod` owns a backbone and an optimizer; the `Learner` (`sylvan.methods.core.learner`)
wraps the backbone and delegates the loss of each minibatch to the method, so that a method
changes only what it needs (the loss, the batch) and trains through the run's engine
(`sylvan.run.engine`: epochs, devices, precision, progress bar, loggers, callbacks). Lightning is
imported when a method first trains, not with this module: listing, parsing and checking a
configuration (`--list`, `--help`, every mistake on the command line) never load it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from sylvan.errors import (
    ConfigurationError,
    TrainingDivergedError,
    refuse_if_given,
    unknown_name,
)
from sylvan.methods.core.base import Method, joined_state
from sylvan.methods.parts.held_weights import HeldWeights
from sylvan.methods.parts.loss_scaling import unscaled_gradients
from sylvan.minibatches import Batch, GatheringConcatDataset, float_inputs, minibatch_loader, pixel_batches
from sylvan.models import BACKBONES, build_backbone, with_input_normalization
from sylvan.models.cosine import require_feature_layers

if TYPE_CHECKING:
    from sylvan.methods.core.learner import Learner


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in evaluation mode without gradients for the block; each submodule's training
    mode is restored afterwards, so that parts a method keeps in evaluation mode (a frozen
    batch norm, say) stay so (scoring, features, Fisher information between training steps)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        for m, training in modes:
            m.training = training


LR_SCHEDULES = ("constant", "step", "cosine")


@dataclass
class SupervisedMethod(Method):
    """A method trained by gradient descent through the shared learner. Subclasses override
    `training_step` (the loss of one minibatch) and, when they need to, the task hooks."""

    lr: float = 0.1  # learning rate
    optimizer: str = "sgd"  # sgd or adam
    momentum: float = 0.0  # SGD momentum
    weight_decay: float = 0.0  # L2 penalty
    backbone: str = ""  # network: mlp, mlp_400, mlp_16, cnn, resnet18, resnet18_reduced (default: the dataset's)
    # learning rate over each task's training (online: the whole stream), restarted at every task: constant;
    # step (multiplied by lr_gamma after each of lr_milestones epochs); cosine (from lr to min_lr over its steps)
    lr_schedule: str = "constant"
    lr_milestones: Optional[List[int]] = None  # step: epochs of a task's training after which the lr drops
    lr_gamma: float = 0.1  # step: factor the learning rate is multiplied by at each milestone
    min_lr: float = 0.0  # cosine: learning rate at the end of each task's training

    augmentation = None  # not a field: the setting's training augmentation, set by `configure`

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "lr", strict=True)
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigurationError(f"--optimizer must be sgd or adam, got {self.optimizer!r}")
        self.require_at_least(0, "momentum", "weight_decay")
        if self.momentum >= 1:  # the velocity would sum every past gradient undamped, or grow without bound
            raise ConfigurationError(f"--momentum must be below 1 (0.9 is usual), got {self.momentum}")
        if self.optimizer == "adam":
            refuse_if_given(self, "momentum", "it is SGD's; --optimizer adam keeps moment estimates of its own")
        if self.backbone and self.backbone not in BACKBONES:  # before the run's folder is made
            raise unknown_name("backbone", self.backbone, list(BACKBONES))
        self.validate_lr_schedule()

    def require_plain_sgd(
        self, protected: str,
        adam_effect: str = "Adam scales each weight's step on its own, which moves the weights along the directions "
                           "the projection protects",
    ) -> None:
        """Raise `ConfigurationError` unless the method trains with SGD and without weight decay:
        for methods that shape each step's gradient to keep off what they protect (`protected`,
        as the message names it), which Adam's per-weight scaling (`adam_effect`, said in the
        message; by default what it does to a projected gradient) and a decay pulling every
        weight towards zero would undo."""
        if self.optimizer != "sgd":
            raise ConfigurationError(f"{self.name} trains with SGD (--optimizer sgd): {adam_effect}")
        if self.weight_decay:
            raise ConfigurationError(
                f"--weight_decay {self.weight_decay} would shrink {protected}; {self.name} trains without it"
            )

    def validate_lr_schedule(self) -> None:
        """The schedule's own options, each refused where the schedule chosen does not use it."""
        if self.lr_schedule not in LR_SCHEDULES:
            raise unknown_name("learning-rate schedule", self.lr_schedule, list(LR_SCHEDULES))
        if self.lr_schedule != "step":
            refuse_if_given(self, "lr_milestones", "it sets when --lr_schedule step lowers the learning rate")
            refuse_if_given(self, "lr_gamma", "it sets how much --lr_schedule step lowers the learning rate")
        else:
            milestones = self.lr_milestones or []
            if not milestones or milestones[0] < 1 or any(b <= a for a, b in zip(milestones, milestones[1:])):
                raise ConfigurationError(
                    f"--lr_schedule step needs --lr_milestones: epoch counts >= 1, increasing, got {milestones}"
                )
            self.require_in(0, 1, "lr_gamma", low_open=True, high_open=True)
        if self.lr_schedule != "cosine":
            refuse_if_given(self, "min_lr", "it is where --lr_schedule cosine ends")
        elif not 0 <= self.min_lr <= self.lr:
            raise ConfigurationError(f"--min_lr must be in [0, lr], got {self.min_lr}")

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        epochs = self.epochs_per_fit(setting)
        if self.lr_schedule == "step" and self.lr_milestones[-1] >= epochs:
            raise ConfigurationError(
                f"--lr_milestones {' '.join(map(str, self.lr_milestones))}: {self.name} on {setting.name} trains "
                f"{epochs} epoch(s) per task, so a milestone must be below {epochs} to lower the learning rate"
            )

    def backbone_name(self, setting: Any) -> str:
        """The backbone the method trains on `setting`: `--backbone`, or the dataset's default."""
        return self.backbone or setting.dataset_spec.default_backbone

    def backbone_layout(self, setting: Any) -> nn.Module | None:
        """The backbone laid out on the meta device (no memory, no initialization), for checks of
        its structure before a run starts; None for one that cannot be built so (one that needs
        its weights, say), which `build_model` then checks when the run starts."""
        try:
            with torch.device("meta"):
                return build_backbone(self.backbone_name(setting), setting.input_shape, setting.num_classes)
        except Exception:
            return None

    def check_backbone(self, setting: Any, adapt: Callable[[nn.Module, str], object]) -> None:
        """Run `adapt(backbone, name)`, what the method does to the setting's backbone when it
        builds its model (replace its classifier, find the layers it works on), on the backbone's
        layout on the meta device: a backbone it cannot adapt is refused, by the error `adapt`
        raises, before the run starts. One that cannot be laid out so is checked by `build_model`."""
        backbone = self.backbone_layout(setting)
        if backbone is not None:
            with torch.device("meta"):
                adapt(backbone, self.backbone_name(setting))

    def require_feature_layers(self, model: nn.Module, name: str, purpose: str) -> None:
        """Raise `ConfigurationError` unless `model` (the backbone `name`) splits into a `features`
        module and a classifier over `feature_dim` features (every built-in backbone), for a
        method that `purpose` (what it does with them, said in the message)."""
        require_feature_layers(model, name, f"{self.name} {purpose}")

    def epochs_per_fit(self, setting: Any) -> int:
        """The epochs each `fit` trains for (what the step schedule's milestones count)."""
        return setting.epochs_per_task

    # ----- building --------------------------------------------------------------------------

    def stored_fields(self, batch: Batch) -> dict[str, torch.Tensor]:
        """What of `batch` the method's buffers keep: its fields, the inputs as they came (a
        buffer with `pixel_fields` keeps them as uint8 pixels)."""
        return batch.fields()

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.learner = self.build_learner()
        # weights the method holds at their values through the training under way (`hold` / `release`):
        # the learner zeroes their gradients before `after_backward` and puts them back before `after_step`
        self.held = HeldWeights()
        # the setting's training augmentation: the learner applies it to every training batch,
        # methods to the samples they replay (`augment_inputs`)
        self.augmentation = run.train_augmentation()

    def augment_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """`x` augmented as the setting asks (a fresh draw per sample and call), for inputs a
        method trains on besides the minibatch, e.g. samples replayed from a buffer; `x` itself
        where the setting does not augment."""
        return x if self.augmentation is None else self.augmentation(x)

    def build_model(self) -> nn.Module:
        """A fresh backbone for the setting's input shape and classes, normalizing its inputs first
        where the setting says so (`--normalize_inputs`; CIFAR by default)."""
        setting = self.run
        model = build_backbone(self.backbone_name(setting), setting.input_shape, setting.num_classes)
        normalization = setting.input_normalization()
        return model if normalization is None else with_input_normalization(model, *normalization)

    def build_learner(self) -> Learner:
        from sylvan.methods.core.learner import Learner

        setting = self.run
        return Learner(self, self.build_model(), setting.nb_tasks, setting.num_classes)

    @property
    def model(self) -> nn.Module:
        return self.learner.model

    @property
    def current_lr(self) -> float:
        """The learning rate each `fit` starts from (a method may change it from task to task)."""
        return self.lr

    def configure_optimizer(self, parameters: Any, steps: float = math.inf) -> Any:
        """The optimizer of each `fit` of `steps` optimizer steps, with the `--lr_schedule`
        scheduler where it is not constant: a dict of the optimizer and {"scheduler",
        "interval"}, the schedule stepped after every epoch or every step."""
        if self.optimizer == "adam":
            optimizer = torch.optim.Adam(parameters, lr=self.current_lr, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                parameters, lr=self.current_lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        if self.lr_schedule == "step":
            schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, self.lr_milestones, gamma=self.lr_gamma)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
        if self.lr_schedule == "cosine":
            # `steps`: the steps this fit takes on this worker, from the loader as it is served (a
            # data-parallel worker's shard) and the fit's epochs
            if not math.isfinite(steps) or steps < 1:
                raise ConfigurationError("--lr_schedule cosine needs the length of the training data, which this "
                                         "fit's loader does not have (an iterable dataset)")
            steps = int(steps)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=steps, eta_min=self.min_lr * self.current_lr / self.lr
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
        return optimizer

    # ----- training --------------------------------------------------------------------------

    def training_step(self, batch: Batch) -> torch.Tensor:
        """The loss of one minibatch. Default: cross-entropy on the batch (fine-tuning)."""
        return F.cross_entropy(self.learner.model(batch.x), batch.y)

    def task_cross_entropy(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Cross-entropy of `logits` among the classes of each sample's task (`mask_to_tasks`):
        for the methods whose outputs of a task answer that task alone."""
        return F.cross_entropy(self.mask_to_tasks(logits, batch.t), batch.y)

    def gradients(
        self, loss: torch.Tensor, inputs: Sequence[torch.Tensor], *, retain_graph: bool = False,
        require_finite: bool = True,
    ) -> tuple[torch.Tensor | None, ...]:
        """The gradients of a loss other than the training loss with respect to `inputs` (None for
        an input it does not reach), as `torch.autograd.grad` gives them, but taken under the loss
        scale of a float16 mixed-precision run, so that they do not underflow where the training
        loss's do not (`sylvan.methods.parts.loss_scaling.unscaled_gradients`)."""
        scaler = self.run.engine.loss_scaler
        return unscaled_gradients(loss, inputs, scaler, retain_graph=retain_graph, require_finite=require_finite)

    def step_lr(self) -> float:
        """The learning rate of the step being taken (the schedule's, where there is one); the
        rate each fit starts from outside training. For methods that differentiate at the
        weights a plain SGD step would reach."""
        optimizer = self.run.engine.optimizer
        if optimizer is not None:
            return float(optimizer.param_groups[0]["lr"])
        return self.current_lr

    def sgd_stepped_weights(self, requires_grad: bool = False, fraction: float = 1.0) -> dict[str, torch.Tensor]:
        """The trainable weights, by name, where a plain SGD step of `fraction` x `step_lr` on the
        current gradients would take them (a parameter without gradient stays): for methods that
        look at the network one step ahead, between the backward pass and the optimizer's step."""
        lr = fraction * self.step_lr()
        return {
            name: (p.detach() if p.grad is None else p.detach() - lr * p.grad).requires_grad_(requires_grad)
            for name, p in self.model.named_parameters() if p.requires_grad
        }

    def after_backward(self) -> None:
        """Hook: the gradients of this step exist (unscaled, under mixed precision) and the
        optimizer has not stepped yet (where a method projects, clips or records gradients)."""

    def after_step(self) -> None:
        """Hook: the optimizer has stepped (where a method tracks how the weights moved)."""

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        self.train_learner(train_data, val_data)

    def train_learner(
        self, train_data: DataLoader, val_data: DataLoader | None = None, epochs: int | None = None,
        measure_online: bool = True, local: bool = False,
    ) -> None:
        """Train the learner on `train_data` through the run's engine, for the setting's epochs
        or `epochs`; `measure_online=False` leaves out the callbacks that measure the stream
        (e.g. when a method trains on its own memory rather than on the stream); `local`: this
        worker alone trains it, on all of `train_data` (`Engine.fit`). No setting hands
        validation data (`val_data`): none is evaluated during a fit."""
        run = self.run
        epochs = run.epochs_per_task if epochs is None else epochs
        train_data = pixel_batches(train_data)  # the learner makes the pixels float (`Learner.minibatch_loss`)
        run.engine.fit(self.learner, train_data, epochs, self.configure_optimizer,
                       run.fit_callbacks(measure_online), local=local)
        self.check_weights_finite()

    def train_apart(self, network: nn.Module, loader: DataLoader, measure_online: bool = False) -> None:
        """Train `network`, one of several a method trains independently (an expert, a candidate),
        on `loader` as the learner for the time of the fit; the classes it learns are noted beside
        the learner's. With several workers, this worker alone trains it, on all of `loader`
        (`Engine.fit`'s `local`): the method shares the networks out (`Workers.owns`)."""
        learner = self.learner
        self.learner = type(learner)(self, network, *learner.task_classes.shape)
        self.learner.task_classes.copy_(learner.seen_task_classes())
        try:
            self.train_learner(loader, measure_online=measure_online, local=self.run.world_size > 1)
        finally:
            learner.task_classes |= self.learner.seen_task_classes().to(learner.device)
            self.learner = learner

    def check_weights_finite(self) -> None:
        """Raise `TrainingDivergedError` when training left a weight of the network NaN or
        infinite: every prediction would then be the same class, and the run would go on to
        report chance accuracy as if it had learned nothing. One check per fit."""
        finite = torch.stack([p.isfinite().all() for p in self.model.parameters()]).all()
        if not bool(finite):
            raise TrainingDivergedError(
                f"training diverged: {self.name}'s network has weights that are NaN or infinite after training on "
                f"this task (a learning rate, --lr {self.current_lr:g}, or a penalty too strong for the loss). The "
                "tasks before it are in the run's results and checkpoints; start again with a smaller --lr (or "
                "weaker penalty)"
            )

    # ----- evaluation ------------------------------------------------------------------------

    def predict(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Scores computed where the run trains (inputs and task labels moved there), returned
        on `x`'s device: a caller holding CPU tensors gets CPU scores after a GPU run."""
        learner = self.learner.to(self.run.device)
        if task_labels is not None:
            task_labels = task_labels.to(learner.device)
        with evaluating(learner):
            return self.scores(x.to(learner.device), task_labels).to(x.device)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """Class scores for `x`. Given task labels, scores of classes never seen with that
        task label are pushed to -inf (task-incremental inference with one head)."""
        return self.mask_to_tasks(self.learner(x), task_labels)

    def mask_to_tasks(self, scores: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """Given task labels, push to -inf the scores of classes never seen with that task label
        (task-incremental inference with one head); without them, return `scores` unchanged."""
        if task_labels is None:
            return scores
        allowed = self.learner.seen_task_classes()[task_labels.to(scores.device)]
        return scores.masked_fill(~allowed & allowed.any(1, keepdim=True), float("-inf"))

    def state_dict(self) -> dict[str, Any]:
        state = joined_state(super().state_dict(), model=self.learner.state_dict())
        if self.augmentation is not None:  # its generator: a resumed run draws the same crops
            state = joined_state(state, augmentation=self.augmentation.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the networks onto the run's device (a checkpoint is read on the CPU), where an
        uninterrupted run has them between tasks, so that what a subclass restores beside them
        can follow them there (`parameter.device`)."""
        super().load_state_dict(state)
        self.learner.load_state_dict(state["model"])
        self.learner.to(self.run.device)
        if self.augmentation is not None:
            self.augmentation.load_state_dict(state["augmentation"])


def dataset_tensors(dataset: Dataset, batch_size: int = 4096) -> tuple[torch.Tensor, ...]:
    """Every sample of a map-style dataset of (x, y[, t]) tuples, as stacked tensors in dataset
    order (for methods that revisit a task's data at its end: Fisher information, exemplars);
    inputs stored as uint8 pixels come back as float inputs, as minibatches bring them."""
    if isinstance(dataset, TensorDataset):
        return tuple(float_inputs(tensor) for tensor in dataset.tensors)
    columns: list[list[torch.Tensor]] = []
    for batch in minibatch_loader(dataset, batch_size, shuffle=False):
        if not columns:
            columns = [[] for _ in batch]
        for column, values in zip(columns, batch):
            column.append(values)
    return tuple(torch.cat(column) for column in columns)


def dataset_rows(dataset: Dataset, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The samples at positions `rows` of a map-style dataset of (x, y[, t]) tuples, stacked in
    that order, inputs as `dataset_tensors` gives them; only those samples are read."""
    if isinstance(dataset, GatheringConcatDataset):
        return tuple(float_inputs(column) for column in dataset.__getitems__(rows))
    if isinstance(dataset, TensorDataset):  # a gathering one too
        return tuple(float_inputs(tensor[rows]) for tensor in dataset.tensors)
    return dataset_tensors(Subset(dataset, rows.tolist()))


def rows_dataset(dataset: Dataset, rows: torch.Tensor) -> Dataset:
    """The samples at positions `rows` of a map-style dataset, as a dataset that keeps them as
    `dataset` keeps them (pixels stay pixels): for a method that trains on part of a task."""
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(tensor[rows] for tensor in dataset.tensors))
    if isinstance(dataset, GatheringConcatDataset):  # served in columns, not sample by sample
        return TensorDataset(*dataset.__getitems__(rows))
    return Subset(dataset, rows.tolist())
