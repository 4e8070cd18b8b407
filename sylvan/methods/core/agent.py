"""The base of reinforcement-learning agents (`dqn`, `sac`): a method that learns in an
environment by an algorithm of its own, and the learner continual-learning methods apply their
parts to on the reinforcement-learning branch (`sylvan.methods.core.on_agent`).

What a part sees of an agent, and where the agent calls it:

- `networks()`: the networks it trains, by name; `protected_networks()`: those a part acts on (the
  ones it acts with, `acting_networks`; all of them where the pair says `--regularize_critic`);
- each stored transition (`remember`): the part's `agent_transition(transition)`;
- each minibatch it learns from (`part_batch`): the part's `agent_batch(batch)` may join transitions
  to it (replay);
- each loss it minimizes, by network (`part_loss`): the part's `agent_loss(network, batch)` term is
  added (a penalty, a cloned policy's divergence);
- each gradient step, by network (`gradient_step`): the part's `agent_gradients(network)` between
  the backward pass and the optimizer's step (masks, projections), `agent_stepped(network)` after it;
- `loss_of(network, batch)`: a network's loss on other transitions (a memory's reference gradient);
- evaluation (`predict`): the part's `agent_view(task_id)` context, where a task sees weights of its
  own (PackNet);
- the task hooks, as on the supervised branch (`Method.on_task_end`), and `current_task`.

With no part, each of these is the agent's own computation unchanged: an agent alone trains
exactly as it would without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from sylvan.buffers.base import batch_of_one
from sylvan.methods.core.base import Method
from sylvan.run.engine import StepRecord
from sylvan.settings.base import Setting
from sylvan.settings.continual_rl import ContinualRLSetting

Transitions = dict[str, torch.Tensor]


class OutputDistribution(nn.Module):
    """A view of one of an agent's networks whose forward maps a batch of transitions (a dict of
    tensors) to (mean, log standard deviation or None), each (batch, outputs): what an importance
    is computed over. Its parameters are the network's, under the prefix "network."."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, transitions: Transitions) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


