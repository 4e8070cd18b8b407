"""The run of a method on a reinforcement-learning setting: train stage after stage on the
setting's environments, evaluate by greedy episodes on every task's environment after each, and
hand the results to the tracker as they come."""

from __future__ import annotations

import functools
import random
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sylvan.analysis.metrics import Results
from sylvan.methods.core.base import check_pair
from sylvan.run.accounting import FlopCount, TrainedParameters, record_cost
from sylvan.run.budget import refuse_over_budget, stop_over_budget
from sylvan.run.context import RunContext
from sylvan.run.stages import record_stage_end, with_task_hooks

if TYPE_CHECKING:
    from sylvan.settings.continual_rl import EpisodeLog


def run_reinforcement(setting: Any, method: Any, tracker: Any = None, resume: Any = None) -> Results:
    """Train `method` on `setting`'s environments and return its results (mean returns)."""
    check_pair(setting, method)
    random.seed(setting.seed)
    np.random.seed(setting.seed)
    torch.manual_seed(setting.seed)
    eval_envs = [[setting.task_env(j) for _ in range(setting.eval_episodes)] for j in range(setting.nb_tasks)]
    try:
        return _train_and_evaluate(setting, method, tracker, resume, eval_envs)
    finally:
        for envs in eval_envs:
            for env in envs:
                env.close()


def _train_and_evaluate(setting: Any, method: Any, tracker: Any, resume: Any, eval_envs: list[list[Any]]) -> Results:
    nb_stages = setting.nb_stages()
    run = RunContext(setting, tracker, stage_count=nb_stages)
    method.configure(run)
    refuse_over_budget(method, run, setting.memory_budget)
    if resume is None:
        initial, _ = evaluate_returns(setting, method, eval_envs)
        results = Results(setting.name, method.name, accuracy_matrix=[], initial_accuracies=initial,
                          joint_training=method.joint_training, measure="return",
                          task_attributes=setting.task_values())
        finished = -1
    else:
        results, finished = run.checkpointer.restore(method, resume, nb_stages, setting.nb_tasks)
    start = time.perf_counter() - results.total_wall_time
    trained = TrainedParameters()
    for stage in range(nb_stages):
        if stage <= finished:  # resuming: trained before the interruption
            method.skip_stage([])
            continue
        stage_start = time.perf_counter()
        env = setting.training_env(stage, episode_log(tracker, stage * setting.steps_per_task))
        trained.start(method)
        run.compute.start_stage(whole=False)  # the method's calls, sampled (`ComputeAccount.call`)
        try:
            with_task_hooks(setting, method, stage, functools.partial(setting.train_stage, method, stage, env))
        except BaseException:
            run.compute.abandon()
            raise
        finally:
            env.close()
        training_flops = run.compute.end_stage()
        results.task_train_time.append(time.perf_counter() - stage_start)
        returns, inference_flops = evaluate_returns(setting, method, eval_envs)
        results.accuracy_matrix.append(returns)
        results.samples_seen.append(env.steps)
        record_training_episodes(results, env.episode_returns)
        record_cost(results, run, method, training_flops, inference_flops, trained.count(method))
        record_stage_end(results, method, stage_start, start, nb_stages)
        run.checkpointer.save(stage, method, results)
        if tracker is not None:
            seen = stage + 1 if nb_stages == setting.nb_tasks else setting.nb_tasks
            tracker.on_stage_end(results, stage, nb_stages, seen)
        stop_over_budget(results, stage, setting.memory_budget, method.name, tracker)
    return results


def episode_log(tracker: Any, first_step: int) -> EpisodeLog | None:
    """What writes each training episode's return and length to the run's `logs/train.csv` (and
    W&B), at the stream's step count (`first_step`: the steps of the stream before the stage)."""
    if tracker is None:
        return None

    def log(steps: int, episode_return: float, episode_length: int) -> None:
        tracker.log_step(first_step + steps, {"episode_return": episode_return, "episode_length": episode_length})

    return log


def evaluate_returns(setting: Any, method: Any, eval_envs: list[list[Any]]) -> tuple[list[float], float]:
    """Mean return of `--eval_episodes` greedy episodes (the best-scored action at each
    step, or the action `predict` returns) on each task's environment, the episodes run
    side by side: one `predict` call per step for all of them. Episode k of task j starts
    from the same seed at every evaluation, so the rows of the matrix compare the policies
    on the same episodes. Also the FLOPs of `predict` per observation, counted on each
    task's first step."""
    returns = []
    counted_flops = counted_observations = 0
    for task_id in range(setting.nb_tasks):
        envs = eval_envs[task_id]
        observations = [env.reset(seed=setting.evaluation_seed(task_id, k))[0]
                        for k, env in enumerate(envs)]
        totals = np.zeros(len(envs))
        active = list(range(len(envs)))
        first_step = True
        while active:
            x = torch.as_tensor(np.stack([observations[i] for i in active]), dtype=torch.float32)
            task_labels = torch.full((len(active),), task_id) if setting.task_labels_at_test else None
            count = FlopCount() if len(active) == len(envs) and first_step else None
            first_step = False
            with torch.no_grad():
                scores = method.predict(x, task_labels)
            if count is not None:
                counted_flops, counted_observations = counted_flops + count.stop(), counted_observations + len(x)
            if tuple(scores.shape) != (len(active), setting.num_actions):
                raise RuntimeError(
                    f"{type(method).__name__}.predict returned shape {tuple(scores.shape)}, expected "
                    f"(batch, num_actions) = {(len(active), setting.num_actions)}"
                )
            if setting.action_bounds is None:
                actions = scores.detach().float().cpu().argmax(1).tolist()
            else:
                low, high = setting.action_bounds
                actions = list(torch.clamp(scores.detach().float().cpu(), low, high).numpy())
            still = []
            for i, action in zip(active, actions):
                observations[i], reward, terminated, truncated, _ = envs[i].step(action)
                totals[i] += float(reward)
                if not (terminated or truncated):
                    still.append(i)
            active = still
        returns.append(float(totals.mean()))
    return returns, counted_flops / max(counted_observations, 1)


def record_training_episodes(results: Results, returns: list[float]) -> None:
    """Add a stage's training episodes to the results: their count, and the mean return of every
    episode trained on so far (`online_return`, the reward collected while learning)."""
    before = sum(results.episodes_seen)
    results.episodes_seen.append(len(returns))
    if returns:
        total = (results.online_accuracy or 0.0) * before + sum(returns)
        results.online_accuracy = total / (before + len(returns))
