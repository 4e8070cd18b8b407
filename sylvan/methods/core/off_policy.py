"""The base of reinforcement-learning methods that learn from a replay memory of transitions
(`dqn`, `sac`): the interaction loop, the memory, and their part of a checkpoint.

The setting hands `fit` a step budget; the loop (on the engine's trigger points: `Engine.loop`,
whose "act" and "learn" steps the callbacks, the training log, the progress bar and the FLOP count
see) asks the method for an action (`act`), steps the environment, stores the transition
(observation, action, reward, next observation, terminal) in the memory, takes a gradient step
(`learn`) where its schedule says so (`learning_due`) and calls `after_env_step` (target
updates). The memory is a `sylvan.buffers` buffer, which is where continual RL meets rehearsal:
`fifo` holds only the latest transitions, and so forgets the earlier tasks' dynamics as the
stream moves on; `reservoir` keeps a uniform sample of the whole stream (Isele & Cosgun,
"Selective Experience Replay for Lifelong Learning", AAAI 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from sylvan.buffers import make_buffer
from sylvan.buffers.base import batch_of_one
from sylvan.buffers.channel import LocalReplay
from sylvan.errors import ConfigurationError
from sylvan.methods.core.agent import Agent
from sylvan.settings.base import Setting
from sylvan.settings.continual_rl import ContinualRLSetting

# buffer policies that need no class labels: a transition has none
TRANSITION_POLICIES = ("fifo", "reservoir")


@dataclass
class OffPolicyMethod(Agent):
    """Acts, stores every transition, and learns from minibatches of stored transitions."""

    target_setting: ClassVar[type[Setting]] = ContinualRLSetting

    lr: float = 1e-3  # Adam learning rate
    gamma: float = 0.99  # discount factor
    buffer_size: int = 50_000  # transitions the replay memory holds
    # which transitions the replay memory keeps: fifo (the most recent) or reservoir (a uniform
    # sample of the whole stream)
    buffer_policy: str = "fifo"
    replay_size: int = 64  # transitions per gradient step
    learning_starts: int = 1_000  # environment steps before the first gradient step
    train_frequency: int = 4  # environment steps per gradient step
    # at the start of each task after the first, empty the replay memory and start the optimizers afresh
    # (Continual World's protocol; not with a reservoir memory, whose point is to keep the past tasks')
    reset_on_task: bool = False

    state_attributes: ClassVar[tuple[str, ...]] = ("buffer", "generator", "steps", "gradient_steps")

    def validate(self) -> None:
        self.require_at_least(0, "lr", strict=True)
        self.require_at_least(0, "learning_starts")
        self.require_at_least(1, "buffer_size", "replay_size", "train_frequency")
        self.require_in(0, 1, "gamma")
        if self.buffer_policy not in TRANSITION_POLICIES:
            raise ConfigurationError(
                f"--buffer_policy {self.buffer_policy!r}: a transition has no class label to balance by; "
                f"{self.name}'s replay memory is one of {', '.join(TRANSITION_POLICIES)}"
            )
        if self.reset_on_task and self.buffer_policy == "reservoir":
            raise ConfigurationError("--reset_on_task empties the replay memory at each task, and a reservoir memory "
                                     "is there to keep the earlier tasks' transitions: leave one of them out")

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.device = self.run.engine.device  # where the run's engine trains (`--accelerator`)
        self.buffer = make_buffer(self.buffer_policy, self.buffer_size, device=str(self.device), seed=run.seed)
        self.replay = LocalReplay(self.buffer)  # the agent's transitions
        self.generator = torch.Generator().manual_seed(run.seed)
        self.steps = 0  # environment steps trained on, over the whole stream
        self.gradient_steps = 0

    # ----- what a method adds -------------------------------------------------------------------

    def act(self, observation: np.ndarray) -> Any:
        """The action to take in the training environment."""
        raise NotImplementedError

    def learn(self) -> torch.Tensor:
        """One gradient step on a minibatch drawn from the replay memory; its loss."""
        raise NotImplementedError

    def sample_transitions(self, count: int) -> dict[str, torch.Tensor]:
        return self.replay.take(count)

    def learning_due(self) -> bool:
        """Whether a gradient step follows the transition just stored (`self.steps` counts it)."""
        return self.steps > self.learning_starts and self.steps % self.train_frequency == 0

    def after_env_step(self) -> None:
        """Called after each stored transition and the gradient step it was due, if any (a target
        network's update)."""

    def on_task_start(self, task_id: int | None) -> None:
        super().on_task_start(task_id)
        if self.reset_on_task and self.replay.seen:  # a task after the first
            self.buffer = make_buffer(self.buffer_policy, self.buffer_size, device=str(self.device), seed=self.run.seed)
            self.replay = LocalReplay(self.buffer)
            for name in self.declared_state():
                optimizer = getattr(getattr(self, name), "optimizer", getattr(self, name))
                if isinstance(optimizer, torch.optim.Optimizer):
                    optimizer.state.clear()  # Adam's moments and step counts, as a new optimizer has them

    # ----- the loop and the memory --------------------------------------------------------------

    def fit(self, train_data: Any, val_data: Any = None) -> None:
        """Interact with the environment `train_data` (a step budget) until its steps are spent."""
        env = train_data
        observation, _ = env.reset()
        with self.run.engine.loop(env.steps_left, "act", self.run.fit_callbacks(), env.first_step + env.steps) as loop:
            while not env.exhausted:
                with loop.step("act"):
                    action = self.act(observation)
                next_observation, reward, terminated, truncated, _ = env.step(action)
                self.remember(observation, action, float(reward), next_observation, terminated)
                self.steps += 1
                if self.learning_due():
                    with loop.step("learn") as step:
                        step.loss = self.learn()
                self.after_env_step()
                observation = next_observation
                if (terminated or truncated) and not env.exhausted:
                    observation, _ = env.reset()

    def remember(self, observation: Any, action: Any, reward: float, next_observation: Any, terminated: bool) -> None:
        """Store one transition (written into the memory in place, no tensors made unless a part
        takes it). A truncated episode (time limit, budget) is not terminal: its next state still
        has a value."""
        row = self.transition_row(observation, action, reward, next_observation, terminated)
        self.replay.insert_row(row)
        if self._hooks("agent_transition"):
            self.part_transition(batch_of_one(row))

    def stored_example(self) -> dict[str, torch.Tensor]:
        """A transition of the run's environments (zeros) as the memory stores it: what its
        storage is planned from before the first step (`sylvan.run.budget`)."""
        observation = np.zeros(self.run.observation_shape, dtype=np.float32)
        discrete = self.run.action_space_kind == "discrete"
        action = 0 if discrete else np.zeros(self.run.num_actions, dtype=np.float32)
        return self.transition(observation, action, 0.0, observation, False)
