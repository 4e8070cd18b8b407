"""What the buffer policies that judge new samples by the model need from it, computed after the
optimizer's step on the samples and handed to the buffer with them: the gss policy's gradient
scores (`GSSAdmission`) and the aser policy's replacement slots (`ASERReplacement`). A replay
method holds the one its `--buffer_policy` needs (`admission_for`), and nothing otherwise."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from sylvan.buffers import needs_scores, needs_slots
from sylvan.buffers.aser import ASEROptions
from sylvan.buffers.gss import FIRST_BATCH_SCORE, GSSOptions
from sylvan.methods.parts.gradient_scores import gradient_scores, gradient_scores_with_batch
from sylvan.methods.parts.shapley import knn_shapley_values, replacement_slots, update_sets

ASER_DRAWS_SEED = 50_021  # seed offset of the aser policy's draws (`RunContext.worker_seed`)


class GSSAdmission:
    """The gss policy's scores of new samples (`sylvan.methods.parts.gradient_scores`): "score",
    each sample's gradient compared with those of `--gss_compared` samples drawn uniformly from the
    local buffer (whatever the retrieval), as the buffer holds them before this batch; with
    `--gss_batch_gate`, "batch_score" too, the gradient of the batch's mean loss compared with the
    same samples' (`FIRST_BATCH_SCORE` while nothing is stored)."""

    def __init__(self, method: Any, options: GSSOptions) -> None:
        self.method, self.options = method, options
        self.task_start: tuple[int, int] | None = None  # (seen, replaced) when a task began with a full buffer

    def extras(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        method = self.method
        reference = method.buffer.uniform_sample(self.options.gss_compared) or {"x": x[:0], "y": y[:0]}
        compared = (method.model, x, y, reference["x"].to(x.device), reference["y"].to(y.device))
        if not self.options.gss_batch_gate:
            return {"score": gradient_scores(*compared)}
        scores, batch_score = gradient_scores_with_batch(*compared)
        if len(reference["x"]) == 0:
            batch_score = FIRST_BATCH_SCORE
        return {"score": scores, "batch_score": torch.tensor(batch_score, dtype=torch.float64)}

    def on_task_start(self) -> None:
        buffer = self.method.buffer
        full = buffer.capacity > 0 and buffer.is_full
        self.task_start = (buffer.seen, buffer.replaced) if full else None

    def on_task_end(self, task_id: int | None) -> None:
        """Warn when the memory, full from the task's start, took none of the task's samples:
        every new gradient (and, batch-gated, every batch's) was aligned with a compared one, so
        the memory stays as it was, whatever the stream brings (as with many compared samples)."""
        start, self.task_start = self.task_start, None
        buffer, options = self.method.buffer, self.options
        if start is None or buffer.replaced != start[1]:
            return
        offered = buffer.seen - start[0]
        if offered > 0:
            task = "" if task_id is None else f" {task_id}"
            warnings.warn(
                f"gss: the full buffer took none of the {offered:,} samples of task{task}: every "
                f"{'batch' if options.gss_batch_gate else 'sample'}'s gradient was aligned with one of the "
                f"{options.gss_compared} stored samples' it was compared with, so the memory does not change as the "
                "stream does (a smaller --gss_compared compares with fewer)",
                stacklevel=3,
            )

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class ASERReplacement:
    """The aser policy's choice of the stored sample each new one replaces (`slots`), with draws
    of its own (checkpointed as "aser_draws")."""

    def __init__(self, method: Any, options: ASEROptions) -> None:
        self.method, self.options = method, options
        # the draws of the stored samples that judge and compete
        self.draws = torch.Generator().manual_seed(method.run.worker_seed(ASER_DRAWS_SEED))

    def extras(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"slot": self.slots(x, y)}

    def slots(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The stored sample each of (x, y) replaces, or -1 (`sylvan.methods.parts.shapley`). The
        first samples fill the free slots; each later one competes, with `aser_samples_per_class`
        x the classes stored samples drawn at random, by the sum of its KNN Shapley values (K =
        `aser_neighbours`, in the features of the network in evaluation mode) for
        `aser_samples_per_class` stored samples of each class and the new samples of classes the
        memory nearly lacks; the best of them stay. Samples beyond the free slots of the batch
        that fills the buffer compete with the samples stored before it."""
        method = self.method
        buffer, count = method.buffer, len(y)
        held = len(buffer)
        filling = min(count, buffer.capacity - held)
        slots = torch.full((count,), -1, dtype=torch.long)
        if filling == count or held == 0:
            return slots
        stored_labels = buffer.gather(np.arange(held), names=("y",))["y"].cpu()
        new_labels = y[filling:].cpu()
        judges, competing, new_judges = update_sets(
            stored_labels, new_labels, buffer.capacity, method.run.num_classes, self.options.aser_samples_per_class,
            self.draws,
        )
        stored_x = buffer.gather(torch.cat([judges, competing]).numpy(), names=("x",))["x"].to(x.device)
        features = method.stored_features(torch.cat([stored_x, x[filling:]]))
        judged, competed = len(judges), len(competing)
        values = knn_shapley_values(
            torch.cat([features[:judged], features[judged + competed:][new_judges.to(x.device)]]),
            torch.cat([stored_labels[judges], new_labels[new_judges]]).to(x.device),
            features[judged:],
            torch.cat([stored_labels[competing], new_labels]).to(x.device),
            self.options.aser_neighbours,
        ).sum(0)
        slots[filling:] = replacement_slots(values, competing, count - filling)
        return slots

    def on_task_start(self) -> None:
        pass

    def on_task_end(self, task_id: int | None) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"aser_draws": self.draws.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.draws.set_state(state["aser_draws"])


def admission_for(method: Any) -> GSSAdmission | ASERReplacement | None:
    """The part `method`'s `--buffer_policy` needs from the model, or None."""
    if needs_scores(method.buffer_policy):
        return GSSAdmission(method, method.policy_options())
    if needs_slots(method.buffer_policy):
        return ASERReplacement(method, method.policy_options())
    return None
