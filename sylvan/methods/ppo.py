"""`ppo`: proximal policy optimization (Schulman et al., 2017), on-policy, discrete or continuous actions.

It collects `--n_steps` transitions with its policy (a categorical, or a Gaussian with a
state-independent log standard deviation, its draws clipped to the bounds), estimates advantages
by GAE (`--gae_lambda`; a truncated episode bootstrapped with its last state's value), then trains
`--n_epochs` epochs of `--batch_size` minibatches on the clipped objective (`--clip_range`), the
value's squared error (x `--vf_coef`) and an entropy bonus (x `--ent_coef`): stable-baselines3's
algorithm, networks and defaults (`sylvan.methods.parts.policy_gradient`). A stage's last, shorter
rollout is trained on too. Evaluation acts with the mode. Its networks are `policy` and `value`.
`--n_envs`: copies of the environment stepped together (`sylvan.methods.core.vector_rollout`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from sylvan.methods.core.agent import Agent, OutputDistribution, Transitions
from sylvan.methods.core.vector_rollout import fit_on_copies
from sylvan.methods.parts.policy_gradient import (
    PolicyAndValue,
    PolicyOutputs,
    StochasticPolicy,
    ValueOutputs,
    tanh_mlp,
)


@dataclass
class PPO(Agent):
    """Proximal policy optimization with GAE, a clipped objective, a value loss and an entropy bonus."""

    name: ClassVar[str] = "ppo"
    action_spaces: ClassVar[tuple[str, ...]] = ("discrete", "continuous")
    acting_networks: ClassVar[tuple[str, ...]] = ("policy",)

    lr: float = 3e-4  # Adam learning rate
    n_steps: int = 2048  # environment steps per rollout (per update)
    batch_size: int = 64  # transitions per minibatch
    n_epochs: int = 10  # passes over each rollout
    gamma: float = 0.99  # discount factor
    gae_lambda: float = 0.95  # GAE's lambda
    clip_range: float = 0.2  # the objective's clipping of the probability ratio
    ent_coef: float = 0.0  # weight of the entropy bonus
    vf_coef: float = 0.5  # weight of the value loss
    max_grad_norm: float = 0.5  # gradients are clipped to this norm
    hidden_size: int = 64  # width of the two hidden layers of each network
    n_envs: int = 1  # copies of the training environment stepped together (gymnasium's vector API), n_steps each

    state_attributes: ClassVar[tuple[str, ...]] = ("actor_critic", "optimizer", "generator", "steps", "gradient_steps",
                                                  "last_rollout")

    def validate(self) -> None:
        self.require_at_least(0, "lr", "clip_range", "max_grad_norm", strict=True)
        self.require_at_least(0, "ent_coef", "vf_coef")
        self.require_at_least(1, "n_steps", "batch_size", "n_epochs", "hidden_size", "n_envs")
        self.require_in(0, 1, "gamma", "gae_lambda")

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.device = self.run.engine.device
        torch.manual_seed(run.seed)
        continuous = run.action_space_kind == "continuous"
        policy = StochasticPolicy(run.observation_shape, run.num_actions, continuous, self.hidden_size)
        value = tanh_mlp(int(np.prod(run.observation_shape)), 1, self.hidden_size, 1.0)
        both = PolicyAndValue(policy, value).to(self.device)
        optimizer = torch.optim.Adam(both.parameters(), lr=self.lr, eps=1e-5)
        self.actor_critic, self.optimizer = self.run.setup(both, optimizer)
        self.policy, self.value = both.policy, both.value
        self.bounds = None if run.action_bounds is None else tuple(b.numpy() for b in run.action_bounds)
        self.generator = torch.Generator().manual_seed(run.seed)
        self.steps = self.gradient_steps = 0
        self.rollout: list[Transitions] = []
        self.last_rollout: Transitions = {}  # the latest rollout trained on (what parts sample)

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy, "value": self.value}

    def output_distribution(self, network: str) -> OutputDistribution:
        return PolicyOutputs(self.policy) if network == "policy" else ValueOutputs(self.value)

    def greedy_outputs(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.policy.mode(x.to(self.device)).cpu()

    def fit(self, train_data: Any, val_data: Any = None) -> None:
        """Roll out the policy in `train_data` (a step budget), updating it every `--n_steps` steps and at the end."""
        env = train_data
        if getattr(env, "num_envs", 1) > 1:
            return fit_on_copies(self, env)
        observation, _ = env.reset()
        with self.run.engine.loop(env.steps_left, "act", self.run.fit_callbacks(), env.first_step + env.steps) as loop:
            while not env.exhausted:
                with loop.step("act"):
                    action, log_prob = self.act(observation)
                taken = int(action) if self.bounds is None else np.clip(action, *self.bounds)
                next_observation, reward, terminated, truncated, _ = env.step(taken)
                transition = self.transition(observation, action, float(reward), next_observation, terminated)
                self.part_transition(transition)
                self.rollout.append({**transition, "ended": torch.tensor([float(terminated or truncated)]),
                                     "log_prob": log_prob.cpu()})
                self.steps += 1
                if len(self.rollout) >= self.n_steps or env.exhausted:
                    self.learn(loop)
                observation = next_observation
                if (terminated or truncated) and not env.exhausted:
                    observation, _ = env.reset()

    def act(self, observation: Any) -> tuple[Any, torch.Tensor]:
        """An action drawn from the policy (an int, or the unclipped vector), and its log-probability."""
        x = torch.as_tensor(np.asarray(observation, dtype=np.float32), device=self.device).unsqueeze(0)
        with torch.no_grad():
            distribution = self.policy.distribution(x)
            action = distribution.sample()
            log_prob = self.policy.log_prob(distribution, action).cpu()
        return (int(action) if self.bounds is None else action.squeeze(0).cpu().numpy()), log_prob

    def learn(self, loop: Any = None) -> torch.Tensor:
        """`--n_epochs` epochs on the rollout just collected (with none, the last again: a part's
        retraining), each gradient step a step of `loop` where given; the last minibatch's loss."""
        if self.rollout:
            self.last_rollout = {name: torch.cat([t[name] for t in self.rollout]) for name in self.rollout[0]}
            self.rollout = []
        data = {name: value.to(self.device) for name, value in self.last_rollout.items()}
        both = self.actor_critic.module
        advantages, returns = both.advantages(data, self.gamma, self.gae_lambda)
        count, loss, clip = len(advantages), torch.zeros(()), (self.actor_critic, self.max_grad_norm)
        for _ in range(self.n_epochs):
            order = torch.randperm(count, generator=self.generator).to(self.device)
            for start in range(0, count, self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = {name: value[rows] for name, value in data.items()}
                with self.learning_step(loop) as step:
                    with self.run.autocast():
                        policy_loss, value_loss = both.ppo_losses(batch, advantages[rows], returns[rows],
                                                                  self.clip_range, self.ent_coef, self.vf_coef)
                    loss = self.part_loss("policy", policy_loss, batch) + self.part_loss("value", value_loss, batch)
                    self.gradient_step(("policy", "value"), loss, self.optimizer, clip)
                    step.loss = loss.detach()
                self.gradient_steps += 1
        return loss.detach()

    def loss_of(self, network: str, batch: Transitions) -> torch.Tensor:
        return self.actor_critic.module.remembered_loss(network, batch, self.gamma)

    def sample_transitions(self, count: int) -> Transitions:
        rows = torch.randint(len(self.last_rollout["obs"]), (count,), generator=self.generator)
        return {name: value[rows].to(self.device) for name, value in self.last_rollout.items()}
