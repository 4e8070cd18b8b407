"""`selective_finetune`: the "dynamic" fine-tuning learner of NEVIS'22 (Bornschein et al., "NEVIS'22:
A Stream of 100 Tasks Sampled from 30 Years of Computer Vision Research", JMLR 2023; reference
code deepmind/dm_nevis, `finetuning_dknn`). Every task's trained network is kept, and the task
label picks the one that answers. A new task starts from the network, among the stored ones and
a fresh initialization, whose frozen features give the best k-nearest-neighbour accuracy on it
(fitted on a slice of its training samples, scored on held-out ones:
`sylvan.methods.parts.knn_transfer`), and is fine-tuned from there. Its baselines are
`from_scratch` (every task from a fresh network) and `naive` (every task from the last one).
Needs task labels at test time, and a backbone that splits into features and a classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from sylvan.methods.core.base import joined_state
from sylvan.methods.core.supervised import Batch, SupervisedMethod, dataset_rows, evaluating
from sylvan.methods.parts.knn_transfer import HoldoutSplit, holdout_split, knn_accuracy
from sylvan.models.routing import outputs_by_group
from sylvan.settings.base import Setting
from sylvan.settings.task_incremental import TaskIncrementalSetting

HOLDOUT_SEED = 40_009  # seed offset of each task's split into the k-NN's fitted and scored samples
FRESH = -1  # in `sources`: the task started from a fresh initialization


@dataclass
class SelectiveFinetune(SupervisedMethod):
    """A network per task, each fine-tuned from the stored network (or fresh one) that transfers
    best to its task by the k-NN prior."""

    name: ClassVar[str] = "selective_finetune"
    target_setting: ClassVar[type[Setting]] = TaskIncrementalSetting
    state_attributes: ClassVar[tuple[str, ...]] = ("sources", "transfer")

    knn_neighbours: int = 5  # k of the k-NN prior (scikit-learn's default, which the reference uses)
    knn_holdout: float = 0.2  # share of a task's training samples the k-NN is scored on (the rest fit it)
    knn_fit_samples: int = 10_000  # at most this many samples fit the k-NN (the reference's cap)
    knn_score_samples: int = 5_000  # at most this many are scored (the reference's cap)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "knn_neighbours", "knn_fit_samples", "knn_score_samples")
        self.require_in(0, 1, "knn_holdout", low_open=True, high_open=True)

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda backbone, name: self.require_feature_layers(
            backbone, name, "compares the stored networks' features on each new task"))

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.task_models = nn.ModuleList()  # the network of each task trained so far (the last: the learner's)
        self.sources: list[int] = []  # the stored network each task started from, or FRESH
        self.transfer: list[list[float]] = []  # each task's k-NN accuracy of every candidate (stored ones, then fresh)

    @property
    def model(self) -> nn.Module:
        """The network the method predicts with: every task's."""
        return self.task_models

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        seen = self.learner.seen_task_classes().clone()
        self.learner = self.build_learner().to(self.run.device)  # its network: the fresh candidate
        self.learner.task_classes.copy_(seen)
        accuracies = self.prior(train_data, [*self.task_models, self.learner.model])
        start = max(range(len(accuracies)), key=accuracies.__getitem__)  # a tie: the earliest stored network
        if start < len(self.task_models):
            self.learner.model.load_state_dict(self.task_models[start].state_dict())
        self.sources.append(start if start < len(self.task_models) else FRESH)
        self.transfer.append(accuracies)
        self.task_models.append(self.learner.model)
        super().fit(train_data, val_data)

    def prior(self, train_data: DataLoader, candidates: list[nn.Module]) -> list[float]:
        """Each candidate's k-NN accuracy on the task of `train_data` (only the samples of the
        k-NN's split are read)."""
        dataset = train_data.dataset
        generator = torch.Generator().manual_seed(self.run.seed * 1000 + HOLDOUT_SEED + len(self.task_models))
        split = holdout_split(len(dataset), self.knn_holdout, self.knn_fit_samples, self.knn_score_samples, generator)
        x, y = dataset_rows(dataset, torch.cat(split))[:2]
        local = HoldoutSplit(fit=torch.arange(len(split.fit)), score=torch.arange(len(split.fit), len(y)))
        return [knn_accuracy(candidate, x, y, local, self.knn_neighbours) for candidate in candidates]

    def training_step(self, batch: Batch) -> torch.Tensor:
        """Cross-entropy among the task's classes: the network answers its task alone."""
        return self.task_cross_entropy(self.learner.model(batch.x), batch)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """Each sample's scores from its task's network; a task not trained on yet has learned
        nothing: its scores are all 0."""
        if task_labels is None:
            raise ValueError("selective_finetune needs the task label of every sample: it keeps a network per task")
        with evaluating(self.task_models):
            scores = outputs_by_group(task_labels.to(x.device), lambda task, rows: (
                self.task_models[task](x[rows]) if task < len(self.task_models) else None))
        scores = x.new_zeros(len(x), self.run.num_outputs) if scores is None else scores.to(x.dtype)
        return self.mask_to_tasks(scores, task_labels)

    def state_dict(self) -> dict[str, Any]:
        # the last task's network is the learner's, saved with it
        return joined_state(super().state_dict(), earlier_models=[m.state_dict() for m in self.task_models[:-1]])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        earlier = []
        for weights in state["earlier_models"]:
            network = self.build_model()
            network.load_state_dict(weights)
            earlier.append(network.to(self.run.device))
        self.task_models = nn.ModuleList([*earlier, self.learner.model] if self.sources else [])
