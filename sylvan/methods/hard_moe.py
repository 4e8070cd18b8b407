"""`hard_moe`: a hard mixture of experts in a stream (Gross, Ranzato, Szlam, "Hard Mixtures of Experts
for Large Scale Weakly Supervised Vision", CVPR 2017). The network trained on the first task is the
trunk; the gater is k-means over the trunk's features (the output of all its modules but the
classifier), each input going to its nearest prototype; each cluster's shard trains its own expert,
a copy of the trunk network (or of its last `--expert_modules` modules, over the others' output,
frozen and shared: the paper's experts over a trunk), independently of the others (with several
workers, each trained whole by one, then copied to all); at test time one expert runs per input
(`sylvan.models.modular.HardMixture`). Later tasks are routed by the gater: samples farther from
every prototype than `--new_cluster_distance` times the first mean distance open new clusters
(k-means), each with an expert copied from the trunk; prototypes follow their samples' running mean;
a shard past `--split_factor` times the first mean shard splits in two (2-means; the new expert a
copy). Needs no task labels but several passes over a task: it targets class-incremental learning."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader, Dataset

from sylvan.methods.core.learner import Learner
from sylvan.methods.core.supervised import SupervisedMethod, dataset_rows, evaluating, rows_dataset
from sylvan.methods.parts.worse_undone import undone_where_worse
from sylvan.models.kmeans import kmeans, nearest, running_means
from sylvan.models.modular import HardMixture
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting

GATER_SEED = 60_013  # seed offset of each task's k-means
FEATURE_ROWS = 4096  # samples whose trunk features are computed at once


@dataclass
class HardMoE(SupervisedMethod):
    """A trunk, a k-means gater over its features, and an expert per cluster, one per input."""

    name: ClassVar[str] = "hard_moe"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting
    state_attributes: ClassVar[tuple[str, ...]] = ("shard_sizes", "distance_scale", "first_shard")

    experts: int = 8  # K, the clusters of the first task's features (one expert each)
    expert_modules: int = 0  # the last modules of the network each expert owns (0: all: each a whole network)
    new_cluster_distance: float = 2.0  # farther than this times the first mean distance: a new cluster
    split_factor: float = 4.0  # a shard beyond this times the first mean shard splits in two

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "experts")
        self.require_at_least(0, "expert_modules")
        self.require_at_least(1.0, "new_cluster_distance", "split_factor")

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda backbone, _: HardMixture(backbone, self.expert_modules))

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.shard_sizes: list[int] = []  # the samples each expert has been trained on
        self.distance_scale = 0.0  # the first clustering's mean distance of a sample to its prototype
        self.first_shard = 0.0  # the first clustering's mean shard

    def build_learner(self) -> Learner:
        mixture = HardMixture(self.build_model(), self.expert_modules)
        return Learner(self, mixture, self.run.nb_tasks, self.run.num_classes)

    mixture = property(lambda self: self.learner.model, doc="The trunk, gater and experts (`HardMixture`).")

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        dataset, mixture, batch = train_data.dataset, self.mixture, train_data.batch_size
        generator = torch.Generator().manual_seed(self.run.seed * 1000 + GATER_SEED + len(self.shard_sizes))
        if not len(mixture.experts):  # the first task: the trunk network, then its gater
            super().fit(train_data, val_data)
            features = self.trunk_features(dataset)
            mixture.prototypes = kmeans(features, self.experts, generator)
            gated, distances = nearest(features, mixture.prototypes)
            self.distance_scale = float(distances.mean())
            self.first_shard = len(features) / len(mixture.prototypes)
            self.add_experts(len(mixture.prototypes))
        else:
            features = self.trunk_features(dataset)
            gated = self.routed(features, generator)
        trained = self.split_full_shards(features, gated, generator)
        jobs = [expert for expert in range(len(mixture.experts)) if bool((trained == expert).any())]
        for job, expert in enumerate(jobs):  # independent fits, shared out among the workers
            # an expert its shard leaves worse there is put back as it started (`worse_undone`)
            if self.run.workers.owns(job):
                rows = torch.nonzero(trained == expert).flatten().cpu()
                network, shard = mixture.expert_network(expert), rows_dataset(dataset, rows)
                with undone_where_worse(mixture.experts[expert], network, *dataset_rows(dataset, rows)[:2]):
                    self.train_apart(network, self.run.loader(shard, batch, seed_offset=10_000 + expert))
        self.run.workers.copied_from_owners([mixture.experts[expert] for expert in jobs])

    def add_experts(self, count: int) -> None:
        for _ in range(count):  # each a copy of the trunk network's own last modules, trained on no sample yet
            self.mixture.experts.append(self.mixture.new_expert().to(self.run.device))
            self.shard_sizes.append(0)

    def trunk_features(self, dataset: Dataset) -> torch.Tensor:
        """Every sample's features under the trunk, flattened, on the run's device."""
        features = []
        with evaluating(self.mixture):
            for rows in torch.arange(len(dataset)).split(FEATURE_ROWS):
                features.append(self.mixture.routed_inputs(dataset_rows(dataset, rows)[0].to(self.run.device))[1])
        return torch.cat(features)

    def routed(self, features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Each sample's expert: new clusters (and experts) for the samples far from every
        prototype, then the nearest prototype, which moves to the running mean of its samples."""
        mixture = self.mixture
        _, distances = nearest(features, mixture.prototypes)
        far = features[distances > self.new_cluster_distance * self.distance_scale]
        if len(far):
            new = kmeans(far, math.ceil(len(far) / self.first_shard), generator)
            mixture.prototypes = torch.cat([mixture.prototypes, new])
            self.add_experts(len(new))
        gated, _ = nearest(features, mixture.prototypes)
        mixture.prototypes = running_means(mixture.prototypes, torch.tensor(self.shard_sizes), features, gated)
        return nearest(features, mixture.prototypes)[0]

    def split_full_shards(self, features: torch.Tensor, gated: torch.Tensor, generator: torch.Generator
                          ) -> torch.Tensor:
        """Shard sizes grown by this task's samples (`gated`); each shard past the split size
        split in two by 2-means over its task's samples. Returns each sample's expert after."""
        mixture, gated = self.mixture, gated.clone()
        for expert in range(len(mixture.experts)):
            members = torch.nonzero(gated == expert).flatten()
            total = self.shard_sizes[expert] + len(members)
            if total <= self.split_factor * self.first_shard or len(members) < 2:
                self.shard_sizes[expert] = total
                continue
            halves = kmeans(features[members], 2, generator)
            side, _ = nearest(features[members], halves)
            mixture.prototypes = torch.cat([mixture.prototypes, halves[1:]])
            mixture.prototypes[expert] = halves[0]
            mixture.experts.append(mixture.new_expert(mixture.experts[expert]))
            moved = int(side.sum())
            self.shard_sizes[expert] = round(total * (len(members) - moved) / len(members))
            self.shard_sizes.append(total - self.shard_sizes[expert])
            gated[members[side == 1]] = len(mixture.experts) - 1
        return gated

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resuming: an expert per checkpointed prototype, then their weights."""
        prototypes = state["model"]["model.prototypes"]
        while len(self.mixture.experts) < len(prototypes):
            self.mixture.experts.append(self.mixture.new_expert())
        self.mixture.prototypes = torch.zeros_like(prototypes)
        super().load_state_dict(state)
