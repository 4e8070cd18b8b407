"""Plain single-file loops of SAC, PPO and DQN in PyTorch and gymnasium, with nothing of sylvan:
the floor of the RL peer check (`benchmarks/rl_peer_check.py`). Each trains one agent on one
environment for a number of steps with the hyperparameters and networks of sylvan's agent (and
stable-baselines3's), then prints the mean return of deterministic evaluation episodes as JSON.

    python benchmarks/plain_rl_loops.py sac --env Hopper-v5 --steps 50000 --seed 0
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def evaluate(env: gym.Env, act, episodes: int, seed: int) -> float:
    returns = []
    for k in range(episodes):
        observation, _ = env.reset(seed=seed + 1000 + k)
        total, done = 0.0, False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(act(observation))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def sac(env: gym.Env, steps: int, seed: int, lr: float = 3e-4, batch: int = 256, starts: int = 100,
        tau: float = 0.005, gamma: float = 0.99, hidden: int = 256):
    obs_size, act_size = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = torch.as_tensor(env.action_space.low), torch.as_tensor(env.action_space.high)
    center, half = (high + low) / 2, (high - low) / 2
    policy = mlp([obs_size, hidden, hidden, 2 * act_size])
    q1, q2 = mlp([obs_size + act_size, hidden, hidden, 1]), mlp([obs_size + act_size, hidden, hidden, 1])
    q1_target, q2_target = copy.deepcopy(q1), copy.deepcopy(q2)
    log_alpha = torch.zeros((), requires_grad=True)
    policy_opt = torch.optim.Adam(policy.parameters(), lr=lr, fused=True)  # as sylvan's sac
    q_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=lr, fused=True)
    alpha_opt = torch.optim.Adam([log_alpha], lr=lr, fused=True)
    memory = {k: torch.zeros(steps, n) for k, n in (("o", obs_size), ("a", act_size), ("r", 1), ("o2", obs_size),
                                                    ("d", 1))}

    def sample(o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = policy(o).chunk(2, -1)
        log_std = -5 + 3.5 * (torch.tanh(log_std) + 1)
        noise = torch.randn_like(mean)
        pre = mean + log_std.exp() * noise
        squashed = torch.tanh(pre)
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - torch.log(half * (1 - squashed.pow(2)) + 1e-6).sum(-1)
        return center + half * squashed, log_prob

    observation, _ = env.reset(seed=seed)
    for t in range(steps):
        if t < starts:
            action = env.action_space.sample()
        else:
            with torch.no_grad():
                action = sample(torch.as_tensor(observation, dtype=torch.float32).unsqueeze(0))[0][0].numpy()
        next_observation, reward, terminated, truncated, _ = env.step(action)
        for key, value in (("o", observation), ("a", action), ("r", [reward]), ("o2", next_observation),
                           ("d", [float(terminated)])):
            memory[key][t] = torch.as_tensor(np.asarray(value, dtype=np.float32))
        observation = env.reset()[0] if terminated or truncated else next_observation
        if t + 1 < starts:
            continue
        rows = torch.randint(t + 1, (batch,))
        o, a, r, o2, d = (memory[k][rows] for k in ("o", "a", "r", "o2", "d"))
        alpha = log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2 = sample(o2)
            joined = torch.cat([o2, a2], -1)
            target = r.squeeze(1) + gamma * (1 - d.squeeze(1)) * (
                torch.min(q1_target(joined), q2_target(joined)).squeeze(1) - alpha * logp2)
        joined = torch.cat([o, a], -1)
        q_loss = F.mse_loss(q1(joined).squeeze(1), target) + F.mse_loss(q2(joined).squeeze(1), target)
        q_opt.zero_grad()
        q_loss.backward()
        q_opt.step()
        for p in (*q1.parameters(), *q2.parameters()):
            p.requires_grad_(False)
        a_new, logp = sample(o)
        joined = torch.cat([o, a_new], -1)
        policy_loss = (alpha * logp - torch.min(q1(joined), q2(joined)).squeeze(1)).mean()
        for p in (*q1.parameters(), *q2.parameters()):
            p.requires_grad_(True)
        policy_opt.zero_grad()
        policy_loss.backward()
        policy_opt.step()
        alpha_loss = -(log_alpha * (logp.detach() - act_size)).mean()
        alpha_opt.zero_grad()
        alpha_loss.backward()
        alpha_opt.step()
        with torch.no_grad():
            for target_net, net in ((q1_target, q1), (q2_target, q2)):
                for tp, p in zip(target_net.parameters(), net.parameters()):
                    tp.lerp_(p, tau)

    def act(observation: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            mean = policy(torch.as_tensor(observation, dtype=torch.float32).unsqueeze(0)).chunk(2, -1)[0]
            return (center + half * torch.tanh(mean))[0].numpy()

    return act


def ppo(env: gym.Env, steps: int, seed: int, lr: float = 3e-4, n_steps: int = 2048, batch: int = 64,
        epochs: int = 10, gamma: float = 0.99, lam: float = 0.95, clip: float = 0.2, vf_coef: float = 0.5,
        max_norm: float = 0.5, hidden: int = 64):
    obs_size = env.observation_space.shape[0]
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    act_size = env.action_space.n if discrete else env.action_space.shape[0]
    policy, value = mlp([obs_size, hidden, hidden, act_size], nn.Tanh), mlp([obs_size, hidden, hidden, 1], nn.Tanh)
    for net, gain in ((policy, 0.01), (value, 1.0)):
        linear = [m for m in net if isinstance(m, nn.Linear)]
        for m in linear:
            nn.init.orthogonal_(m.weight, gain=gain if m is linear[-1] else math.sqrt(2))
            nn.init.zeros_(m.bias)
    log_std = nn.Parameter(torch.zeros(act_size))
    params = [*policy.parameters(), *value.parameters(), *([] if discrete else [log_std])]
    optimizer = torch.optim.Adam(params, lr=lr, eps=1e-5)

    def distribution(o: torch.Tensor):
        out = policy(o)
        return torch.distributions.Categorical(logits=out) if discrete else torch.distributions.Normal(
            out, log_std.exp().expand_as(out))

    def log_prob(dist, a: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(a) if discrete else dist.log_prob(a).sum(-1)

    observation, _ = env.reset(seed=seed)
    done_steps = 0
    while done_steps < steps:
        buffer = {k: [] for k in ("o", "a", "lp", "r", "o2", "term", "end")}
        for _ in range(min(n_steps, steps - done_steps)):
            o = torch.as_tensor(observation, dtype=torch.float32).unsqueeze(0)
            with torch.no_grad():
                dist = distribution(o)
                a = dist.sample()
                lp = log_prob(dist, a)
            taken = int(a) if discrete else np.clip(a[0].numpy(), env.action_space.low, env.action_space.high)
            next_observation, reward, terminated, truncated, _ = env.step(taken)
            for key, val in (("o", o), ("a", a), ("lp", lp), ("r", torch.tensor([float(reward)])),
                             ("o2", torch.as_tensor(next_observation, dtype=torch.float32).unsqueeze(0)),
                             ("term", torch.tensor([float(terminated)])),
                             ("end", torch.tensor([float(terminated or truncated)]))):
                buffer[key].append(val)
            done_steps += 1
            observation = env.reset()[0] if terminated or truncated else next_observation
        data = {k: torch.cat(v) for k, v in buffer.items()}
        with torch.no_grad():
            values, next_values = value(data["o"]).squeeze(-1), value(data["o2"]).squeeze(-1)
        advantages = torch.zeros_like(values)
        following = 0.0
        for t in reversed(range(len(values))):
            delta = data["r"][t] + gamma * next_values[t] * (1 - data["term"][t]) - values[t]
            following = delta + gamma * lam * (1 - data["end"][t]) * following
            advantages[t] = following
        returns = advantages + values
        for _ in range(epochs):
            order = torch.randperm(len(values))
            for start in range(0, len(values), batch):
                rows = order[start : start + batch]
                adv = advantages[rows]
                if len(rows) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                dist = distribution(data["o"][rows])
                ratio = torch.exp(log_prob(dist, data["a"][rows]) - data["lp"][rows])
                policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
                value_loss = F.mse_loss(value(data["o"][rows]).squeeze(-1), returns[rows])
                optimizer.zero_grad()
                (policy_loss + vf_coef * value_loss).backward()
                nn.utils.clip_grad_norm_(params, max_norm)
                optimizer.step()

    def act(observation: np.ndarray):
        with torch.no_grad():
            out = policy(torch.as_tensor(observation, dtype=torch.float32).unsqueeze(0))[0]
        return int(out.argmax()) if discrete else np.clip(out.numpy(), env.action_space.low, env.action_space.high)

    return act


def dqn(env: gym.Env, steps: int, seed: int, lr: float = 1e-3, batch: int = 64, memory_size: int = 50_000,
        starts: int = 1000, train_freq: int = 4, target_interval: int = 250, exploration: int = 5000,
        final_eps: float = 0.05, gamma: float = 0.99, hidden: int = 128, max_norm: float = 10.0):
    obs_size, actions = env.observation_space.shape[0], env.action_space.n
    q = mlp([obs_size, hidden, hidden, actions])
    target = copy.deepcopy(q)
    optimizer = torch.optim.Adam(q.parameters(), lr=lr)
    size = min(memory_size, steps)
    memory = {"o": torch.zeros(size, obs_size), "a": torch.zeros(size, dtype=torch.long), "r": torch.zeros(size),
              "o2": torch.zeros(size, obs_size), "d": torch.zeros(size)}
    generator = np.random.default_rng(seed)
    observation, _ = env.reset(seed=seed)
    for t in range(steps):
        eps = 1.0 + min(1.0, t / exploration) * (final_eps - 1.0)
        if generator.random() < eps:
            action = int(generator.integers(actions))
        else:
            with torch.no_grad():
                action = int(q(torch.as_tensor(observation, dtype=torch.float32).unsqueeze(0)).argmax(1))
        next_observation, reward, terminated, truncated, _ = env.step(action)
        slot = t % size
        memory["o"][slot], memory["a"][slot], memory["r"][slot] = torch.as_tensor(observation), action, reward
        memory["o2"][slot], memory["d"][slot] = torch.as_tensor(next_observation), float(terminated)
        observation = env.reset()[0] if terminated or truncated else next_observation
        if t + 1 > starts and (t + 1) % train_freq == 0:
            rows = torch.randint(min(t + 1, size), (batch,))
            values = q(memory["o"][rows]).gather(1, memory["a"][rows].unsqueeze(1)).squeeze(1)
            with torch.no_grad():
                targets = memory["r"][rows] + gamma * (1 - memory["d"][rows]) * target(memory["o2"][rows]).max(1).values
            loss = F.smooth_l1_loss(values, targets)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(q.parameters(), max_norm)
            optimizer.step()
        if (t + 1) % target_interval == 0:
            target.load_state_dict(q.state_dict())

    def act(observation: np.ndarray) -> int:
        with torch.no_grad():
            return int(q(torch.as_tensor(observation, dtype=torch.float32).unsqueeze(0)).argmax(1))

    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("algorithm", choices=["sac", "ppo", "dqn"])
    parser.add_argument("--env", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval_episodes", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    env = gym.make(args.env)
    env.action_space.seed(args.seed)
    act = {"sac": sac, "ppo": ppo, "dqn": dqn}[args.algorithm](env, args.steps, args.seed)
    final = evaluate(env, act, args.eval_episodes, args.seed)
    print(json.dumps({"return": final, "train_seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
