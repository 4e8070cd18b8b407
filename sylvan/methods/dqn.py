"""`dqn`: deep Q-learning (Mnih et al., "Human-level control through deep reinforcement
learning", Nature 2015) with its replay memory taken from `sylvan.buffers`.

Each environment step stores the transition in the memory; every `--train_frequency` steps, a
minibatch of `--replay_size` stored transitions takes one gradient step of the Huber loss
between Q(s, a) and r + gamma * max_a' Q_target(s', a'); the target network copies the
Q-network every `--target_update_interval` steps. Exploration is epsilon-greedy, epsilon
decaying linearly over the first `--exploration_steps` steps of the stream. The replay memory
(`fifo`, DQN's own, or `reservoir`) and the interaction loop are `OffPolicyMethod`'s. Needs no
task boundaries, so it runs on every reinforcement-learning setting whose environment has
discrete actions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from sylvan.methods.core.agent import OutputDistribution
from sylvan.methods.core.off_policy import OffPolicyMethod
from sylvan.methods.parts.actor_critic import QValues
from sylvan.models import MLP


@dataclass
class DQN(OffPolicyMethod):
    """Deep Q-network with a target network, epsilon-greedy exploration and a replay memory."""

    name: ClassVar[str] = "dqn"
    action_spaces: ClassVar[tuple[str, ...]] = ("discrete",)  # it scores each action
    acting_networks: ClassVar[tuple[str, ...]] = ("q_network",)

    target_update_interval: int = 250  # environment steps between copies of the Q-network into the target
    epsilon_start: float = 1.0  # probability of a random action at the first step
    epsilon_end: float = 0.05  # probability of a random action after --exploration_steps
    exploration_steps: int = 5_000  # environment steps over which epsilon decays linearly
    hidden_size: int = 128  # width of the Q-network's two hidden layers
    max_grad_norm: float = 10.0  # gradients are clipped to this norm

    state_attributes: ClassVar[tuple[str, ...]] = ("q_network", "target_network", "optimizer")

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "max_grad_norm", strict=True)
        self.require_at_least(1, "target_update_interval", "exploration_steps", "hidden_size")
        self.require_in(0, 1, "epsilon_start", "epsilon_end")

    # ----- set-up -------------------------------------------------------------------------------

    def configure(self, run: Any) -> None:
        super().configure(run)
        torch.manual_seed(run.seed)
        q_network = MLP(run.observation_shape, run.num_actions, (self.hidden_size,) * 2).to(self.device)
        target_network = copy.deepcopy(q_network).requires_grad_(False)
        optimizer = torch.optim.Adam(q_network.parameters(), lr=self.lr, foreach=True)
        # trained at the run's precision: forward passes under autocast, the loss scaled under 16-mixed
        self.q_network, self.optimizer = self.run.setup(q_network, optimizer)
        self.target_network = self.run.setup(target_network)
        self.num_actions = run.num_actions

    # ----- acting -------------------------------------------------------------------------------

    @property
    def epsilon(self) -> float:
        fraction = min(1.0, self.steps / self.exploration_steps)
        return self.epsilon_start + fraction * (self.epsilon_end - self.epsilon_start)

    def act(self, observation: np.ndarray) -> int:
        """Epsilon-greedy: a uniformly random action with probability epsilon, else the best."""
        if torch.rand((), generator=self.generator).item() < self.epsilon:
            return int(torch.randint(self.num_actions, (), generator=self.generator))
        x = torch.from_numpy(np.asarray(observation, dtype=np.float32)[None]).to(self.device)
        with torch.no_grad():
            return int(self.model(x).argmax(1))

    def greedy_outputs(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x.to(self.device)).cpu()

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"q_network": self.q_network.module}

    def output_distribution(self, network: str) -> OutputDistribution:
        """Every action's Q-value of the stored observation (a Gaussian of unit variance about each)."""
        return QValues(self.q_network.module)

    # ----- learning -----------------------------------------------------------------------------

    def after_env_step(self) -> None:
        if self.steps % self.target_update_interval == 0:
            self.target_network.load_state_dict(self.q_network.state_dict())

    def q_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The Huber loss between Q(s, a) and r + gamma * max_a' Q_target(s', a') on `batch`."""
        q_values = self.q_network(batch["obs"]).gather(1, batch["action"].unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            next_values = self.target_network(batch["next_obs"]).max(1).values
            targets = batch["reward"] + self.gamma * (1.0 - batch["terminal"]) * next_values
        return F.smooth_l1_loss(q_values, targets)

    def loss_of(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.q_loss(batch)

    def learn(self) -> torch.Tensor:
        """One gradient step on a minibatch drawn from the replay memory; its loss."""
        batch = self.part_batch(self.replay.take(self.replay_size))
        loss = self.part_loss("q_network", self.q_loss(batch), batch)
        self.gradient_step("q_network", loss, self.optimizer, clip=(self.q_network, self.max_grad_norm))
        self.gradient_steps += 1
        return loss.detach()
