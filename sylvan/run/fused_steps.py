"""`--fused_steps K`: K minibatches per Lightning step, each still its own SGD step.

Lightning's training loop costs about half a millisecond of Python per step on a CPU core (its
hooks, closure, progress counters and data fetcher), which is more than a whole step of an MLP at
batch 10. With `--fused_steps K`, the loader serves groups of K consecutive minibatches
(`MinibatchGroups`), and the learner's step trains on each in turn with the optimizer and
`backward` called directly: the same forward, backward, method hooks and optimizer step per
minibatch, in the same order and on the same data, so results are identical to `--fused_steps 1`,
and Lightning's per-step price is paid once per K minibatches. The per-minibatch work of the
run's callbacks (the online meter's predict-then-train, the sampled FLOP counts) moves into that
loop with them (`minibatch_callbacks`).

It applies where one process trains in 32-bit precision with a constant learning rate: mixed
precision needs the precision plugin's loss scaling around each backward pass, data-parallel
workers need DDP's gradient averaging around each, and a schedule needs Lightning's stepping of
it; those are refused with fused steps rather than silently changed. The training curves keep a
point every 10 Lightning steps, which are then 10 K minibatches: the loss logged is the mean of
that step's K losses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

from sylvan.errors import ConfigurationError


@dataclass
class FusedStepsOptions:
    """The option of fused steps (a dataclass the supervised settings' fields come from)."""

    # minibatches each Lightning step trains on, one optimizer step each, with results identical
    # to 1: Lightning's per-step cost (about 0.5 ms on a CPU core) is paid once per this many
    # minibatches, which speeds up small networks and batches; one process, 32-true precision and
    # a constant learning rate only; training curves get a point (a step's mean loss) every 10 of them
    fused_steps: int = 1

    def check_fused_steps(self, method: Any = None) -> None:
        """Refuse `--fused_steps` below 1, and above 1 where the loop could not train as
        Lightning's does: several workers, mixed precision, or (given `method`) a learning-rate
        schedule."""
        if self.fused_steps < 1:
            raise ConfigurationError(f"--fused_steps must be >= 1, got {self.fused_steps}")
        if self.fused_steps == 1:
            return
        why = "trains each minibatch with the optimizer and backward called directly"
        workers = getattr(self, "world_size", 1)
        if workers > 1 or getattr(self, "data_parallel", False):
            raise ConfigurationError(f"--fused_steps {self.fused_steps} {why}, without the gradient averaging of "
                                     f"data-parallel workers ({workers} here): use --fused_steps 1 with them")
        if getattr(self, "precision", "32-true") != "32-true":
            raise ConfigurationError(f"--fused_steps {self.fused_steps} {why}, without the loss scaling and "
                                     f"autocast of --precision {self.precision}: use --precision 32-true with it")
        schedule = getattr(method, "lr_schedule", "constant")
        if schedule != "constant":
            raise ConfigurationError(f"--fused_steps {self.fused_steps} {why}, without Lightning's stepping of "
                                     f"--lr_schedule {schedule}: use --lr_schedule constant with it")


class MinibatchGroups:
    """`loader`'s minibatches, served `size` at a time as lists (the last group holds what is
    left), in the order `loader` serves them; its other attributes (`sampler`, `batch_size`,
    `dataset`, ...) are `loader`'s, which Lightning reads (to set a sampler's epoch, for one)."""

    def __init__(self, loader: Any, size: int) -> None:
        self.loader = loader
        self.size = size

    def __iter__(self) -> Iterator[list[Any]]:
        group = []
        for minibatch in self.loader:
            group.append(minibatch)
            if len(group) == self.size:
                yield group
                group = []
        if group:
            yield group

    def __len__(self) -> int:
        return math.ceil(len(self.loader) / self.size)

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (unpickling): no recursion through `self.loader`
            raise AttributeError(name)
        return getattr(self.loader, name)


def fuses_steps(module: Any) -> bool:
    """Whether `module` (a Lightning module) trains on groups of minibatches in this fit: the
    run's callbacks then do their per-minibatch work when it calls them (`minibatch_callbacks`),
    not in Lightning's per-step hooks."""
    return getattr(module, "fused_steps", 1) > 1


def minibatch_callbacks(trainer: Any) -> list[Any]:
    """The callbacks of `trainer` that work on each minibatch, in their order: those with
    `minibatch_started(trainer, module, minibatch)` and `minibatch_ended(trainer, module)`."""
    return [callback for callback in trainer.callbacks if hasattr(callback, "minibatch_started")]


def planned_minibatches(trainer: Any) -> float:
    """The minibatches `trainer`'s fit trains on, over its epochs (inf where its loader has no
    length): its steps, or the minibatches of its groups."""
    loader = trainer.train_dataloader
    if not isinstance(loader, MinibatchGroups):
        return trainer.num_training_batches * (trainer.max_epochs or 1)
    try:
        return len(loader.loader) * (trainer.max_epochs or 1)
    except TypeError:
        return math.inf
