"""CLEAR's part on an agent (Rolnick, Ahuja, Schwarz, Lillicrap & Wayne, "Experience Replay for
Continual Learning", NeurIPS 2019): a replay memory of the whole stream, whose transitions join
every minibatch the agent learns from, and behaviour cloning of the policy and the values the
agent had when it stored them.

Each stored transition keeps, beside it, what the agent's networks gave for it then: the policy's
Gaussian (mean, log standard deviation; `sac`, continuous `ppo`), its action scores (`dqn`'s
Q-values, discrete `ppo`'s logits), and the other networks' values (`sac`'s critic, `ppo`'s value).
Each minibatch of an off-policy agent is joined by as many transitions drawn from the memory
(`replayed`; CLEAR's half new, half replayed); on those the agent's losses add `policy_cloning`
times the KL divergence from the stored policy to the current one and `value_cloning` times the
squared distance of the current values to the stored ones (with both 0, replay alone). An
on-policy agent (`ppo`) learns from its own rollout alone: the cloning terms are on a draw of
their own from the memory.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from sylvan.buffers import make_buffer
from sylvan.buffers.channel import LocalReplay

Transitions = dict[str, torch.Tensor]
KEPT = ("obs", "action", "reward", "next_obs", "terminal")  # the fields the agent learns from


def gaussian_kl(mean0: torch.Tensor, log_std0: torch.Tensor, mean1: torch.Tensor,
                log_std1: torch.Tensor) -> torch.Tensor:
    """KL(N(mean0, std0) || N(mean1, std1)), summed over the last dimension."""
    return (log_std1 - log_std0 + (torch.exp(2 * log_std0) + (mean0 - mean1).pow(2))
            / (2 * torch.exp(2 * log_std1)) - 0.5).sum(-1)


class AgentCloning:
    """A part: the replay memory of the stream with the outputs stored beside each transition."""

    def __init__(self, agent: Any, memory_size: int, memory_policy: str, replayed: int,
                 policy_cloning: float, value_cloning: float, seed: int) -> None:
        self.agent, self.replayed = agent, replayed
        self.policy_cloning, self.value_cloning = policy_cloning, value_cloning
        self.device = agent.device
        self.memory = LocalReplay(make_buffer(memory_policy, memory_size, device=str(self.device), seed=seed))
        self.acting = agent.acting_networks[0]
        self.critics = [name for name in agent.networks() if name not in agent.acting_networks]
        self._step: tuple[int, Transitions] | None = None  # this step's replayed rows and their stored outputs

    def outputs(self, transitions: Transitions) -> Transitions:
        """What the agent's networks give for `transitions` now: "policy_mean" (and
        "policy_log_std"), and "values" of each critic."""
        found: Transitions = {}
        mean, log_std = self.agent.output_distribution(self.acting)(transitions)
        found["policy_mean"] = mean
        if log_std is not None:
            found["policy_log_std"] = log_std
        for critic in self.critics:
            found[f"values_{critic}"] = self.agent.output_distribution(critic)(transitions)[0]
        return found

    def agent_transition(self, transition: Transitions) -> None:
        with torch.no_grad():
            stored = self.outputs({name: value.to(self.device) for name, value in transition.items()})
        self.memory.insert({**transition, **{f"old_{name}": value.cpu() for name, value in stored.items()}})

    def agent_batch(self, batch: Transitions) -> Transitions:
        self._step = None
        if not self.memory:
            return batch
        new = len(batch["obs"])
        drawn = self.memory.take(self.replayed or new)
        self._step = (new, {name[len("old_"):]: value for name, value in drawn.items() if name.startswith("old_")})
        return {name: torch.cat([batch[name], drawn[name].to(batch[name].device)]) for name in KEPT}

    def agent_loss(self, network: str, batch: Transitions | None = None) -> torch.Tensor | None:
        if batch is None or not self.memory:
            return None
        if self._step is not None:  # the agent's minibatch was joined by the replayed transitions
            new, stored = self._step
            replayed = {name: value[new:] for name, value in batch.items()}
        else:  # an agent that learns from its own transitions alone (ppo): cloning on a draw of its own
            drawn = self.memory.take(self.replayed or len(batch["obs"]))
            stored = {name[len("old_"):]: value for name, value in drawn.items() if name.startswith("old_")}
            replayed = {name: drawn[name] for name in KEPT}
        if network == self.acting:
            mean, log_std = self.agent.output_distribution(network)(replayed)
            if log_std is not None:
                cloning = gaussian_kl(stored["policy_mean"], stored["policy_log_std"], mean, log_std).mean()
                return self.policy_cloning * cloning
            old = stored["policy_mean"]  # scores of discrete actions: the policy is their softmax
            cloning = F.kl_div(F.log_softmax(mean, -1), F.log_softmax(old, -1), log_target=True, reduction="batchmean")
            if self.critics:
                return self.policy_cloning * cloning
            return self.policy_cloning * cloning + self.value_cloning * F.mse_loss(mean, old)  # Q-values are values
        if network in self.critics:
            values = self.agent.output_distribution(network)(replayed)[0]
            return self.value_cloning * F.mse_loss(values, stored[f"values_{network}"])
        return None

    def on_task_end(self) -> None:
        """Nothing: the memory runs on across tasks (CLEAR needs no boundaries)."""

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.buffer.load_state_dict(state["memory"])
