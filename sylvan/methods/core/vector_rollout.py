"""An on-policy agent's rollouts on copies of its environment stepped together (`ppo --n_envs`).

The setting hands the agent a `VectorBudget` (gymnasium's vector API, same-step autoreset): at
each step the policy draws an action for every copy at once, and each copy's transition is kept
in that copy's time order. An update comes after `--n_steps` steps of every copy (a rollout of
n_steps x copies transitions, as stable-baselines3's), and at the budget's end. The rollout is
handed to the agent's `learn` copy after copy, each copy's last transition marked as ending its
sum, so that GAE runs along each copy's own episodes (that transition's value bootstraps it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def act_on_copies(agent: Any, observations: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """An action drawn from `agent.policy` for each copy's observation (ints, or unclipped
    vectors), and their log-probabilities."""
    x = torch.as_tensor(np.asarray(observations, dtype=np.float32), device=agent.device)
    with torch.no_grad():
        distribution = agent.policy.distribution(x)
        actions = distribution.sample()
        log_probs = agent.policy.log_prob(distribution, actions).cpu()
    return actions.cpu().numpy(), log_probs


def fit_on_copies(agent: Any, env: Any) -> None:
    """`agent`'s loop (PPO's: `n_steps`, `bounds`, `rollout`, `learn`) on `env`, a `VectorBudget`."""
    copies, run = env.num_envs, agent.run
    observations, _ = env.reset()
    kept: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(copies)]
    with run.engine.loop(env.steps_left, "act", run.fit_callbacks(), env.first_step + env.steps) as loop:
        while not env.exhausted:
            with loop.step("act", batch_size=copies, units=copies):
                actions, log_probs = act_on_copies(agent, observations)
            taken = actions if agent.bounds is None else np.clip(actions, *agent.bounds)
            next_observations, rewards, terminated, truncated, infos = env.step(taken)
            reset = infos.get("_final_obs", np.zeros(copies, dtype=bool))
            for k in range(copies):
                next_observation = infos["final_obs"][k] if reset[k] else next_observations[k]
                transition = agent.transition(observations[k], actions[k], float(rewards[k]), next_observation,
                                              bool(terminated[k]))
                agent.part_transition(transition)
                ended = float(terminated[k] or truncated[k])
                kept[k].append({**transition, "ended": torch.tensor([ended]), "log_prob": log_probs[k : k + 1]})
            agent.steps += copies
            if len(kept[0]) >= agent.n_steps or env.exhausted:
                for transitions in kept:
                    transitions[-1]["ended"] = torch.ones(1)  # GAE's sum stops at the copy's rollout end
                agent.rollout = [transition for transitions in kept for transition in transitions]
                kept = [[] for _ in range(copies)]
                agent.learn(loop)
            observations = next_observations
