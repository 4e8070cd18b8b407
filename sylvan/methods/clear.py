"""`clear`: CLEAR (Rolnick, Ahuja, Schwarz, Lillicrap & Wayne, "Experience Replay for Continual
Learning", NeurIPS 2019): replay of the whole stream's transitions with behaviour cloning of the
policy and values the agent had when it stored them.

A method of the reinforcement-learning branch only: its part joins an agent (`--agent sac` or
`dqn`; `sylvan.methods.parts.agent_cloning`). It needs no task boundaries: the memory keeps a
reservoir sample of the stream (`--memory_policy fifo` keeps the latest transitions). With
`--policy_cloning 0 --value_cloning 0` it is experience replay of the stream beside the agent's
own memory. Defaults: the paper's cloning weights (0.01 and 0.005) and half of each minibatch
replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sylvan.errors import ConfigurationError
from sylvan.methods.core.base import Method
from sylvan.methods.core.off_policy import TRANSITION_POLICIES
from sylvan.methods.core.on_agent import AppliesToAgents
from sylvan.methods.parts.agent_cloning import AgentCloning
from sylvan.settings.continual_rl import ContinualRLSetting


@dataclass
class CLEAR(AppliesToAgents, Method):
    """Replay of the stream with behaviour cloning, on an agent."""

    name: ClassVar[str] = "clear"
    target_setting: ClassVar[type] = ContinualRLSetting

    memory_size: int = 100_000  # transitions of the whole stream the replay memory holds
    memory_policy: str = "reservoir"  # which transitions it keeps: reservoir (a uniform sample) or fifo (the latest)
    replayed: int = 0  # transitions replayed with each minibatch (0: as many as the agent's minibatch)
    policy_cloning: float = 0.01  # weight of the KL divergence from the stored policy to the current one
    value_cloning: float = 0.005  # weight of the squared distance of the values to the stored ones

    def validate(self) -> None:
        self.require_at_least(1, "memory_size")
        self.require_at_least(0, "replayed", "policy_cloning", "value_cloning")
        if self.memory_policy not in TRANSITION_POLICIES:
            raise ConfigurationError(f"--memory_policy {self.memory_policy!r}: a transition has no class label to "
                                     f"balance by; one of {', '.join(TRANSITION_POLICIES)}")

    def agent_part(self, agent: Any) -> AgentCloning:
        return AgentCloning(agent, self.memory_size, self.memory_policy, self.replayed, self.policy_cloning,
                            self.value_cloning, seed=agent.run.seed + 1)
