"""Reference buffers for `benchmarks/buffers.py`: each storage policy written the way research code
usually writes it, one sample at a time, with Python containers for the bookkeeping and NumPy's
global random state. They make the same kind of decisions as sylvan's policies (same quotas,
same eviction rule), so that the speed-up measured against them is the cost of the per-sample
loop, not of a different algorithm.
"""

from __future__ import annotations

import numpy as np
import torch


def reservoir_slots(seen: int, count: int, capacity: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Reservoir sampling of a batch of `count` samples after `seen`, decided for the whole batch
    at once, as a plain loop that writes a batch in one assignment decides it: the slots the
    accepted samples take, and their rows in the batch."""
    positions = np.arange(seen, seen + count)
    slots = np.where(positions < capacity, positions, rng.integers(0, positions + 1))
    rows = np.flatnonzero(slots < capacity)
    return slots[rows], rows


class LoopBuffer:
    """Storage shared by the references: preallocated tensors, written one row at a time."""

    def __init__(self, capacity: int, shape: tuple[int, ...], device: str) -> None:
        self.capacity, self.size = capacity, 0
        self.x = torch.empty((capacity, *shape), device=device)
        self.y = torch.empty(capacity, dtype=torch.long, device=device)

    def store(self, slot: int, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x[slot] = x
        self.y[slot] = y

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = np.random.choice(self.size, size=min(n, self.size), replace=False)
        index = torch.from_numpy(index).to(self.x.device)
        return self.x[index], self.y[index]


class LoopReservoir(LoopBuffer):
    """Reservoir sampling as in most replay code: a random draw per sample."""

    def __init__(self, capacity: int, shape: tuple[int, ...], device: str) -> None:
        super().__init__(capacity, shape, device)
        self.seen = 0

    def add(self, x: torch.Tensor, y: torch.Tensor, features: torch.Tensor | None = None) -> None:
        for i in range(len(y)):
            slot = self.seen if self.seen < self.capacity else np.random.randint(0, self.seen + 1)
            if slot < self.capacity:
                self.store(slot, x[i], y[i])
            self.seen += 1
        self.size = min(self.seen, self.capacity)


class LoopClassBuffer(LoopBuffer):
    """Per-class bookkeeping of the class-aware references: each label's slots and count seen."""

    def __init__(self, capacity: int, shape: tuple[int, ...], device: str) -> None:
        super().__init__(capacity, shape, device)
        self.members: dict[int, list[int]] = {}
        self.seen: dict[int, int] = {}

    def arrive(self, label: int) -> tuple[list[int], bool]:
        """Count a sample of `label`: its class's slots, and whether the class is under its equal share."""
        self.seen[label] = self.seen.get(label, 0) + 1
        members = self.members.setdefault(label, [])
        return members, len(members) < self.capacity // len(self.members)

    def take_slot(self, victims: list[int], index: int | None = None) -> int:
        """A free slot while there is one, else the slot `victims[index]` (a random one when
        `index` is None), taken from `victims`."""
        if self.size < self.capacity:
            self.size += 1
            return self.size - 1
        return victims.pop(np.random.randint(len(victims)) if index is None else index)


class LoopClassBalanced(LoopClassBuffer):
    """Class-balanced reservoir (CBRS-style): a class under its quota takes a free slot, or a
    random slot of the largest class once the memory is full; a class at its quota runs reservoir
    sampling over its own stream."""

    def add(self, x: torch.Tensor, y: torch.Tensor, features: torch.Tensor | None = None) -> None:
        for i in range(len(y)):
            label = int(y[i])
            members, under_share = self.arrive(label)
            if under_share:
                slot = self.take_slot(max(self.members.values(), key=len) if self.size == self.capacity else [])
                members.append(slot)
            else:
                j = np.random.randint(0, self.seen[label])
                if j >= len(members):
                    continue
                slot = members[j]
            self.store(slot, x[i], y[i])


class LoopGDumb(LoopClassBuffer):
    """GDumb's sampler: store while there is room; then a sample enters only if its class is not
    the largest, evicting a random sample of the largest class."""

    def add(self, x: torch.Tensor, y: torch.Tensor, features: torch.Tensor | None = None) -> None:
        for i in range(len(y)):
            label = int(y[i])
            members = self.members.setdefault(label, [])
            largest = max(self.members.values(), key=len) if self.size == self.capacity else []
            if largest and len(members) >= len(largest):
                continue
            slot = self.take_slot(largest)
            members.append(slot)
            self.store(slot, x[i], y[i])


class LoopPRS(LoopClassBuffer):
    """Partitioning reservoir sampling (rho = 0): targets from the class counts, admission with
    probability min(1, target / seen), eviction from the class most over its target."""

    def __init__(self, capacity: int, shape: tuple[int, ...], device: str, rho: float = 0.0) -> None:
        super().__init__(capacity, shape, device)
        self.rho = rho

    def add(self, x: torch.Tensor, y: torch.Tensor, features: torch.Tensor | None = None) -> None:
        for i in range(len(y)):
            label = int(y[i])
            self.seen[label] = self.seen.get(label, 0) + 1
            members = self.members.setdefault(label, [])
            labels = list(self.seen)
            weights = np.power(np.array([self.seen[k] for k in labels], dtype=np.float64), self.rho)
            targets = dict(zip(labels, self.capacity * weights / weights.sum()))
            if np.random.rand() >= min(1.0, targets[label] / self.seen[label]):
                continue
            victims = []
            if self.size == self.capacity:
                victims = self.members[max(labels, key=lambda k: len(self.members[k]) - targets[k])]
            slot = self.take_slot(victims)
            members.append(slot)
            self.store(slot, x[i], y[i])


class LoopHerding(LoopBuffer):
    """iCaRL's exemplar management: after each batch, every class with more candidates (its
    exemplars and its new samples) than its quota reselects its exemplars by herding, one
    exemplar per iteration, as in iCaRL's reference code; a shrinking quota keeps each class's
    first exemplars."""

    def __init__(self, capacity: int, shape: tuple[int, ...], device: str) -> None:
        super().__init__(capacity, shape, device)
        self.exemplars: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # label -> (x, features)
        self.sums: dict[int, torch.Tensor] = {}
        self.seen: dict[int, int] = {}

    def add(self, x: torch.Tensor, y: torch.Tensor, features: torch.Tensor | None = None) -> None:
        for label in torch.unique(y).tolist():
            pick = y == label
            new_x, new_f = x[pick], features[pick]
            self.sums[label] = self.sums.get(label, 0) + new_f.sum(0)
            self.seen[label] = self.seen.get(label, 0) + len(new_x)
            old_x, old_f = self.exemplars.get(label, (new_x[:0], new_f[:0]))
            self.exemplars[label] = (torch.cat([old_x, new_x]), torch.cat([old_f, new_f]))
        quota = self.capacity // len(self.exemplars)
        for label, (cand_x, cand_f) in self.exemplars.items():
            if len(cand_x) <= quota:
                continue
            if label not in y:  # iCaRL's reduce step: keep the first exemplars
                self.exemplars[label] = (cand_x[:quota], cand_f[:quota])
                continue
            mean = self.sums[label] / self.seen[label]
            chosen, running = [], torch.zeros_like(mean)
            for k in range(quota):
                distance = ((mean - (running + cand_f) / (k + 1)) ** 2).sum(1)
                distance[chosen] = float("inf")
                best = int(distance.argmin())
                chosen.append(best)
                running += cand_f[best]
            self.exemplars[label] = (cand_x[chosen], cand_f[chosen])
        self.size = sum(len(e[0]) for e in self.exemplars.values())


class LoopFIFO(LoopBuffer):
    """The most recent samples, the way replay memories of reinforcement-learning code keep
    them: a ring with a write position, one sample at a time."""

    def __init__(self, capacity: int, shape: tuple[int, ...], device: str) -> None:
        super().__init__(capacity, shape, device)
        self.position = 0

    def add(self, x: torch.Tensor, y: torch.Tensor, features: torch.Tensor | None = None) -> None:
        for i in range(len(y)):
            self.store(self.position, x[i], y[i])
            self.position = (self.position + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)


class LoopRing(LoopClassBuffer):
    """A ring buffer per class (ER-ring style): a class under its quota takes a free slot, or
    the oldest slot of the largest class once the memory is full; a class at its quota writes
    over its own oldest sample. Each class's slots are a list, oldest first."""

    def add(self, x: torch.Tensor, y: torch.Tensor, features: torch.Tensor | None = None) -> None:
        for i in range(len(y)):
            members, under_share = self.arrive(int(y[i]))
            if under_share:  # the oldest slot of the largest class once full
                slot = self.take_slot(max(self.members.values(), key=len) if self.size == self.capacity else [], 0)
            else:
                slot = members.pop(0)
            members.append(slot)
            self.store(slot, x[i], y[i])


class LoopGSS(LoopBuffer):
    """GSS-Greedy (Aljundi et al. 2019, Algorithm 2) one sample at a time, with the slot drawn by
    `np.random.choice` over the normalized scores, as its published implementations do; the
    gradient scores are given (computing them is the method's part, not the buffer's)."""

    def __init__(self, capacity: int, shape: tuple[int, ...], device: str) -> None:
        super().__init__(capacity, shape, device)
        self.scores = np.zeros(capacity)

    def add(self, x: torch.Tensor, y: torch.Tensor, features: torch.Tensor | None = None,
            scores: torch.Tensor | None = None) -> None:
        assert scores is not None, "GSS needs a score per sample"
        for i, score in enumerate(scores.tolist()):
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
            elif score < 1:
                slot = np.random.choice(self.capacity, p=self.scores / self.scores.sum())
                if np.random.rand() >= self.scores[slot] / (self.scores[slot] + score):
                    continue
            else:
                continue
            self.store(slot, x[i], y[i])
            self.scores[slot] = score


class LoopASER(LoopBuffer):
    """ASER's memory update (Shim et al. 2021) one sample at a time: the free slots first, then
    each sample into the slot the method chose for it by Shapley values, or nowhere (-1); the
    choices are given (computing them is the method's part, not the buffer's)."""

    def add(self, x: torch.Tensor, y: torch.Tensor, features: torch.Tensor | None = None,
            slots: torch.Tensor | None = None) -> None:
        assert slots is not None, "ASER needs a slot per sample"
        for i, slot in enumerate(slots.tolist()):
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
            elif slot < 0:
                continue
            self.store(slot, x[i], y[i])


REFERENCES = {
    "reservoir": LoopReservoir,
    "class_balanced": LoopClassBalanced,
    "gdumb": LoopGDumb,
    "prs": LoopPRS,
    "herding": LoopHerding,
    "fifo": LoopFIFO,
    "gss": LoopGSS,
    "ring": LoopRing,
    "aser": LoopASER,
}
