"""`il2m`: class-incremental learning with dual memory (Belouadah & Popescu, "IL2M: Class
Incremental Learning With Dual Memory", ICCV 2019).

How it follows its paper, and what it adds: docs/method-notes.md, section il2m."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from sylvan.methods.core.exemplars import HerdingExemplarMethod
from sylvan.methods.core.supervised import Batch
from sylvan.methods.parts.rectification import class_score_means, rectification_factors
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting


@dataclass
class IL2M(HerdingExemplarMethod):
    """IL2M: fine-tuning with herding exemplars; old classes' scores rescaled by their recorded
    statistics where a new class is predicted."""

    name: ClassVar[str] = "il2m"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting  # statistics at each task's end

    # rescale the old classes' scores by the statistics (false: the fine-tuned network's own predictions, the
    # baseline IL2M corrects; the statistics are recorded all the same)
    rectify: bool = True

    state_attributes: ClassVar[tuple[str, ...]] = (
        "initial_means", "current_means", "class_stage", "confidences", "stage",
    )

    def configure(self, run: Any) -> None:
        super().configure(run)
        classes = run.num_classes
        self.initial_means = torch.zeros(classes)  # each class's mean own score when it was new
        self.current_means = torch.zeros(classes)  # each old class's mean own score on its exemplars, latest task
        self.class_stage = torch.full((classes,), -1, dtype=torch.long)  # the stage that brought each class
        # each stage's mean top score (a run has no more stages than tasks)
        self.confidences = torch.full((run.nb_tasks,), float("nan"))
        self.stage = 0  # stages finished

    def training_step(self, batch: Batch) -> torch.Tensor:
        active, _ = self.seen_classes.observe(batch.y)
        return F.cross_entropy(self.learner(batch.x).masked_fill(~active, float("-inf")), batch.y)

    def on_task_end(self, task_id: int | None) -> None:
        self.record_statistics()  # on what the task trained on: before the exemplars change
        super().on_task_end(task_id)
        self.stage += 1

    def record_statistics(self) -> None:
        """The statistics of the task just trained: initial means of its new classes and its
        confidence from their samples, current means of the old classes from their samples
        (the task's data and the exemplars)."""
        x, y = self._task_data[0], self._task_data[1]
        if len(self.replay):
            stored = self.replay.stored()
            x, y = torch.cat([x, stored["x"].to(x.device)]), torch.cat([y, stored["y"].to(y.device)])
        y = y.cpu()
        logits = self.evaluated_in_chunks(x, lambda model, chunk: model(chunk).float().cpu())
        means, counts = class_score_means(logits, y, len(self.seen_classes.active))
        new = self.seen_classes.active & ~self.seen_classes.old & (counts > 0)
        self.initial_means[new] = means[new]
        self.class_stage[new] = self.stage
        self.current_means = torch.where(self.seen_classes.old & (counts > 0), means, torch.zeros_like(means))
        of_new = new[y]
        if bool(of_new.any()):
            self.confidences[self.stage] = logits[of_new].max(1).values.double().mean().float()

    def factors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The factors of the old classes' scores and the mask of the latest stage's new classes;
        None where nothing is rectified (before the second stage, or a stage without new classes)."""
        latest = self.stage - 1
        new = self.class_stage == latest
        old = (self.class_stage >= 0) & (self.class_stage < latest)
        if latest < 1 or not bool(new.any()) or not bool(old.any()):
            return None
        class_confidences = self.confidences[self.class_stage.clamp(min=0)]
        latest_confidence = float(self.confidences[latest])
        factors = rectification_factors(self.initial_means, self.current_means, class_confidences, latest_confidence,
                                        old)
        return factors, new

    def scores(self, x: torch.Tensor, task_labels: torch.Tensor | None) -> torch.Tensor:
        """The network's logits, those of the old classes rescaled where the top class is one of
        the latest stage's new classes."""
        logits = self.learner(x)
        rectification = self.factors() if self.rectify else None
        if rectification is not None:
            factors, new = (t.to(logits.device) for t in rectification)
            top_is_new = new[logits.argmax(1)]
            logits = torch.where(top_is_new[:, None], logits * factors.to(logits.dtype), logits)
        return self.mask_to_tasks(logits, task_labels)
