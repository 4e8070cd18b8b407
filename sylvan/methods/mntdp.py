"""`mntdp`: MNTDP-D, modular networks with task-driven priors (Veniat, Denoyer, Ranzato, "Efficient
Continual Learning with Modular Networks and Task Driven Priors", ICLR 2021; reference code
TomVeniat/MNTDP). The backbone is cut into modules (`sylvan.models.modular`: an MLP into its
hidden layers and classifier, a ResNet-18 into 6), with a pool of trained modules per depth. For a
new task, the prior is the past task whose frozen path (its head left out) gives the best k-NN
accuracy (k = 15) on the new task (`sylvan.methods.parts.knn_transfer`: fitted on up to 1,000 of
its training samples, scored on up to 1,000 of its validation samples). The candidates reuse that
task's first d modules, frozen, and train fresh modules after them, for every d from 0 to the
depth of the head; they train on the same data (with several workers, shared out among them,
each trained whole by one, with no gradient exchanged, then copied to all), and the one most
accurate on the validation share of the task's samples is kept, its new modules added to the
pool (with `--refit`, the default, first trained again from their start on all the task's
samples, as the other methods train). A task's samples go through its own path, so nothing is
forgotten. Needs task labels."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sylvan.methods.core.base import joined_state
from sylvan.methods.core.learner import Learner
from sylvan.methods.core.supervised import Batch, SupervisedMethod, dataset_rows, rows_dataset
from sylvan.methods.parts.knn_transfer import HoldoutSplit, accuracy_among_classes, holdout_split, knn_accuracy
from sylvan.models.modular import ModulePool, PathNetwork, blocks_of, bytes_when_made
from sylvan.settings.base import Setting
from sylvan.settings.task_incremental import TaskIncrementalSetting

SPLIT_SEED = 50_021  # seed offset of each task's split into training and validation samples


@dataclass
class MNTDP(SupervisedMethod):
    """A path of modules per task, searched among the reuses of the prior task's path."""

    name: ClassVar[str] = "mntdp"
    target_setting: ClassVar[type[Setting]] = TaskIncrementalSetting
    state_attributes: ClassVar[tuple[str, ...]] = ("priors", "reuses", "candidate_accuracies")

    knn_neighbours: int = 15  # k of the k-NN prior (the paper's)
    knn_samples: int = 1000  # at most this many samples fit the k-NN, and at most this many are scored
    validation_share: float = 1 / 3  # share of a task's samples that selects the candidate (CTrL's 2 to 1)
    # train the kept candidate's new modules again on all the task's samples, as other methods train
    # (false: the paper's, the candidate as trained on the training share)
    refit: bool = True

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "knn_neighbours", "knn_samples")
        self.require_in(0, 1, "validation_share", low_open=True, high_open=True)

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda backbone, _: blocks_of(backbone))

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.priors: list[int] = []  # each task's prior (the past task whose modules it may reuse), or -1
        self.reuses: list[int] = []  # how many of the prior's modules each task's path reuses
        self.candidate_accuracies: list[list[float]] = []  # each candidate's validation accuracy, by reuse

    def build_learner(self) -> Learner:
        normalization, blocks = blocks_of(self.build_model())
        return Learner(self, ModulePool(normalization, len(blocks)), self.run.nb_tasks, self.run.num_classes)

    pool = property(lambda self: self.learner.model, doc="The pool of modules and the tasks' paths (`ModulePool`).")

    def fresh_blocks(self) -> list[nn.Module]:
        return blocks_of(self.build_model())[1]

    def least_growth(self) -> int:
        """The bytes the pool gains at least: a whole path for the first task (`planned_memory`)."""
        return bytes_when_made(self.fresh_blocks)

    def reused(self, prior: int, depth: int) -> list[nn.Module]:
        """The first `depth` modules of task `prior`'s path."""
        return list(self.pool.path_network(prior).path[:depth]) if depth else []

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        dataset, task = train_data.dataset, len(self.pool.paths)
        generator = torch.Generator().manual_seed(self.run.seed * 1000 + SPLIT_SEED + task)
        training, validation = holdout_split(len(dataset), self.validation_share, len(dataset), len(dataset), generator)
        x_val, y_val = dataset_rows(dataset, validation)[:2]
        prior = self.prior(dataset, training, x_val, y_val)
        reuses = [0] if prior < 0 else list(range(len(self.pool.layers)))
        networks = [PathNetwork(self.pool.normalization, self.reused(prior, reuse) + self.fresh_blocks()[reuse:],
                                reuse).to(self.run.device) for reuse in reuses]
        initial = [copy.deepcopy(network.path[network.reused:].state_dict()) for network in networks]
        for job, network in enumerate(networks):  # with several workers, each trains its share, whole
            if self.run.workers.owns(job):  # every candidate on the same minibatches, in the same order
                loader = self.run.loader(rows_dataset(dataset, training), train_data.batch_size, seed_offset=task)
                self.train_apart(network, loader, measure_online=job == 0)
        self.run.workers.copied_from_owners(networks)
        seen = self.learner.seen_task_classes().float()
        self.run.workers.sum(seen)  # the classes of the candidates every worker trained
        self.learner.task_classes.copy_(seen > 0)
        accuracies = [accuracy_among_classes(network, x_val, y_val) for network in networks]
        best = max(range(len(reuses)), key=lambda i: (accuracies[i], reuses[i]))  # a tie: the most reuse
        if self.refit:  # its new modules trained again from where they started, on every sample of the task
            networks[best].path[networks[best].reused:].load_state_dict(initial[best])
            if self.run.workers.owns(0):
                self.train_apart(networks[best], self.run.loader(dataset, train_data.batch_size, seed_offset=task))
            self.run.workers.copied_from_owners(networks[best:best + 1])
        self.pool.add_path(networks[best])
        self.priors.append(prior)
        self.reuses.append(reuses[best])
        self.candidate_accuracies.append(accuracies)

    def prior(self, dataset: Dataset, training: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor) -> int:
        """The past task whose frozen path's features give the best k-NN accuracy on this task;
        -1 for the first task."""
        if not self.pool.paths:
            return -1
        fitted = training[:self.knn_samples]
        x_fit, y_fit = dataset_rows(dataset, fitted)[:2]
        scored = min(len(y_val), self.knn_samples)
        x, y = torch.cat([x_fit, x_val[:scored]]), torch.cat([y_fit, y_val[:scored]])
        split = HoldoutSplit(fit=torch.arange(len(fitted)), score=torch.arange(len(fitted), len(y)))
        accuracies = [knn_accuracy(self.pool.path_network(task), x, y, split, self.knn_neighbours)
                      for task in range(len(self.pool.paths))]
        return max(range(len(accuracies)), key=accuracies.__getitem__)

    def training_step(self, batch: Batch) -> torch.Tensor:
        return self.task_cross_entropy(self.learner.model(batch.x), batch)

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """Each sample's scores from its task's path (all 0 for a task without one)."""
        if task_labels is None:
            raise ValueError("mntdp needs the task label of every sample: it keeps a path per task")
        outputs = self.pool(x, task_labels.to(x.device))
        scores = outputs if outputs.shape[1] else x.new_zeros(len(x), self.run.num_outputs)
        return self.mask_to_tasks(scores, task_labels)

    def state_dict(self) -> dict[str, Any]:
        return joined_state(super().state_dict(), paths=list(self.pool.paths), modules=self.pool.module_counts())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resuming: the pool grown to the checkpoint's modules, then their weights."""
        for depth, count in enumerate(state["modules"]):
            while len(self.pool.layers[depth]) < count:
                self.pool.layers[depth].append(self.fresh_blocks()[depth])
        self.pool.paths = [tuple(path) for path in state["paths"]]
        super().load_state_dict(state)

