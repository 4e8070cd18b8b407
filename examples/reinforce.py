"""A reinforcement-learning method added from outside the package: REINFORCE (Williams 1992),
the Monte-Carlo policy gradient, with returns standardized within each episode as a baseline.

An RL method keeps the supervised contract: `fit(env)` trains on the environment the setting
hands it until `env.exhausted`, and `predict(observations)` scores each action (here the
policy's logits; the setting evaluates the best-scored action). It needs no task boundaries, so
it targets `continual_rl` and runs on every setting of the RL branch. Its loop runs on the run's
engine (`run.engine.loop`): each action and each update is a step that the callbacks, the
training log, the progress bar and the FLOP count see, with no code of its own for them.

    sylvan --plugin examples/reinforce.py --list
    sylvan --plugin examples/reinforce.py --setting incremental_rl --method reinforce --lr 0.01
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from sylvan.errors import ConfigurationError
from sylvan.methods import Method
from sylvan.models import MLP
from sylvan.settings import ContinualRLSetting


@dataclass
class Reinforce(Method):
    """Policy gradient: after each episode, raise the log-probability of every action taken in
    proportion to the (standardized) discounted return that followed it."""

    name: ClassVar[str] = "reinforce"
    target_setting: ClassVar[type] = ContinualRLSetting
    action_spaces: ClassVar[tuple[str, ...]] = ("discrete",)  # a softmax over the actions

    lr: float = 0.01  # Adam learning rate
    gamma: float = 0.99  # discount factor
    hidden_size: int = 64  # width of the policy's hidden layer

    def validate(self) -> None:
        self.require_at_least(0, "lr", strict=True)
        self.require_at_least(1, "hidden_size")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigurationError(f"--gamma must be between 0 and 1, got {self.gamma}")

    def configure(self, run: Any) -> None:
        super().configure(run)
        torch.manual_seed(run.seed)
        self.policy = MLP(run.observation_shape, run.num_actions, (self.hidden_size,))
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.lr)
        self.generator = torch.Generator().manual_seed(run.seed)

    def fit(self, train_data: Any, val_data: Any = None) -> None:
        env = train_data
        # the environment's steps are the loop's unit; its training log goes on at the stream's step
        with self.run.engine.loop(env.steps_left, "act", self.run.fit_callbacks(), env.first_step + env.steps) as loop:
            while not env.exhausted:
                observation, _ = env.reset()
                log_probs, rewards, done = [], [], False
                while not done:
                    with loop.step("act"):
                        logits = self.policy(torch.as_tensor(observation, dtype=torch.float32).unsqueeze(0))[0]
                        action = torch.multinomial(logits.softmax(0), 1, generator=self.generator)[0]
                    log_probs.append(logits.log_softmax(0)[action])
                    observation, reward, terminated, truncated, _ = env.step(int(action))
                    rewards.append(float(reward))
                    done = terminated or truncated
                with loop.step("update") as step:
                    step.loss = self.update(torch.stack(log_probs), rewards)

    def update(self, log_probs: torch.Tensor, rewards: list[float]) -> torch.Tensor:
        returns, following = [], 0.0
        for reward in reversed(rewards):
            following = reward + self.gamma * following
            returns.append(following)
        returns = torch.tensor(returns[::-1])
        if len(returns) > 1:
            returns = (returns - returns.mean()) / (returns.std() + 1e-8)
        loss = -(log_probs * returns).sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def predict(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.policy(x)

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
