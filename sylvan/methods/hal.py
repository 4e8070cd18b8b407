"""`hal`: hindsight anchor learning (Chaudhry, Gordo, Dokania, Torr & Lopez-Paz, "Using Hindsight
to Anchor Past Knowledge in Continual Learning", AAAI 2021), in the form the DER paper compared it
(Buzzega et al., NeurIPS 2020).

How it follows its paper, and what it adds: docs/method-notes.md, section hal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.func import functional_call

from sylvan.methods.core.episodic_memory import flat_gradient, write_flat_gradient
from sylvan.methods.core.supervised import Batch, evaluating
from sylvan.methods.rehearsal import Rehearsal
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting

ANCHORS_SEED = 20_001  # seed offset of the anchors' starting points (`Workers.seed`)


@dataclass
class HAL(Rehearsal):
    """Experience replay that also keeps the network's outputs on learned anchors, one per class
    of each finished task, where a fine-tuned copy of the network says forgetting would hurt."""

    name: ClassVar[str] = "hal"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.1  # learning rate (also of the fine-tuning and of the anchors' steps)
    replay_size: int = 128  # r: samples replayed with each minibatch
    hal_lambda: float = 0.1  # weight of the mean squared change of the outputs on the anchors
    beta: float = 0.7  # momentum of phi, the running mean of the new samples' features
    gamma: float = 0.5  # weight of an anchor's squared distance to phi while it is learned
    anchor_steps: int = 100  # SGD steps that learn each anchor
    finetune_steps: int = 1  # SGD steps of the copy fine-tuned on the buffer (batches of --batch_size)

    state_attributes: ClassVar[tuple[str, ...]] = ("anchors", "anchor_labels", "phi", "task_classes_seen")

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "hal_lambda", "gamma")
        self.require_at_least(1, "anchor_steps", "finetune_steps")
        self.require_in(0, 1, "beta", high_open=True)

    def configure(self, run: Any) -> None:
        super().configure(run)
        device = run.device
        self.anchors = torch.zeros(0, *run.input_shape, device=device)
        self.anchor_labels = torch.zeros(0, dtype=torch.long, device=device)
        self.phi: torch.Tensor | None = None  # running mean of the new samples' features
        self.task_classes_seen = torch.zeros(run.num_classes, dtype=torch.bool, device=device)
        self._new_inputs: torch.Tensor | None = None  # this step's new samples, for phi after the step

    def training_step(self, batch: Batch) -> torch.Tensor:
        self.task_classes_seen = self.task_classes_seen.to(batch.y.device)
        self.task_classes_seen[batch.y] = True
        self._new_inputs = batch.x
        return super().training_step(batch)

    def after_backward(self) -> None:
        if not len(self.anchors) or self.hal_lambda == 0:
            return
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        anchors = self.anchors.to(parameters[0].device)
        with evaluating(self.model) as model:
            # the outputs the replay's step would give the anchors, held fixed
            ahead = functional_call(model, self.sgd_stepped_weights(), (anchors,)).float()
            with torch.enable_grad():
                change = self.hal_lambda * (ahead - model(anchors).float()).pow(2).mean()
                gradients = self.gradients(change, parameters)
        correction = self.run.workers.mean(flat_gradient(gradients, parameters))
        current = flat_gradient([p.grad for p in parameters], parameters)
        write_flat_gradient(parameters, current.add_(correction))

    def after_step(self) -> None:
        super().after_step()
        if self._new_inputs is None:
            return
        with evaluating(self.model) as model:
            mean = model.features(self._new_inputs).flatten(1).float().mean(0)
        if self.phi is None:
            self.phi = mean * (1 - self.beta)
        else:  # (a resumed run's phi comes back on the CPU)
            self.phi = self.beta * self.phi.to(mean.device) + (1 - self.beta) * mean
        self._new_inputs = None

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        classes = self.task_classes_seen.nonzero().flatten()
        self.task_classes_seen = torch.zeros_like(self.task_classes_seen)
        if not len(self.replay) or self.phi is None or not len(classes):
            return
        forgetful = self.finetuned_weights()
        generator = torch.Generator().manual_seed(self.run.workers.seed(ANCHORS_SEED + len(self.anchors)))
        anchors = [self.learn_anchor(int(c), forgetful, generator) for c in classes.tolist()]
        device = self.anchors.device
        self.anchors = torch.cat([self.anchors, torch.stack(anchors).to(device)])
        self.anchor_labels = torch.cat([self.anchor_labels, classes.to(device)])

    def finetuned_weights(self) -> dict[str, torch.Tensor]:
        """The network's weights after `finetune_steps` plain SGD steps on batches drawn uniformly
        from the local buffer (a copy: the network itself does not change)."""
        weights = {name: p.detach().clone() for name, p in self.model.named_parameters()}
        device = next(iter(weights.values())).device
        with evaluating(self.model) as model, torch.enable_grad():
            for _ in range(self.finetune_steps):
                replay = self.replay.uniform(self.run.batch_size)
                x, y = self.augment_inputs(replay["x"].to(device)), replay["y"].to(device)
                trained = {name: w.requires_grad_() for name, w in weights.items()}
                loss = F.cross_entropy(functional_call(model, trained, (x,)).float(), y)
                gradients = torch.autograd.grad(loss, list(trained.values()), allow_unused=True)
                weights = {
                    name: w.detach() - (0 if g is None else self.lr * g)
                    for (name, w), g in zip(trained.items(), gradients)
                }
        return weights

    def learn_anchor(
        self, label: int, forgetful: dict[str, torch.Tensor], generator: torch.Generator
    ) -> torch.Tensor:
        """An input of class `label` whose loss the fine-tuned weights `forgetful` raise most
        over the network's, kept near phi in feature space: `anchor_steps` SGD steps from a
        uniform draw in [0, 1)."""
        device = self.phi.device
        anchor = torch.rand(1, *self.run.input_shape, generator=generator).to(device).requires_grad_()
        target = torch.tensor([label], device=device)
        with evaluating(self.model) as model, torch.enable_grad():
            for _ in range(self.anchor_steps):
                loss = (
                    F.cross_entropy(model(anchor).float(), target)
                    - F.cross_entropy(functional_call(model, forgetful, (anchor,)).float(), target)
                    + self.gamma * (model.features(anchor).flatten(1).float() - self.phi).pow(2).sum()
                )
                (gradient,) = torch.autograd.grad(loss, [anchor])
                anchor = (anchor.detach() - self.lr * gradient).requires_grad_()
        return anchor.detach()[0]
