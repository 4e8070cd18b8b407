"""Predict-then-train on a stream with modes and switches (`osaka`): each batch scored by the
method's `predict` as the stream hands it out, before the method can learn from it, and the
counts kept per mode and per step after a switch.

The loader (`ScoredStream`) scores a batch the first time it is drawn, so that no method, whatever
loop it trains in, receives a batch it was not scored on first; a batch a method never draws
(one that does not learn from the stream) is scored after its fit. The counts are sums, kept in
the results (`Results.stream_accuracy`), so that a resumed run carries them on."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from sylvan.errors import ConfigurationError
from sylvan.minibatches import float_inputs

# a switch counts as a return where its context (mode and classes) was a context before
SWITCH_KINDS = ("first_visit", "revisit")
STRETCHES = 50  # the stream is cut into at most this many stretches of equal steps, counted apart (a curve)


class StreamMeter:
    """The predict-then-train counts of a stream planned by `plan` (`StreamPlan`): per mode
    (`modes`: their names), and at each of the first `window` steps after a switch, per mode
    and per kind of switch (to a context first seen, or back to one seen before)."""

    def __init__(self, plan: Any, modes: tuple[str, ...], window: int) -> None:
        self.plan, self.modes, self.window = plan, modes, window
        self.since_switch = plan.since_switch()
        self.next_step = 0  # the stream's next batch to score
        self.correct = torch.zeros(len(modes), dtype=torch.long)
        self.total = torch.zeros(len(modes), dtype=torch.long)
        self.after_correct = torch.zeros(len(modes), window, dtype=torch.long)
        self.after_total = torch.zeros(len(modes), window, dtype=torch.long)
        self.kind_correct = torch.zeros(len(SWITCH_KINDS), window, dtype=torch.long)
        self.kind_total = torch.zeros(len(SWITCH_KINDS), window, dtype=torch.long)
        # per mode, the counts of each stretch of the stream (`stretch_ends`: the step after each)
        steps = len(plan.modes)
        stretches = min(STRETCHES, steps)
        self.stretch_ends = [(k + 1) * steps // stretches for k in range(stretches)]
        self.stretch_of = torch.bucketize(torch.arange(steps), torch.tensor(self.stretch_ends), right=True)
        self.stretch_correct = torch.zeros(len(modes), stretches, dtype=torch.long)
        self.stretch_total = torch.zeros(len(modes), stretches, dtype=torch.long)

    def score(self, method: Any, batch: Any) -> None:
        """Count how many of the next stream step's batch `method`, as it is now, classifies right."""
        step = self.next_step
        x, y = float_inputs(batch[0]), batch[1]
        right = int((method.predict(x, None).argmax(dim=1).to(y.device) == y).sum())
        mode, since = int(self.plan.modes[step]), int(self.since_switch[step])
        self.correct[mode] += right
        self.total[mode] += len(y)
        stretch = int(self.stretch_of[step])
        self.stretch_correct[mode, stretch] += right
        self.stretch_total[mode, stretch] += len(y)
        if since < self.window:
            kind = int(self.plan.revisits[step])
            self.after_correct[mode, since] += right
            self.after_total[mode, since] += len(y)
            self.kind_correct[kind, since] += right
            self.kind_total[kind, since] += len(y)
        self.next_step += 1

    @property
    def accuracy(self) -> float | None:
        total = int(self.total.sum())
        return int(self.correct.sum()) / total if total else None

    def mode_accuracies(self) -> list[float | None]:
        return ratios(self.correct, self.total)

    def summary(self) -> dict[str, Any]:
        """What the results keep: the accuracies, and the counts they come from."""
        return {
            "steps_scored": self.next_step,
            "modes": list(self.modes),
            "accuracy": self.accuracy,
            "accuracy_per_mode": dict(zip(self.modes, self.mode_accuracies())),
            # accuracy at step j after a switch (j = 0: the switch's batch, scored before any of
            # the new context is learned), and over steps 1 to window - 1
            "after_switch_per_mode": {mode: ratios(c, t) for mode, c, t in
                                      zip(self.modes, self.after_correct, self.after_total)},
            "after_switch_per_kind": {kind: ratios(c, t) for kind, c, t in
                                      zip(SWITCH_KINDS, self.kind_correct, self.kind_total)},
            "adaptation_per_mode": {mode: ratio(c[1:].sum(), t[1:].sum()) for mode, c, t in
                                    zip(self.modes, self.after_correct, self.after_total)},
            "adaptation_per_kind": {kind: ratio(c[1:].sum(), t[1:].sum()) for kind, c, t in
                                    zip(SWITCH_KINDS, self.kind_correct, self.kind_total)},
            # accuracy along the stream: per mode, in each stretch of steps up to `stretch_ends`
            "over_stream": {"stretch_ends": self.stretch_ends,
                            "accuracy_per_mode": {mode: ratios(c, t) for mode, c, t in
                                                  zip(self.modes, self.stretch_correct, self.stretch_total)}},
            "counts": {name: getattr(self, name).tolist() for name in COUNTS},
        }

    def restore(self, summary: dict[str, Any]) -> None:
        """Carry on from a summary (`summary()`) of the stream so far."""
        missing = [name for name in COUNTS if name not in summary["counts"]]
        if missing:
            raise ConfigurationError(f"--resume: the checkpoint lacks the stream's counts {', '.join(missing)} "
                                     "(written by an older version of sylvan); start the run again")
        self.next_step = summary["steps_scored"]
        for name in COUNTS:
            getattr(self, name).copy_(torch.tensor(summary["counts"][name]))


COUNTS = ("correct", "total", "after_correct", "after_total", "kind_correct", "kind_total", "stretch_correct",
          "stretch_total")


def ratio(correct: torch.Tensor, total: torch.Tensor) -> float | None:
    return int(correct) / int(total) if int(total) else None


def ratios(correct: torch.Tensor, total: torch.Tensor) -> list[float | None]:
    return [ratio(c, t) for c, t in zip(correct, total)]


class ScoredStream(DataLoader):
    """The stream's batches from `first_step` on, each scored by `meter` with `method` the first
    time it is drawn (before the caller gets it). Inputs come as stored (uint8 pixels)."""

    def __init__(self, dataset: Any, batch_size: int, meter: StreamMeter, method: Any, first_step: int,
                 pin_memory: bool = False) -> None:
        super().__init__(dataset, batch_size=batch_size, shuffle=False, collate_fn=as_gathered, pin_memory=pin_memory)
        self.meter, self.method, self.first_step = meter, method, first_step

    def __iter__(self) -> Any:
        for index, batch in enumerate(super().__iter__()):
            if self.first_step + index == self.meter.next_step:  # drawn for the first time
                self.meter.score(self.method, batch)
            yield batch

    def score_rest(self) -> None:
        """Score the batches the method did not draw (it did not learn from them)."""
        if self.meter.next_step < self.first_step + len(self):
            for _ in self:
                pass


def as_gathered(batch: Any) -> Any:
    """The batch as the dataset gathered it (`RowsDataset.__getitems__`)."""
    return batch
