"""`fdr`: function distance regularization (Benjamin, Rolnick & Kording, "Measuring and
Regularizing Networks in Function Space", ICLR 2019), in the form the DER paper compared it
(Buzzega et al., NeurIPS 2020).

How it follows its paper, and what it adds: docs/method-notes.md, section fdr."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.func import functional_call

from sylvan.buffers import ReservoirBuffer
from sylvan.buffers.channel import LocalReplay
from sylvan.methods.core.base import joined_state
from sylvan.methods.core.episodic_memory import (
    flat_gradient,
    require_share_per_task,
    write_flat_gradient,
)
from sylvan.methods.core.supervised import Batch, SupervisedMethod, evaluating
from sylvan.minibatches import float_inputs
from sylvan.settings.base import Setting
from sylvan.settings.class_incremental import ClassIncrementalSetting

# seed offsets of the worker's own draws (`Workers.seed`; the memory's draws use offset 0):
# the current task's reservoir, and which samples of a finished task are kept when its share shrinks
TASK_SAMPLES_SEED, SHARES_SEED = 1, 10_001


def function_distance(outputs: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
    """The mean over samples of the L2 distance between the softmax of `outputs` and that of
    the `stored` outputs (both logits, one row per sample)."""
    return (F.softmax(outputs.float(), dim=1) - F.softmax(stored.float(), dim=1)).norm(dim=1).mean()


@dataclass
class FDR(SupervisedMethod):
    """Function distance regularization: a second step per minibatch that keeps the network's
    outputs on a memory of finished tasks where they were when each task ended."""

    name: ClassVar[str] = "fdr"
    target_setting: ClassVar[type[Setting]] = ClassIncrementalSetting

    lr: float = 0.03  # learning rate
    buffer_size: int = 200  # memory, in samples, shared equally among the tasks finished so far
    replay_size: int = 128  # r: memory samples behind each step's function distance
    alpha: float = 1.0  # weight of the function-distance step (the DER paper's code: 1)

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "buffer_size", "alpha")
        self.require_at_least(1, "replay_size")

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        require_share_per_task(self.name, self.buffer_size, setting.nb_tasks)

    def configure(self, run: Any) -> None:
        self.validate_for(run)
        super().configure(run)
        self.tasks_done = 0  # finished tasks, whose samples the memory shares
        self.memory: LocalReplay | None = None  # a channel around a buffer made anew at each task's end
        self.memory = self._memory(())
        self._task_samples = self._task_reservoir()
        self.last_distance: torch.Tensor | None = None  # the function distance of the last step

    def _memory(self, parts: tuple[dict[str, torch.Tensor], ...]) -> LocalReplay:
        """A memory holding exactly the samples of `parts` (they fit: at most buffer_size in all),
        whose draws go on from the previous memory's: one stream of draws over the run."""
        seed = self.run.workers.seed()
        memory = LocalReplay(ReservoirBuffer(self.buffer_size, seed=seed, pixel_fields=self.pixel_fields))
        if self.memory is not None:
            memory.continue_draws(self.memory)
        parts = tuple(part for part in parts if len(part["y"]))
        if parts:
            memory.insert({name: torch.cat([part[name] for part in parts]) for name in parts[0]})
        return memory

    def _task_reservoir(self) -> LocalReplay:
        """An empty reservoir of the share the current task will have when it ends."""
        share = self.buffer_size // (self.tasks_done + 1)
        seed = self.run.workers.seed(TASK_SAMPLES_SEED + self.tasks_done)
        return LocalReplay(ReservoirBuffer(share, seed=seed, pixel_fields=self.pixel_fields))

    def on_task_start(self, task_id: int | None) -> None:
        super().on_task_start(task_id)
        self._task_samples = self._task_reservoir()

    def training_step(self, batch: Batch) -> torch.Tensor:
        self._task_samples.insert(self.stored_fields(batch))
        return F.cross_entropy(self.learner(batch.x), batch.y)

    def after_backward(self) -> None:
        if not len(self.memory) or self.alpha == 0:
            return
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        stepped = self.sgd_stepped_weights(requires_grad=True)  # where the minibatch's SGD step leads
        replay = self.memory.take(self.replay_size)
        device = parameters[0].device
        x = self.augment_inputs(replay["x"].to(device))
        distance = function_distance(functional_call(self.model, stepped, (x,)), replay["logits"].to(device))
        gradients = self.gradients(distance, list(stepped.values()))
        correction = self.run.workers.mean(flat_gradient(gradients, parameters))
        current = flat_gradient([p.grad for p in parameters], parameters)
        write_flat_gradient(parameters, current.add_(correction, alpha=self.alpha))
        self.last_distance = distance.detach()  # a tensor: reading it would make the host wait for the device

    def on_task_end(self, task_id: int | None) -> None:
        super().on_task_end(task_id)
        self.tasks_done += 1
        share = self.buffer_size // self.tasks_done
        kept = []
        if len(self.memory):  # each finished task keeps a random `share` of its samples
            stored = self.memory.stored(pixels=True)
            generator = torch.Generator().manual_seed(self.run.workers.seed(SHARES_SEED + self.tasks_done))
            for task in stored["task"].unique().tolist():
                rows = (stored["task"] == task).nonzero().flatten().cpu()
                rows = rows[torch.randperm(len(rows), generator=generator)[:share]].to(stored["task"].device)
                kept.append({name: values.index_select(0, rows) for name, values in stored.items()})
        if len(self._task_samples):
            new = self._task_samples.stored(pixels=True)
            with evaluating(self.model) as model:
                device = next(model.parameters()).device
                logits = torch.cat([
                    model(float_inputs(chunk).to(device)) for chunk in new["x"].split(1024)
                ]).float()
            task = torch.full((len(new["y"]),), self.tasks_done - 1, dtype=torch.long)
            kept.append({**new, "logits": logits.to(new["y"].device), "task": task.to(new["y"].device)})
        self.memory = self._memory(tuple(kept))
        self._task_samples = self._task_reservoir()

    def state_dict(self) -> dict[str, Any]:
        return joined_state(super().state_dict(), memory=self.memory.buffer.state_dict(), tasks_done=self.tasks_done)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.tasks_done = state["tasks_done"]
        self.memory = self._memory(())
        self.memory.buffer.load_state_dict(state["memory"])
        self._task_samples = self._task_reservoir()
