"""Herding (Welling 2009), the exemplar selection of iCaRL (Rebuffi et al., CVPR 2017), on
features supplied by the method with every batch (field "features")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Mapping

import numpy as np
import torch

from sylvan.buffers.balancing import equal_quotas
from sylvan.buffers.class_aware import ClassAwareBuffer


class HerdingBuffer(ClassAwareBuffer):
    """Class-balanced memory whose exemplars of each class are the ones whose feature mean best
    approximates the mean feature of every sample of that class seen so far.

    Capacity is shared equally among the classes seen (as iCaRL's m = K / classes). When a class
    holds more candidates (its exemplars plus its new samples) than its quota, herding chooses
    the ones to keep greedily, in whichever direction takes fewer steps: forward, iCaRL's own
    selection (each step picks the candidate that brings the mean of those picked closest to the
    class mean), when fewer are kept than dropped, as when a method adds a whole task at once;
    backward (each step removes the candidate whose removal brings the mean of the rest closest
    to the class mean) when few are dropped, as in a stream of small batches. Each step costs one
    matrix-vector product over the candidates; the features are those the method supplied when
    each sample was added.
    """

    policy = "herding"
    feature_field = "features"

    def __init__(
        self, capacity: int, device: torch.device | str | None = None, seed: int = 0, retrieval: str = "uniform",
        pixel_fields: Sequence[str] = (),
    ) -> None:
        super().__init__(capacity, device=device, seed=seed, retrieval=retrieval, pixel_fields=pixel_fields)
        self.feature_sums: torch.Tensor | None = None  # per class, sum of every seen sample's features

    def _select_class_slots(self, labels: np.ndarray, seen_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = self._batch
        if self.feature_field not in batch:
            raise ValueError("the herding policy needs a 'features' field in every batch (add(..., features=...))")
        features = batch[self.feature_field].detach().to(self.device).float()
        if features.dim() != 2:
            raise ValueError(f"herding features must be (batch, dim), got shape {tuple(features.shape)}")
        self._accumulate_means(features, labels)
        present = np.flatnonzero(self.class_seen)
        quotas = np.zeros(len(self.class_seen), dtype=np.int64)
        quotas[present] = equal_quotas(len(present), self.capacity)
        stored_features = self.storage[self.feature_field]

        positions, freed = [], []
        for label in np.flatnonzero(self.class_stored + self._batch_counts):
            old = np.flatnonzero(self.slot_labels[: self.size] == label)
            new = np.flatnonzero(labels == label)
            surplus = len(old) + len(new) - int(quotas[label])
            keep_old, keep_new = old, new
            if surplus > 0:
                pool = torch.cat([stored_features[torch.from_numpy(old).to(self.device)],
                                  features[torch.from_numpy(new).to(features.device)]])
                mean = self.feature_sums[label] / float(self.class_seen[label])
                keep = self._herd(pool, mean, len(pool) - surplus)
                keep_old, keep_new = old[keep[keep < len(old)]], new[keep[keep >= len(old)] - len(old)]
                freed.append(np.setdiff1d(old, keep_old))
            positions.append(keep_new)
        # new exemplars take freed slots first, then free space; leftover freed slots are compacted
        positions = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
        freed = np.concatenate(freed) if freed else np.empty(0, dtype=np.int64)
        reuse = min(len(freed), len(positions))
        leftover = freed[reuse:]
        target = np.concatenate([freed[:reuse], np.arange(self.size, self.size + len(positions) - reuse)])
        self.size += len(positions) - reuse
        if len(leftover):
            self._write(target, positions, batch)  # write first: compaction moves slots afterwards
            self._remove_slots(leftover)
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        return target.astype(np.int64), positions

    @staticmethod
    def _herd(pool: torch.Tensor, mean: torch.Tensor, keep: int) -> np.ndarray:
        """Indices of the `keep` candidates of the pool chosen by herding (sorted)."""
        if keep < len(pool) - keep:
            return HerdingBuffer._herd_in(pool, mean, keep)
        return HerdingBuffer._herd_out(pool, mean, len(pool) - keep)

    @staticmethod
    def _herd_in(pool: torch.Tensor, mean: torch.Tensor, keep: int) -> np.ndarray:
        """iCaRL's herding: pick `keep` candidates one at a time. With S the sum of the k - 1
        picked so far, candidate i brings their mean to (S + f_i) / k, whose squared distance to
        the class mean mu is, up to terms that do not depend on i, (|f_i|^2 - 2 f_i.(k mu - S)) / k^2."""
        chosen = torch.zeros(len(pool), dtype=torch.bool, device=pool.device)
        norms = pool.pow(2).sum(1)
        total = torch.zeros_like(mean)
        for k in range(1, keep + 1):
            score = norms - 2.0 * (pool @ (k * mean - total))
            pick = int(score.masked_fill(chosen, float("inf")).argmin())
            chosen[pick] = True
            total += pool[pick]
        return np.flatnonzero(chosen.cpu().numpy())

    @staticmethod
    def _herd_out(pool: torch.Tensor, mean: torch.Tensor, surplus: int) -> np.ndarray:
        """Indices of the pool kept after removing `surplus` candidates greedily by herding.

        Removing candidate i leaves the mean (T - f_i) / k, with T the sum of the remaining
        features and k = remaining - 1; its squared distance to the class mean mu is, up to a
        term that does not depend on i, -2/k * (f_i.T / k - f_i.mu) + |f_i|^2 / k^2. Keeping
        f_i.T up to date costs one matrix-vector product per removal."""
        alive = torch.ones(len(pool), dtype=torch.bool, device=pool.device)
        dot_total = pool @ pool.sum(0)
        dot_mean = pool @ mean
        norms = pool.pow(2).sum(1)
        remaining = len(pool)
        for _ in range(surplus):  # greedy by construction: one step per removed candidate
            k = max(remaining - 1, 1)
            score = (norms / k - 2.0 * (dot_total / k - dot_mean)) / k
            drop = int(score.masked_fill(~alive, float("inf")).argmin())
            alive[drop] = False
            dot_total -= pool @ pool[drop]
            remaining -= 1
        return np.flatnonzero(alive.cpu().numpy())

    def _accumulate_means(self, features: torch.Tensor, labels: np.ndarray) -> None:
        classes = len(self.class_seen)
        if self.feature_sums is None or len(self.feature_sums) < classes:
            grown = torch.zeros(classes, features.shape[1], device=self.device)
            if self.feature_sums is not None:
                grown[: len(self.feature_sums)] = self.feature_sums
            self.feature_sums = grown
        self.feature_sums.index_add_(0, torch.from_numpy(labels).to(self.device), features)

    def _extra_state(self) -> dict[str, Any]:
        sums = None if self.feature_sums is None else self.feature_sums.clone()
        return {**super()._extra_state(), "feature_sums": sums}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        super()._load_extra_state(state)
        sums = state["feature_sums"]
        self.feature_sums = None if sums is None else sums.to(self.device or "cpu").clone()
