"""`packnet`: PackNet (Mallya & Lazebnik, "PackNet: Adding Multiple Tasks to a Single Network by
Iterative Pruning", CVPR 2018). One network holds every task, each in weights of its own.

How it follows its paper, and what it adds: docs/method-notes.md, section packnet."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader

from sylvan.methods.core.on_agent import AppliesToAgents
from sylvan.methods.core.supervised import Batch, SupervisedMethod
from sylvan.methods.parts.agent_packing import AgentPacking
from sylvan.methods.parts.held_weights import batch_norm_statistics_held
from sylvan.methods.parts.weight_owners import (
    FREE,
    claim,
    free_owners,
    in_classifier,
    largest_share,
    owners_on_device,
    visible_weights,
)
from sylvan.models.routing import outputs_by_group
from sylvan.settings.assumptions import TaskLabels


@dataclass
class PackNet(AppliesToAgents, SupervisedMethod):
    """Iterative pruning: each stage trains the weights still free, keeps the largest of them as
    its own and frees the others; a task's predictions use its own and earlier stages' weights."""

    name: ClassVar[str] = "packnet"
    target_setting: ClassVar[type] = TaskLabels
    agent_options: ClassVar[tuple[str, ...]] = ("retrain_steps",)
    classifier_options: ClassVar[tuple[str, ...]] = ("retrain_epochs",)

    # share of the weights a stage trained that it frees for later stages at its end (default: each stage
    # keeps an equal share of every layer); the last stage keeps all it trained
    prune_ratio: Optional[float] = None
    retrain_epochs: int = 1  # epochs the kept weights retrain after each stage's pruning (0: none)
    # on an agent: its gradient steps that retrain the kept weights after each task's pruning (Continual World: 0
    # by default, 100,000 on CW20)
    retrain_steps: int = 0

    state_attributes: ClassVar[tuple[str, ...]] = ("stage", "owners", "class_stage", "task_stage")

    def validate(self) -> None:
        super().validate()
        if self.prune_ratio is not None:
            self.require_in(0, 1, "prune_ratio", low_open=True, high_open=True)
        self.require_at_least(0, "retrain_epochs", "retrain_steps")

    def agent_part(self, agent: Any) -> AgentPacking:
        """On an agent: each task's own weights in its protected networks (`AgentPacking`)."""
        return AgentPacking(agent, self.prune_ratio, self.retrain_steps)

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.stage = 0  # the stage training now, or the next one between stages
        # owner[name]: the stage that owns each weight of a packed parameter (FREE: none yet)
        self.owners = free_owners(self.model)
        self.class_stage = torch.full((run.num_classes,), FREE, dtype=torch.int16)  # first trained in
        self.task_stage = torch.full((run.nb_tasks,), FREE, dtype=torch.int16)  # a task label's stage

    # ----- training ------------------------------------------------------------------------------

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        last = self.stage == self.run.stage_count - 1
        # batch norm's running statistics stay as the first stage left them
        with batch_norm_statistics_held(self.model) if self.stage > 0 else contextlib.nullcontext():
            self.held.hold(self.fixed_masks(retraining=False))
            self.train_learner(train_data, val_data)
            self.record_stage()
            if last or not self.prune():
                claim(self.owners, self.model, self.stage, lambda free, weights: free)  # keeps every weight it trained
            elif self.retrain_epochs:
                self.held.hold(self.fixed_masks(retraining=True))
                self.train_learner(train_data, epochs=self.retrain_epochs, measure_online=False)
            self.held.release()
        self.stage += 1

    def fixed_masks(self, retraining: bool) -> dict[nn.Parameter, torch.Tensor]:
        """Which weights of each parameter stay as they are in this stage's training: the earlier
        stages' (and, retraining after the pruning, the freed ones, at zero); the classifier rows
        of earlier stages' classes; biases and batch norm after the first stage."""
        masks = {}
        owners = owners_on_device(self.owners, self.model)
        for name, p in self.model.named_parameters():
            if name in owners:
                masks[p] = owners[name] != self.stage if retraining else owners[name] != FREE
            elif in_classifier(name):
                earlier = (self.class_stage < self.stage).to(p.device)
                masks[p] = earlier.view(-1, *([1] * (p.dim() - 1))).expand_as(p)
            elif self.stage > 0:
                masks[p] = torch.ones_like(p, dtype=torch.bool)
        return masks

    def record_stage(self) -> None:
        """Note the task labels and classes this stage trained on first (from the learner's record
        of the training batches)."""
        seen = self.learner.seen_task_classes().cpu()
        self.task_stage[seen.any(1) & (self.task_stage == FREE)] = self.stage
        self.class_stage[seen.any(0) & (self.class_stage == FREE)] = self.stage

    def prune(self) -> bool:
        """At the end of a stage (not the last): keep the largest of the weights it trained, layer
        by layer, as its own, and set the others to zero, free. False where it keeps them all."""
        stages_left = self.run.stage_count - self.stage
        keep = 1.0 / stages_left if self.prune_ratio is None else 1.0 - self.prune_ratio
        if keep >= 1.0:
            return False
        with torch.no_grad():
            parameters = dict(self.model.named_parameters())
            kept = claim(self.owners, self.model, self.stage, largest_share(keep))
            for name, owner in self.owners.items():
                parameters[name].masked_fill_(owner == FREE, 0.0)
        return bool(kept)

    def training_step(self, batch: Batch) -> torch.Tensor:
        if batch.t is None:
            raise ValueError("packnet needs task labels in every training batch")
        return self.task_cross_entropy(self.learner(batch.x), batch)

    # ----- evaluation ----------------------------------------------------------------------------

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        if task_labels is None:
            raise ValueError("packnet needs task labels at test time, to pick the weights of each task")
        stages = self.task_stage.to(task_labels.device)[task_labels]
        stages = torch.where(stages == FREE, self.stage, stages)  # a task not trained yet: everything so far
        logits = outputs_by_group(stages.to(x.device), lambda stage, rows: functional_call(
            self.model, visible_weights(self.owners, self.model, stage, self.stage), (x[rows],)))
        return self.mask_to_tasks(logits, task_labels)
