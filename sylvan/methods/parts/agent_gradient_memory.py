"""A-GEM's part on an agent (Chaudhry et al., ICLR 2019, as Continual World runs it on SAC): an
episodic memory of `per_task` transitions of each finished task, and each gradient step of a
protected network projected so that it does not increase that network's loss on the memory.

The transitions of the task training now are offered to a reservoir of `per_task` (a uniform
sample of the task's transitions, `sylvan.buffers`), which joins the memory at the task's end.
At each step of a protected network, the gradient g of its loss is compared with the gradient
g_ref of the agent's loss of that network on `batch_size` transitions drawn from the memory
(`Agent.loss_of`); where g . g_ref < 0, g <- g - (g . g_ref / g_ref . g_ref) g_ref. The projection
is per network (Continual World projects the actor's and the critic's gradients together).
"""

from __future__ import annotations

from typing import Any

import torch

from sylvan.buffers import make_buffer
from sylvan.buffers.channel import LocalReplay
from sylvan.methods.core.episodic_memory import flat_gradient, project_conflicting, write_flat_gradient

Transitions = dict[str, torch.Tensor]


class AgentGradientMemory:
    """A part: the episodic memory of the finished tasks and this task's reservoir."""

    def __init__(self, agent: Any, per_task: int, batch_size: int, seed: int) -> None:
        self.agent, self.per_task, self.batch_size, self.seed = agent, per_task, batch_size, seed
        self.tasks_done = 0
        self.current = self.new_reservoir()
        self.memory: Transitions | None = None  # the finished tasks' transitions, on the CPU
        self.generator = torch.Generator().manual_seed(seed)
        self.projections = 0  # steps whose gradient conflicted with the memory's

    def new_reservoir(self) -> LocalReplay:
        return LocalReplay(make_buffer("reservoir", self.per_task, seed=self.seed + 1 + self.tasks_done))

    def agent_transition(self, transition: Transitions) -> None:
        self.current.insert(transition)

    def on_task_end(self) -> None:
        stored = {name: value.cpu() for name, value in self.current.buffer.get_all().items()}
        if stored:
            self.memory = stored if self.memory is None else {
                name: torch.cat([self.memory[name], value]) for name, value in stored.items()}
        self.tasks_done += 1
        self.current = self.new_reservoir()

    def reference_batch(self) -> Transitions:
        count = len(next(iter(self.memory.values())))
        rows = torch.randint(count, (min(self.batch_size, count),), generator=self.generator)
        return {name: value[rows].to(self.agent.device) for name, value in self.memory.items()}

    def agent_gradients(self, network: str) -> None:
        if self.memory is None or network not in self.agent.protected_networks():
            return
        module = self.agent.networks()[network]
        parameters = [p for p in module.parameters() if p.grad is not None]
        reference = flat_gradient(torch.autograd.grad(self.agent.loss_of(network, self.reference_batch()),
                                                      parameters, allow_unused=True), parameters)
        gradient = flat_gradient([p.grad for p in parameters], parameters)
        reference = reference.to(gradient.dtype)
        if torch.dot(gradient, reference) >= 0:
            return
        self.projections += 1
        write_flat_gradient(parameters, project_conflicting(gradient, reference))

    def state_dict(self) -> dict[str, Any]:
        return {"tasks_done": self.tasks_done, "current": self.current.buffer.state_dict(),
                "memory": self.memory, "generator": self.generator.get_state(), "projections": self.projections}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tasks_done, self.memory, self.projections = state["tasks_done"], state["memory"], state["projections"]
        self.current = self.new_reservoir()
        self.current.buffer.load_state_dict(state["current"])
        self.generator.set_state(state["generator"])
