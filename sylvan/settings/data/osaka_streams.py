"""The OSAKA stream (Caccia et al., "Online Fast Adaptation and Knowledge Accumulation: a New
Approach to Continual Learning", NeurIPS 2020; reference code ServiceNow/osaka, `StreamDataset`).

Three pools of classes, one per mode: the pre-training distribution, and two out-of-distribution
ones. Before the stream, the pre-training phase serves n-way tasks of the pre-training pool. The
stream then serves one n-way k-shot batch per step from the current context; at each step the
context stays with probability p (`stationarity`), else it is drawn anew: a mode (by
`mode_probabilities`), then n classes of that mode's pool, labelled 0..n-1 in the order drawn,
so that a context that comes back comes back relabelled. Samples are drawn uniformly with
replacement among a class's samples, as the reference code draws them.

The pre-training phase reads the pre-training pool's training samples; the stream reads every
pool's test samples (the pre-training classes' other samples). A plan is drawn from the seed
alone, before anything trains, and the setting keeps the modes and switches to itself: a method
sees the batches only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from sylvan.settings.data.dataset_streams import TaskPlan

MODES = ("pretraining", "ood1", "ood2")  # what the accuracy per mode is named after

DIGITS = tuple(range(10))
# --dataset: the pools of the three modes (pre-training, first and second out of distribution)
POOLS = {
    # the paper's: Omniglot's 1,623 characters for pre-training, then MNIST and Fashion-MNIST
    "omniglot": (TaskPlan("omniglot", tuple(range(1623))), TaskPlan("mnist", DIGITS),
                 TaskPlan("fashion_mnist", DIGITS)),
    # offline, from MNIST's files: digits 0-4 for pre-training, 5-9 the first shift, the 8x8
    # `digits` (brought to 28x28) the second
    "mnist": (TaskPlan("mnist", DIGITS[:5]), TaskPlan("mnist", DIGITS[5:]), TaskPlan("digits", DIGITS)),
    # offline, nothing to read: `digits` 0-4, then 5-9, then the Gaussian `synthetic` classes
    "digits": (TaskPlan("digits", DIGITS[:5]), TaskPlan("digits", DIGITS[5:]), TaskPlan("synthetic", DIGITS)),
}
SHAPES = {"omniglot": (1, 28, 28), "mnist": (1, 28, 28), "digits": (1, 8, 8)}
SEED_KEY = 41  # the plans' generators: SeedSequence(seed, spawn_key=(SEED_KEY, part))


class StreamPlan(NamedTuple):
    """The stream, step by step: `rows` (steps, n x k) index the samples of `RowsDataset`,
    `labels` (steps, n x k) their labels in the step's context; per step, its `modes` (index
    into `MODES`), whether the context was drawn anew at it (`switches`, step 0 included) and
    whether that context's classes had been a context of the stream before (`revisits`)."""

    rows: torch.Tensor
    labels: torch.Tensor
    modes: torch.Tensor
    switches: torch.Tensor
    revisits: torch.Tensor

    @property
    def steps(self) -> int:
        return len(self.modes)

    def since_switch(self) -> torch.Tensor:
        """Per step, the steps since its context began (0 at a switch)."""
        last, out = 0, torch.empty(self.steps, dtype=torch.long)
        for step, switched in enumerate(self.switches.tolist()):
            last = step if switched else last
            out[step] = step - last
        return out


def class_rows(labels: torch.Tensor, offset: int = 0) -> list[np.ndarray]:
    """The rows (plus `offset`) of each class 0..C-1 of `labels`."""
    labels = labels.numpy()
    return [np.flatnonzero(labels == c) + offset for c in range(int(labels.max()) + 1)]


def draw_batch(rng: np.random.Generator, pool: list[np.ndarray], classes: np.ndarray, shots: int) -> np.ndarray:
    """`shots` rows of each of `classes` (class-major: label i's rows at i x shots), each drawn
    uniformly with replacement among the class's rows."""
    return np.concatenate([pool[c][rng.integers(len(pool[c]), size=shots)] for c in classes])


def plan_stream(pools: list[list[np.ndarray]], steps: int, stationarity: float, mode_probabilities: list[float],
                n_ways: int, k_shots: int, seed: int) -> StreamPlan:
    """The stream of `steps` batches over `pools` (per mode, the rows of each class)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SEED_KEY, 0)))
    probabilities = np.asarray(mode_probabilities, dtype=float)
    rows = np.empty((steps, n_ways * k_shots), dtype=np.int64)
    modes = np.empty(steps, dtype=np.int64)
    switches = np.zeros(steps, dtype=bool)
    revisits = np.zeros(steps, dtype=bool)
    seen: set[tuple[int, frozenset[int]]] = set()
    mode, classes = 0, np.empty(0, dtype=np.int64)
    for step in range(steps):
        if step == 0 or rng.random() >= stationarity:
            mode = int(rng.choice(len(pools), p=probabilities))
            classes = rng.choice(len(pools[mode]), size=n_ways, replace=False)
            context = (mode, frozenset(classes.tolist()))
            switches[step], revisits[step] = True, context in seen
            seen.add(context)
        else:
            revisits[step] = revisits[step - 1]
        modes[step] = mode
        rows[step] = draw_batch(rng, pools[mode], classes, k_shots)
    labels = np.repeat(np.arange(n_ways), k_shots)[None].repeat(steps, 0)
    return StreamPlan(torch.from_numpy(rows), torch.from_numpy(labels), torch.from_numpy(modes),
                      torch.from_numpy(switches), torch.from_numpy(revisits))


def plan_tasks(pool: list[np.ndarray], tasks: int, n_ways: int, shots: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pre-training phase: `tasks` n-way tasks of `pool`, each its own context (classes
    drawn anew, labelled 0..n-1 in the order drawn), `shots` samples per class: the rows
    (tasks, n x shots) and their labels."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SEED_KEY, 1)))
    rows = np.stack([draw_batch(rng, pool, rng.choice(len(pool), size=n_ways, replace=False), shots)
                     for _ in range(tasks)]) if tasks else np.empty((0, n_ways * shots), dtype=np.int64)
    labels = np.repeat(np.arange(n_ways), shots)[None].repeat(tasks, 0)
    return torch.from_numpy(rows), torch.from_numpy(labels)


class RowsDataset(Dataset):
    """The samples `rows` of `inputs` (uint8 pixels) with `labels`, in order, gathered a
    minibatch at a time: the stream is held as indices, not as copies of its samples."""

    def __init__(self, inputs: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor) -> None:
        self.inputs, self.rows, self.labels = inputs, rows.reshape(-1), labels.reshape(-1)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[self.rows[index]], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.inputs.index_select(0, self.rows.index_select(0, index)), self.labels.index_select(0, index)
