"""The evaluation curve of the reinforcement-learning settings: greedy episodes on every task every
`--eval_every` steps of the stream, beside the evaluation after each stage, and the reference runs
a task's forward transfer is measured against (`--reference_dir`; Continual World's metrics,
`sylvan.analysis.continual_world`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from sylvan.errors import ConfigurationError


@dataclass
class EvaluationCurveOptions:
    """The options of the evaluation curve (a dataclass the RL settings' fields come from)."""

    # also evaluate every task this often, in environment steps of the stream (a divisor of
    # --steps_per_task): the success and return curves of results.json and logs/train.csv, which Continual
    # World's metrics and plot read (default: only after each stage)
    eval_every: Optional[int] = None
    makes_references: ClassVar[bool] = False  # whether a run stores its curve in --reference_dir
    # a folder of reference runs, each task trained alone (traditional_rl) by the same agent with the same
    # options and seed: a traditional_rl run stores its curve there, other runs read them for each task's
    # forward transfer (see docs/benchmarks/continual-world.md)
    reference_dir: Optional[str] = None

    def validate(self) -> None:
        super().validate()  # type: ignore[misc]
        steps = self.steps_per_task
        if self.eval_every is not None and (self.eval_every < 1 or steps % self.eval_every):
            raise ConfigurationError(
                f"--eval_every must divide --steps_per_task ({steps}), so that every task's training ends on "
                f"an evaluation; got {self.eval_every}"
            )

    def task_spans(self) -> list[list[int]] | None:
        """Each task's training span (start, end] in the stream's steps, in stream order; None where
        the tasks are trained all at once."""
        steps = self.steps_per_task
        return [[k * steps, (k + 1) * steps] for k in range(self.stream_tasks)]
