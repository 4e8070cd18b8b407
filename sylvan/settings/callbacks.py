"""The Lightning callbacks that settings add to each `Trainer`. Settings import this module
when they build a `Trainer`, so that defining, listing and validating settings does not load
Lightning."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from sylvan.minibatches import float_inputs
from sylvan.run.fused_steps import fuses_steps


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


class OnlineAccuracyMeter(Callback):
    """Predict-then-train: before each training step, score the incoming batch with the
    method's `predict` (as the setting allows it), then let the step train on it."""

    measures_stream = True  # methods leave it out when they train on anything but the stream

    def __init__(self, method: Any, with_task_labels: bool) -> None:
        self.method = method
        self.with_task_labels = with_task_labels
        self.correct = 0
        self.total = 0
        self._shard: int | None = None  # samples of this worker's epoch that are the stream's (None: all)
        self._scored = 0  # samples of this epoch scored so far

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._scored = 0
        self._shard = stream_samples_of_shard(getattr(trainer, "train_dataloader", None))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not fuses_steps(pl_module):  # else a group of minibatches, each scored as it comes
            self.score(batch)

    def minibatch_started(self, trainer: L.Trainer, pl_module: L.LightningModule, minibatch: Any) -> None:
        """A minibatch of a group is about to be trained on (`sylvan.run.fused_steps`)."""
        self.score(minibatch)

    def minibatch_ended(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def score(self, batch: Any) -> None:
        """Count the batch's samples that the method, as it is now, classifies correctly
        (methods that do not train on the stream through a Trainer call this themselves)."""
        x, y = float_inputs(batch[0]), batch[1]  # the learner's batches keep uint8 pixels (`pixel_batches`)
        task_labels = batch[2] if self.with_task_labels and len(batch) > 2 else None
        scores = self.method.predict(x, task_labels)
        counted = len(y)
        if self._shard is not None:  # a worker's shard padded by its sampler: the padding is not the stream's
            counted = max(0, min(len(y), self._shard - self._scored))
            self._scored += len(y)
        self.correct += int((scores[:counted].argmax(dim=1).to(y.device) == y[:counted]).sum())
        self.total += counted

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None


class RememberWorkers(Callback):
    """Tells a run's data-parallel part (`sylvan.parallel.data_parallel.DataParallel`) when the
    strategy has joined every worker, and, in the process that started them, the worker
    processes (so that it can tell a dead one from a slow one)."""

    def __init__(self, parallel: Any) -> None:
        self.parallel = parallel

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.parallel.connected_at = time.perf_counter()  # the strategy has joined every worker
        self.parallel.joined = True
        launcher = getattr(trainer.strategy, "_launcher", None)
        if getattr(launcher, "procs", None):  # the Trainer that started the workers
            self.parallel.workers = list(launcher.procs)
