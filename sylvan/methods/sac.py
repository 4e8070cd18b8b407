"""`sac`: soft actor-critic for continuous actions (Haarnoja et al., "Soft Actor-Critic Algorithms and
Applications", 2018), with its replay memory taken from `sylvan.buffers`.

A Gaussian policy squashed by tanh into the action bounds; two Q-networks, each regressed on r + gamma * (min of
the two target networks' Q(s', a') - alpha * log pi(a'|s')), a' ~ pi; the policy maximizes min Q(s, a) - alpha *
log pi(a|s); alpha is tuned so that the policy's entropy stays near -(action size); the target networks follow
the Q-networks by Polyak averaging. Before `--learning_starts` steps, actions are uniform in the bounds.
Evaluation acts with the mean. The replay memory (`fifo` or `reservoir`) and the interaction loop are
`OffPolicyMethod`'s, as for `dqn`. Runs on every RL setting with continuous actions; `--multihead`: a head per
task, where tasks are labelled."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from sylvan.methods.core.agent import OutputDistribution
from sylvan.methods.core.off_policy import OffPolicyMethod
from sylvan.methods.parts.actor_critic import PolicyGaussian, SquashedGaussianPolicy, TwinQ, TwinQValues, task_heads


@dataclass
class SAC(OffPolicyMethod):
    """Soft actor-critic with twin Q-networks, automatic entropy tuning and a replay memory."""

    name: ClassVar[str] = "sac"
    action_spaces: ClassVar[tuple[str, ...]] = ("continuous",)  # the policy outputs the action
    acting_networks: ClassVar[tuple[str, ...]] = ("policy",)  # the critic serves training only

    buffer_size: int = 100_000  # transitions the replay memory holds
    replay_size: int = 256  # transitions per gradient step
    train_frequency: int = 1  # environment steps per gradient step
    tau: float = 0.005  # Polyak step of the target Q-networks toward the Q-networks, per gradient step
    initial_alpha: float = 1.0  # entropy temperature at the start (then tuned)
    hidden_size: int = 256  # width of the networks' hidden layers
    hidden_layers: int = 2  # hidden layers of the policy and of each Q-network (Continual World's: 4 of 256)
    cw_network: bool = False  # Continual World's layers: LayerNorm + tanh after the first, leaky ReLU after the rest
    multihead: bool = False  # a head per task, picked by the task id ending the observations (Continual World's)

    state_attributes: ClassVar[tuple[str, ...]] = ("policy", "critic", "target_critic", "log_alpha",
                                                   "policy_optimizer", "critic_optimizer", "alpha_optimizer")

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "initial_alpha", strict=True)
        self.require_at_least(1, "hidden_size", "hidden_layers")
        self.require_in(0, 1, "tau")

    def configure(self, run: Any) -> None:
        super().configure(run)
        torch.manual_seed(run.seed)
        low, high = run.action_bounds
        shape, body = run.observation_shape, (self.hidden_size, self.hidden_layers, task_heads(run, self.multihead))
        policy = SquashedGaussianPolicy(shape, low, high, *body, self.cw_network).to(self.device)
        critic = TwinQ(int(np.prod(shape)), len(low), *body, self.cw_network).to(self.device)
        target_critic = copy.deepcopy(critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(self.initial_alpha), device=self.device, requires_grad=True)
        self.target_entropy = -float(len(low))
        # trained at the run's precision: losses' forward passes under its autocast, scaled under 16-mixed
        engine = self.run  # the run context (`configure` may have been given a setting, which it wraps)
        self.policy, self.policy_optimizer = engine.setup(policy, self.adam(policy.parameters()))
        self.critic, self.critic_optimizer = engine.setup(critic, self.adam(critic.parameters()))
        self.target_critic = engine.setup(target_critic)
        self.alpha_optimizer = engine.setup_optimizers(self.adam([self.log_alpha]))

    def adam(self, parameters: Any) -> torch.optim.Adam:
        """Adam at `--lr`, fused where the device has the kernel: small networks' steps are per-tensor work."""
        return torch.optim.Adam(parameters, lr=self.lr, fused=self.device.type in ("cpu", "cuda"))

    # ----- acting -------------------------------------------------------------------------------

    def act(self, observation: np.ndarray) -> np.ndarray:
        """Uniform in the bounds before `--learning_starts` steps, then a draw from the policy."""
        if self.steps < self.learning_starts:
            return self.run.uniform_actions(1, self.generator)[0].numpy()
        x = torch.as_tensor(observation, dtype=torch.float32, device=self.device).unsqueeze(0)
        with torch.no_grad():
            action, _ = self.model.sample(x)
        return action.squeeze(0).cpu().numpy()

    def greedy_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The policy's mean action for each observation (evaluation acts deterministically)."""
        with torch.no_grad():
            return self.model.mean_action(x.to(self.device)).cpu()

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy.module, "critic": self.critic.module}

    def output_distribution(self, network: str) -> OutputDistribution:
        """The policy: its Gaussian's mean and log standard deviation (before the squash); the
        critic: both Q-values of the stored (observation, action)."""
        return PolicyGaussian(self.policy.module) if network == "policy" else TwinQValues(self.critic.module)

    # ----- learning -----------------------------------------------------------------------------

    def learning_due(self) -> bool:
        return self.steps >= self.learning_starts and self.steps % self.train_frequency == 0

    def critic_loss(self, batch: dict[str, torch.Tensor], alpha: torch.Tensor) -> torch.Tensor:
        """Both Q-networks' squared error to r + gamma * (min target Q(s', a') - alpha log pi(a'|s')), a' ~ pi."""
        run = self.run
        with run.autocast(), torch.no_grad():
            next_actions, next_log_prob = self.policy.sample(batch["next_obs"])
            next_q = torch.min(*self.target_critic(batch["next_obs"], next_actions)) - alpha * next_log_prob
            targets = batch["reward"] + self.gamma * (1.0 - batch["terminal"]) * next_q
        with run.autocast():
            q1, q2 = self.critic(batch["obs"], batch["action"])
            return F.mse_loss(q1, targets) + F.mse_loss(q2, targets)

    def policy_loss(self, batch: dict[str, torch.Tensor], alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha log pi(a|s) - min Q(s, a), a ~ pi (the critic takes no gradient), and the log-probabilities."""
        self.critic.requires_grad_(False)  # the policy's loss moves the policy only
        try:
            with self.run.autocast():
                actions, log_prob = self.policy.sample(batch["obs"])
                return (alpha * log_prob - torch.min(*self.critic(batch["obs"], actions))).mean(), log_prob
        finally:
            self.critic.requires_grad_(True)

    def loss_of(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        alpha = self.log_alpha.exp().detach()
        return self.critic_loss(batch, alpha) if network == "critic" else self.policy_loss(batch, alpha)[0]

    def learn(self) -> torch.Tensor:
        """One gradient step of the Q-networks, the policy and the temperature on a minibatch
        drawn from the replay memory, then the Polyak step of the target Q-networks; the
        Q-networks' loss."""
        batch = self.part_batch(self.replay.take(self.replay_size))
        alpha = self.log_alpha.exp().detach()
        critic_loss = self.part_loss("critic", self.critic_loss(batch, alpha), batch)
        self.gradient_step("critic", critic_loss, self.critic_optimizer)
        policy_loss, log_prob = self.policy_loss(batch, alpha)
        self.gradient_step("policy", self.part_loss("policy", policy_loss, batch), self.policy_optimizer)

        self.alpha_optimizer.zero_grad(set_to_none=True)
        self.run.backward(-(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean())  # the temperature's
        self.alpha_optimizer.step()

        with torch.no_grad():
            for target, source in zip(self.target_critic.parameters(), self.critic.parameters()):
                target.lerp_(source, self.tau)
        self.gradient_steps += 1
        return critic_loss.detach()
