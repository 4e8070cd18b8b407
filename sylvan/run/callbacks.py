"""The callbacks of sylvan's training loop (`sylvan.run.engine`): the run's per-minibatch work,
and a user's, at named trigger points of one protocol.

A fit calls, in this order: `fit_started`; per epoch `epoch_started`; per minibatch
`minibatch_started` (before the method's step: the online meter predicts here, the FLOP count
starts) and `minibatch_ended` (after the optimizer's step, before the method's `after_step`);
then `fit_ended`. Each receives the `Fit` under way (its loader, epoch, step, the minibatch's
loss once it is known). A callback overrides the trigger points it needs; the others do nothing.

A loop a method owns (an agent's interaction, a meta-learner's inner and outer loops:
`Engine.loop`) calls the same trigger points: `fit_started`, then around each of its steps
`minibatch_started` and `minibatch_ended` (`fit.kind` says which kind of step: "act", "learn",
"adapt", "meta_update"; `fit.loss` is None for a step that has none), then `fit_ended`.

The run's own callbacks: the predict-then-train meter of a single-pass stream (`PredictThenTrain`:
`OnlineAccuracyMeter` in the online settings, `sylvan.run.stream_meter.StreamMeter` in osaka's),
the sampled FLOP count (`sylvan.run.accounting.CountCompute`), the training log and the progress
bar (`sylvan.run.engine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sylvan.minibatches import float_inputs


@dataclass
class Fit:
    """One fit of a network under way: what the callbacks may read of it."""

    loader: Any  # the training loader, as this worker iterates it (its shard, with several)
    epochs: int
    planned_steps: float  # optimizer steps over the fit (inf where the loader has no length)
    epoch: int = 0
    step: int = 0  # optimizer steps of this fit before the minibatch under way
    loss: Any = None  # the loss of the minibatch just trained on (a tensor), in `minibatch_ended`
    batch_size: int = 0  # samples of the minibatch under way
    optimizer: Any = None
    # in a loop a method owns (`Engine.loop`): the kind of the step under way, and the kind whose
    # steps `planned_steps` and `step` count (and a progress bar shows); both None in the engine's
    # fits. `first_step`: where the run fixes it, the run-wide step of the loop's first (the
    # stream's environment steps before it), at which its training log continues
    kind: str | None = None
    unit: str | None = None
    first_step: int | None = None
    units: int = 1  # of the loop's unit, what the step under way counts (a step of n environments: n)

    @property
    def method_loop(self) -> bool:
        """Whether this is a loop a method owns (`Engine.loop`), not one of the engine's fits."""
        return self.unit is not None


class Callback:
    """A callback of the training loop; override the trigger points it needs."""

    # whether it measures the stream: a method's fit on anything else (its memory, a retraining)
    # leaves it out (`SupervisedMethod.train_learner(measure_online=False)`)
    measures_stream = False

    def fit_started(self, fit: Fit) -> None:
        """A fit starts (its optimizer is built)."""

    def epoch_started(self, fit: Fit) -> None:
        """An epoch of the fit starts."""

    def minibatch_started(self, fit: Fit, batch: Any) -> None:
        """A minibatch (as the loader served it, on the run's device) is about to be trained on."""

    def minibatch_ended(self, fit: Fit) -> None:
        """The optimizer has stepped on the minibatch (`fit.loss` holds its loss)."""

    def fit_ended(self, fit: Fit) -> None:
        """The fit has trained on its last minibatch."""


def stream_samples_of_shard(loader: Any) -> int | None:
    """How many of the samples a worker's `loader` gives in an epoch are the stream's, where its
    `DistributedSampler` pads the shards to equal sizes: sample position p of the padded order
    goes to worker p mod W, and the positions from the stream's length N on repeat earlier
    samples, so a worker whose last position is N or beyond ends its epoch on one that is not
    the stream's. None where nothing is padded."""
    from torch.utils.data import DistributedSampler

    sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, DistributedSampler) or sampler.drop_last:
        return None
    last_position = sampler.rank + sampler.num_replicas * (sampler.num_samples - 1)
    return sampler.num_samples - 1 if last_position >= len(sampler.dataset) else None


class PredictThenTrain(Callback):
    """Predict-then-train: before each step that trains on a minibatch of the stream (a fit's,
    or a step of a method's own loop that carries one), score it with the method's `predict` (as
    the setting allows it: task labels or not), then let the step train on it. What is counted of
    the scores is the meter's (`count`). A method that reads the stream outside any step scores
    each minibatch itself first (`score`)."""

    measures_stream = True

    def __init__(self, method: Any, with_task_labels: bool) -> None:
        self.method = method
        self.with_task_labels = with_task_labels

    def minibatch_started(self, fit: Fit, batch: Any) -> None:
        if batch is not None:  # a step of a method's own loop may carry no minibatch of the stream
            self.score(batch)

    def score(self, batch: Any) -> None:
        """Score `batch` with the method as it is now, and count it."""
        x, y = float_inputs(batch[0]), batch[1]  # the learner's batches keep uint8 pixels (`pixel_batches`)
        task_labels = batch[2] if self.with_task_labels and len(batch) > 2 else None
        self.count(self.method.predict(x, task_labels), y)

    def count(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """Count the scores of a minibatch of the stream against its labels."""
        raise NotImplementedError

    @property
    def accuracy(self) -> float | None:
        """The predict-then-train accuracy so far (None before any sample)."""
        raise NotImplementedError


class OnlineAccuracyMeter(PredictThenTrain):
    """The predict-then-train accuracy of an online stream: its samples scored right over those
    scored, each worker's shard without its sampler's padding."""

    def __init__(self, method: Any, with_task_labels: bool) -> None:
        super().__init__(method, with_task_labels)
        self.correct = 0
        self.total = 0
        self._shard: int | None = None  # samples of this worker's epoch that are the stream's (None: all)
        self._scored = 0  # samples of this epoch scored so far

    def epoch_started(self, fit: Fit) -> None:
        self.start_epoch(fit.loader)

    def start_epoch(self, loader: Any) -> None:
        """An epoch of `loader` starts: its padding, if any, is found anew."""
        self._scored = 0
        self._shard = stream_samples_of_shard(loader)

    def count(self, scores: torch.Tensor, y: torch.Tensor) -> None:
        counted = len(y)
        if self._shard is not None:  # a worker's shard padded by its sampler: the padding is not the stream's
            counted = max(0, min(len(y), self._shard - self._scored))
            self._scored += len(y)
        self.correct += int((scores[:counted].argmax(dim=1).to(y.device) == y[:counted]).sum())
        self.total += counted

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None
