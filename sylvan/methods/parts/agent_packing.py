"""PackNet's part on an agent (Mallya & Lazebnik, CVPR 2018, as Continual World runs it on SAC):
each task keeps weights of its own in the agent's protected networks (the policy; dqn's
Q-network), and a task is evaluated with its own and the earlier tasks' weights alone.

A task trains the weights no earlier task kept (the others held: their gradient zeroed and their
value put back after each step, `HeldWeights`); biases train in the first task only. At its end,
but after the last task, it keeps the largest of the weights it trained (1 / the tasks left, or
1 - `prune_ratio`), sets the others to zero for the tasks to come, and retrains the kept ones for
`retrain_steps` gradient steps of the agent on its replay memory. Evaluated on task t, the
networks see the weights of the tasks up to t's (`agent_view`). Every weight of two dimensions or
more is shared out, the output layer's too: an agent has one output layer for every task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from sylvan.methods.parts.held_weights import HeldWeights
from sylvan.methods.parts.weight_owners import FREE, claim, largest_share, owners_on_device, visible_weights


def free_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """owner[name] for every weight tensor of two dimensions or more of `module`, all free."""
    return {name: torch.full(p.shape, FREE, dtype=torch.int16) for name, p in module.named_parameters() if p.dim() >= 2}


class AgentPacking:
    """A part: the owners of the agent's protected networks' weights, and which stage each task
    label trained in."""

    def __init__(self, agent: Any, prune_ratio: float | None, retrain_steps: int) -> None:
        self.agent, self.prune_ratio, self.retrain_steps = agent, prune_ratio, retrain_steps
        self.stage = 0
        self.owners = {network: free_weights(module) for network, module in agent.protected_networks().items()}
        self.task_stage: dict[int, int] = {}
        self.held = {network: HeldWeights() for network in self.owners}
        self.retraining = False
        self.stale = False  # restored from a checkpoint: hold again before the next step
        self.hold()

    def hold(self) -> None:
        """Hold what this stage does not train: the earlier stages' weights (retraining: every
        weight but this stage's own), and the biases after the first stage."""
        for network, module in self.agent.protected_networks().items():
            owners = owners_on_device(self.owners[network], module)
            masks = {}
            for name, parameter in module.named_parameters():
                if name in owners:
                    masks[parameter] = owners[name] != (self.stage if self.retraining else FREE)
                elif self.stage > 0:
                    masks[parameter] = torch.ones_like(parameter, dtype=torch.bool)
            self.held[network].hold(masks)

    def agent_gradients(self, network: str) -> None:
        if self.stale:  # the weights the checkpoint restored are the ones to hold (before this step)
            self.stale = False
            self.hold()
        if network in self.held:
            self.held[network].zero_gradients()

    def agent_stepped(self, network: str) -> None:
        if network in self.held:
            self.held[network].restore()

    def on_task_end(self) -> None:
        task = self.agent.current_task
        if task is not None:
            self.task_stage[task] = self.stage
        networks = self.agent.protected_networks()
        stages_left = self.agent.run.stage_count - self.stage
        keep = 1.0 / stages_left if self.prune_ratio is None else 1.0 - self.prune_ratio
        if stages_left <= 1 or keep >= 1.0:
            for network, module in networks.items():
                claim(self.owners[network], module, self.stage, lambda free, weights: free)
        else:
            with torch.no_grad():
                for network, module in networks.items():
                    claim(self.owners[network], module, self.stage, largest_share(keep))
                    parameters = dict(module.named_parameters())
                    for name, owner in self.owners[network].items():
                        parameters[name].mul_((owner != FREE).to(parameters[name].dtype))
            if self.retrain_steps:
                self.retraining = True
                self.hold()
                for _ in range(self.retrain_steps):
                    self.agent.learn()
                self.retraining = False
        self.stage += 1
        self.hold()

    @contextmanager
    def agent_view(self, task: int) -> Iterator[None]:
        """The networks as task `task` sees them: its stage's weights and the earlier ones' (a
        task not trained yet: every weight so far)."""
        stage = self.task_stage.get(task, self.stage)
        saved = []
        with torch.no_grad():
            for network, module in self.agent.protected_networks().items():
                parameters = dict(module.named_parameters())
                for name, weights in visible_weights(self.owners[network], module, stage, self.stage).items():
                    saved.append((parameters[name], parameters[name].detach().clone()))
                    parameters[name].copy_(weights)
        try:
            yield
        finally:
            with torch.no_grad():
                for parameter, values in saved:
                    parameter.copy_(values)

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "task_stage": dict(self.task_stage),
                "owners": {network: {name: o.cpu().clone() for name, o in owners.items()}
                           for network, owners in self.owners.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage, self.task_stage, self.owners = state["stage"], dict(state["task_stage"]), state["owners"]
        self.stale = True  # the networks' weights are restored after the parts