@dataclass
class Agent(Method):
    """An agent: acts in the environment the setting hands `fit`, learns by its algorithm, and
    takes the parts of the continual-learning method it is the learner of."""

    target_setting: ClassVar[type[Setting]] = ContinualRLSetting
    is_agent: ClassVar[bool] = True
    acting_networks: ClassVar[tuple[str, ...]] = ()  # the networks `predict` uses (the policy)
    # what it keeps of its own (the current task) is set again at every task's start
    checkpoint_complete: ClassVar[bool] = True

    # ----- what an agent defines -------------------------------------------------------------------

    def networks(self) -> dict[str, nn.Module]:
        """The networks it trains by gradient descent, by name (float32 modules, not the run's
        wrappers)."""
        raise NotImplementedError

    def output_distribution(self, network: str) -> OutputDistribution:
        """The view of the network `network` that importances are computed over
        (`sylvan.methods.parts.agent_importance`)."""
        raise NotImplementedError

    def sample_transitions(self, count: int) -> Transitions:
        """`count` transitions drawn from its replay memory (fields "obs", "action", "reward",
        "next_obs", "terminal"), on its device."""
        raise NotImplementedError

    def loss_of(self, network: str, batch: Transitions) -> torch.Tensor:
        """The loss the agent minimizes for `network` on the transitions `batch`."""
        raise NotImplementedError

    def greedy_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """What `predict` returns for observations `x` with the weights as they are: a score per
        action, or the action."""
        raise NotImplementedError

    @property
    def environment_copies(self) -> int:
        """Copies of the training environment it acts in at once (a `VectorBudget` where more than
        one): its `n_envs` option, where it has one (`ppo`)."""
        return getattr(self, "n_envs", 1)

    def validate_for(self, setting: Any) -> None:
        """Refuse copies of the environment (`--n_envs`) that cannot share the setting's steps."""
        if self.environment_copies > 1:
            from sylvan.settings.env_copies import check_copies

            check_copies(setting, self.environment_copies)

    @property
    def model(self) -> nn.Module:
        """The network it acts with, in float32 (what the run's memory accounting calls its network)."""
        return self.networks()[self.acting_networks[0]]

    @staticmethod
    def transition_row(observation: Any, action: Any, reward: float, next_observation: Any,
                       terminated: bool) -> dict[str, np.ndarray]:
        """One transition as NumPy values of the dtypes the memory stores (observations, reward
        and terminal flag in float32), without a batch axis: what `ReplayChannel.insert_row` takes."""
        return {
            "obs": np.asarray(observation, dtype=np.float32),
            "action": np.asarray(action),
            "reward": np.asarray(reward, dtype=np.float32),
            "next_obs": np.asarray(next_observation, dtype=np.float32),
            "terminal": np.asarray(terminated, dtype=np.float32),
        }

    @staticmethod
    def transition(observation: Any, action: Any, reward: float, next_observation: Any,
                   terminated: bool) -> dict[str, torch.Tensor]:
        """One transition as the memory stores it: fields of one row each (made in NumPy and
        viewed by torch: a third of the cost of building each tensor, at every environment step)."""
        return batch_of_one(Agent.transition_row(observation, action, reward, next_observation, terminated))

    # ----- the parts' hooks ----------------------------------------------------------------------

    @property
    def regularizes_all_networks(self) -> bool:
        """Whether parts act on every network it trains (`--regularize_critic`), not only on those
        it acts with (Continual World's default)."""
        return self.__dict__.get("_all_networks", False)

    @regularizes_all_networks.setter
    def regularizes_all_networks(self, value: bool) -> None:
        self.__dict__["_all_networks"] = value

    def protected_networks(self) -> dict[str, nn.Module]:
        """The networks a continual-learning method's part acts on."""
        networks = self.networks()
        if self.regularizes_all_networks:
            return networks
        return {name: module for name, module in networks.items() if name in self.acting_networks}

    @property
    def current_task(self) -> int | None:
        """The label of the task training now (None where the setting gives none, or between tasks)."""
        return self.__dict__.get("_current_task")

    def on_task_start(self, task_id: int | None) -> None:
        super().on_task_start(task_id)
        self.__dict__["_current_task"] = task_id

    def _hooks(self, name: str) -> list[Any]:
        return [getattr(part, name) for part in self.parts.values() if hasattr(part, name)]

    def part_transition(self, transition: Transitions) -> None:
        """Show the parts a transition just stored."""
        for hook in self._hooks("agent_transition"):
            hook(transition)

    def part_batch(self, batch: Transitions) -> Transitions:
        """The minibatch to learn from: `batch`, with what parts join to it."""
        for hook in self._hooks("agent_batch"):
            batch = hook(batch)
        return batch

    def part_loss(self, network: str, loss: torch.Tensor, batch: Transitions | None = None) -> torch.Tensor:
        """`loss` (of the network `network`, on `batch`) plus what each part adds to it; `loss`
        itself where none adds anything."""
        for hook in self._hooks("agent_loss"):
            extra = hook(network, batch)
            if extra is not None:
                loss = loss + extra.to(loss.dtype)
        return loss

    @staticmethod
    def learning_step(loop: Any = None) -> Any:
        """The context of one gradient step: a `learn` step of `loop` (a method's loop: the run's
        callbacks and FLOP sampling see each), or where there is none (a part's retraining after a
        task), a bare record of its loss."""
        return loop.step("learn") if loop is not None else nullcontext(StepRecord())

    def gradient_step(self, network: str | tuple[str, ...], loss: torch.Tensor, optimizer: Any,
                      clip: tuple[nn.Module, float] | None = None) -> None:
        """One optimizer step of `network` (or of several networks one optimizer trains) on
        `loss`: the backward pass at the run's precision, the parts' `agent_gradients`, the
        clipping `clip` = (module, most norm) where given, the step, the parts' `agent_stepped`."""
        names = (network,) if isinstance(network, str) else network
        optimizer.zero_grad(set_to_none=True)
        self.run.backward(loss)
        for hook in self._hooks("agent_gradients"):
            for name in names:
                hook(name)
        if clip is not None:
            self.run.clip_gradients(clip[0], optimizer, clip[1])
        optimizer.step()
        for hook in self._hooks("agent_stepped"):
            for name in names:
                hook(name)

    def predict(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        """`greedy_outputs`, under each part's view of the task (`agent_view`) where the task
        labels are given and a part has one."""
        views = self._hooks("agent_view")
        if not views or task_labels is None:
            return self.greedy_outputs(x)
        outputs: torch.Tensor | None = None
        for task in task_labels.unique().tolist():
            rows = (task_labels == task).nonzero().squeeze(1)
            with self._views(views, int(task)):
                found = self.greedy_outputs(x[rows.to(x.device)])
            outputs = found.new_zeros((len(x), *found.shape[1:])) if outputs is None else outputs
            outputs[rows.to(outputs.device)] = found
        return outputs

    @contextmanager
    def _views(self, views: list[Any], task: int) -> Iterator[None]:
        with ExitStack() as stack:
            for view in views:
                stack.enter_context(view(task))
            yield
