"""Predict-then-train on a stream with modes and switches (`osaka`): each batch scored by the
method's `predict` before the method learns from it, as the online settings' meter scores theirs
(`sylvan.run.callbacks.PredictThenTrain`: at the start of each step that trains on a batch of
the stream, a fit's or one of a method's own loop), with the counts kept per mode and per step
after a switch. A batch a method does not train on (a method that does not learn from the
stream) is scored after its fit (`score_rest`). The counts are sums, kept in the results
(`Results.stream_accuracy`), so that a resumed run carries them on."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from sylvan.errors import ConfigurationError
from sylvan.run.callbacks import PredictThenTrain

# a switch counts as a return where its context (mode and classes) was a context before
SWITCH_KINDS = ("first_visit", "revisit")
STRETCHES = 50  # the stream is cut into at most this many stretches of equal steps, counted apart (a curve)


class StreamMeter(PredictThenTrain):
    """The predict-then-train counts of a stream planned by `plan` (`StreamPlan`): per mode
    (`modes`: their names), and at each of the first `window` steps after a switch, per mode
    and per kind of switch (to a context first seen, or back to one seen before). The stream's
    batches are scored in their order, each once: `for_stage` says which method and which of
    the stream's steps a training stage has."""

    def __init__(self, plan: Any, modes: tuple[str, ...], window: int) -> None:
        super().__init__(method=None, with_task_labels=False)
        self.stop = 0  # the stream step after the stage's last
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

    def for_stage(self, method: Any, steps: range) -> StreamMeter:
        """This meter, scoring with `method` the stream's `steps` (a training stage's)."""
        self.method, self.stop = method, steps.stop
        return self

    def count(self, scores: torch.Tensor, y: torch.Tensor) -> None:
        """Count how many of the next stream step's batch the method, as it is now, classifies
        right (nothing past the stage's steps: a method that goes over the stream again)."""
        step = self.next_step
        if step >= self.stop:
            return
        right = int((scores.argmax(dim=1).to(y.device) == y).sum())
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

    def score_rest(self, loader: DataLoader, first_step: int) -> None:
        """Score the batches of `loader` (the stream's from `first_step` on) that no step of the
        method's scored: those it did not train on."""
        if self.next_step >= first_step + len(loader):
            return
        for index, batch in enumerate(loader):
            if first_step + index == self.next_step:
                self.score(batch)

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


def as_gathered(batch: Any) -> Any:
    """The batch as the dataset gathered it (`RowsDataset.__getitems__`)."""
    return batch
