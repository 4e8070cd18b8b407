"""Several minibatches per Lightning step, each still its own SGD step (`--fused_steps`).

Lightning's training loop costs about half a millisecond of Python per step on a CPU core (its
hooks, closure, progress counters and data fetcher), which is more than a whole step of an MLP at
batch 10. With fused steps, the loader serves groups of K consecutive minibatches
(`MinibatchGroups`), and the learner's step trains on each in turn with the optimizer and
`backward` called directly: the same forward, backward, method hooks and optimizer step per
minibatch, in the same order and on the same data, so results are identical to one minibatch per
step, and Lightning's per-step price is paid once per K minibatches. The per-minibatch work of
the run's callbacks (the online meter's predict-then-train, the sampled FLOP counts) moves into
that loop with them (`minibatch_callbacks`), and the training curve gets the same points, each
minibatch's loss at its own step.

It applies where one process trains in 32-bit precision with a constant learning rate and every
callback that works per step knows minibatches: mixed precision needs the precision plugin's
loss scaling around each backward pass, data-parallel workers need DDP's gradient averaging around
each, a schedule needs Lightning's stepping of it, and a callback of one's own sees Lightning's
steps. `--fused_steps 0` (the default) fuses 10 where all of that holds and trains one minibatch
per step elsewhere; `--fused_steps K` asks for K and is refused where it cannot be done, and 1
turns fusing off.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterator

from sylvan.errors import ConfigurationError

# minibatches per Lightning step under `--fused_steps 0`: Lightning's per-step price then counts
# for a tenth of a millisecond per minibatch on a CPU core
AUTOMATIC_FUSED_STEPS = 10

# the Lightning hooks through which a callback works per training step (`per_step_callbacks`)
PER_STEP_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
                  "on_before_optimizer_step", "on_before_zero_grad")


@dataclass
class FusedStepsOptions:
    """The option of fused steps (a dataclass the supervised settings' fields come from)."""

    # minibatches each Lightning step trains on, one optimizer step each, with results and curves
    # identical to 1: Lightning's per-step cost (about 0.5 ms on a CPU core) is paid once per this
    # many minibatches. 0: 10 where the run allows it (one process, 32-true precision, a constant
    # learning rate), else 1; 1: off; K > 1 is refused where the run does not allow it
    fused_steps: int = 0

    def check_fused_steps(self, method: Any = None) -> None:
        """Refuse a negative `--fused_steps`, and one above 1 where the loop could not train as
        Lightning's does (`fusing_obstacle`)."""
        if self.fused_steps < 0:
            raise ConfigurationError(f"--fused_steps must be >= 0 (0: 10 where the run allows it), "
                                     f"got {self.fused_steps}")
        obstacle = self.fusing_obstacle(method) if self.fused_steps > 1 else None
        if obstacle is not None:
            raise ConfigurationError(f"--fused_steps {self.fused_steps} trains each minibatch with the optimizer "
                                     f"and backward called directly, {obstacle}")

    def fusing_obstacle(self, method: Any = None) -> str | None:
        """Why this run's steps cannot be fused (several workers, mixed precision, or, given
        `method`, a learning-rate schedule), as the end of a refusal; None where they can."""
        workers = getattr(self, "world_size", 1)
        if workers > 1 or getattr(self, "data_parallel", False):
            return (f"without the gradient averaging of data-parallel workers ({workers} here): use "
                    "--fused_steps 1 with them")
        if getattr(self, "precision", "32-true") != "32-true":
            return (f"without the loss scaling and autocast of --precision {self.precision}: use --precision "
                    "32-true with it")
        schedule = getattr(method, "lr_schedule", "constant")
        if schedule != "constant":
            return f"without Lightning's stepping of --lr_schedule {schedule}: use --lr_schedule constant with it"
        return None

    def minibatches_per_step(self, method: Any, callbacks: list[Any]) -> int:
        """The minibatches each Lightning step of `method`'s fit trains on, under a `Trainer`
        with `callbacks`: `--fused_steps`, or under 0, 10 where the run allows it and every
        callback that works per step knows minibatches, else 1."""
        unaware = per_step_callbacks(callbacks)
        if self.fused_steps > 1 and unaware:
            names = ", ".join(sorted({type(callback).__name__ for callback in unaware}))
            raise ConfigurationError(f"--fused_steps {self.fused_steps} trains several minibatches per Lightning step, "
                                     f"which callbacks working per step would see as one ({names}): use "
                                     "--fused_steps 1 with them, or give them minibatch_started and minibatch_ended")
        if self.fused_steps:
            return self.fused_steps
        if unaware or self.fusing_obstacle(method) is not None:
            return 1
        return AUTOMATIC_FUSED_STEPS


def per_step_callbacks(callbacks: list[Any]) -> list[Any]:
    """The callbacks (not Lightning's own) that work through Lightning's per-step hooks without
    knowing minibatches: they would see groups under fused steps. One knows them where it has
    `minibatch_started` (`minibatch_callbacks`), or says that its per-step hooks expect groups
    (`handles_minibatch_groups = True`)."""
    import lightning as L

    return [
        callback for callback in callbacks
        if not type(callback).__module__.startswith(("lightning.", "pytorch_lightning."))
        and not hasattr(callback, "minibatch_started")
        and not getattr(callback, "handles_minibatch_groups", False)
        and any(getattr(type(callback), hook, None) is not getattr(L.Callback, hook) for hook in PER_STEP_HOOKS)
    ]


class MinibatchGroups:
    """`loader`'s minibatches, served `size` at a time as lists (the last group holds what is
    left), in the order `loader` serves them; its other attributes (`sampler`, `batch_size`,
    `dataset`, ...) are `loader`'s, which Lightning reads (to set a sampler's epoch, for one)."""

    def __init__(self, loader: Any, size: int) -> None:
        self.loader = loader
        self.size = size

    def __iter__(self) -> Iterator[list[Any]]:
        minibatches = iter(self.loader)
        try:
            left = len(self.loader)
        except TypeError:  # no length: to its end
            left = math.inf
        # no minibatch asked for past the loader's length, as Lightning asks for none past it:
        # a shuffling sampler draws its next order as it is asked past its end, from a generator
        # that may be the loader's own across epochs
        while left > 0:
            group = list(itertools.islice(minibatches, min(self.size, left)))
            if not group:
                return
            left -= len(group)
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
