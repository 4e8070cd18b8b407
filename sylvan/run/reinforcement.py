"""The stages of a reinforcement-learning setting's run (`sylvan.run.loop`): a stage's
environment handed to the method, and greedy episodes on every task's environment after each
(and every `--eval_every` steps of the stream: the evaluation curve, Continual World's metrics'
input, whose forward transfer reads the reference runs of `--reference_dir`)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sylvan.analysis.metrics import Results
from sylvan.run.checkpoints import rng_states
from sylvan.run.evaluation import Evaluation
from sylvan.run.flop_count import FlopCount
from sylvan.run.loop import Stages, StageWork

if TYPE_CHECKING:
    from sylvan.run.context import RunContext
    from sylvan.settings.continual_rl import EpisodeLog


class EnvironmentStages(Stages):
    """The stages of `setting`'s environments. The global generators are seeded with the setting's
    seed when the run starts; the evaluation environments stay open until it ends."""

    whole_fits_counted = False  # the method's loop's steps are sampled by kind (`ComputeAccount.call_started`)

    def __init__(self, setting: Any) -> None:
        self.setting = setting
        random.seed(setting.seed)
        np.random.seed(setting.seed)
        torch.manual_seed(setting.seed)
        self.nb_stages = setting.nb_stages()
        self.nb_tasks = setting.stream_tasks
        self.eval_envs = [[setting.task_env(j) for _ in range(setting.eval_episodes)] for j in range(self.nb_tasks)]
        self.generator_states = rng_states()
        self.points: list[tuple[int, Evaluation]] = []  # the stage's evaluations so far, at their stream step
        self.stage_end = 0  # the stream's step at the end of the stage training
        self.method: Any = None

    def new_results(self, method: Any, initial: list[float] | None) -> Results:
        setting = self.setting
        self.points = []  # the evaluation before training is the initial returns, not a point of the curve
        results = Results(setting.name, method.name, accuracy_matrix=[], initial_accuracies=initial,
                          joint_training=method.joint_training, measure="return", task_attributes=setting.task_values(),
                          evaluation_curve={"steps": [], "return": [], "success": None},
                          task_spans=setting.task_spans())
        if setting.reference_dir is not None and not setting.makes_references:
            from sylvan.run.references import reference_auc

            results.reference_auc = reference_auc(setting, method)
        return results

    def data(self) -> Iterator[int]:
        return iter(range(self.nb_stages))  # each stage's environment is made when it trains

    def fit(self, run: RunContext, method: Any, stage: int, data: int) -> StageWork:
        setting = self.setting
        first_step = stage * setting.steps_per_task
        log = episode_log(run.tracker, first_step, setting.reports_success)
        copies = getattr(method, "environment_copies", 1)
        # several copies stepped together (`ppo --n_envs`), or the one environment
        env = setting.training_copies(stage, log, copies) if copies > 1 else setting.training_env(stage, log)
        env.first_step = first_step
        self.points, self.method = [], method
        if setting.eval_every is not None:
            log = curve_log(run.tracker, self.nb_tasks, setting.reports_success)
            env.every(setting.eval_every, lambda steps: self.point(method, first_step + steps, log))
        self.stage_end = first_step + env.budget
        try:
            method.fit(env, None)
        finally:
            env.close()
        return StageWork(samples=env.steps, episode_returns=env.episode_returns)

    def evaluate(self, method: Any, seen: int) -> Evaluation:
        evaluation = self.evaluation(method)
        self.points.append((self.stage_end, evaluation))
        return evaluation

    def evaluation(self, method: Any) -> Evaluation:
        """Greedy episodes on every task's environment."""
        returns, successes, inference_flops = evaluate_returns(self.setting, method, self.eval_envs)
        return Evaluation(returns, aware=None, confusion=None, inference_flops_per_sample=inference_flops,
                          successes=successes)

    def point(self, method: Any, step: int, log: Any) -> None:
        """An evaluation within a stage, at the stream's step `step`: a point of the curve."""
        evaluation = self.evaluation(method)
        self.points.append((step, evaluation))
        if log is not None:
            log(step, evaluation)

    def record(self, results: Results) -> None:
        """The stage's evaluations into the curve; after a `traditional_rl` run's stage, its curve
        as the reference of its task (`--reference_dir`)."""
        curve = results.evaluation_curve
        for step, evaluation in self.points:
            curve["steps"].append(step)
            curve["return"].append(evaluation.accuracies)
            if evaluation.successes is not None:
                curve["success"] = (curve["success"] or []) + [evaluation.successes]
        self.points = []
        setting = self.setting
        if setting.makes_references and setting.reference_dir is not None and len(results.accuracy_matrix) == 1:
            from sylvan.run.references import store_reference

            path = store_reference(setting, self.method, results)
            print(f"[sylvan] reference curve of task {setting.task} written to {path}")

    def close(self) -> None:
        for envs in self.eval_envs:
            for env in envs:
                env.close()


def curve_log(tracker: Any, nb_tasks: int, reports_success: bool) -> Any:
    """What writes each evaluation of the curve to the run's training log (`eval_return_T0`, ...,
    and `eval_success_T0`, ... where the environments report success), at its step."""
    if tracker is None:
        return None
    names = [f"eval_return_T{j}" for j in range(nb_tasks)]
    successes = [f"eval_success_T{j}" for j in range(nb_tasks)] if reports_success else []
    tracker.expect_columns((*names, *successes))

    def log(step: int, evaluation: Evaluation) -> None:
        values = dict(zip(names, evaluation.accuracies))
        if evaluation.successes is not None:
            values.update(zip(successes, evaluation.successes))
        tracker.log_step(step, values)

    return log


def episode_log(tracker: Any, first_step: int, reports_success: bool = False) -> EpisodeLog | None:
    """What writes each training episode's return and length (and success, where the environment
    `reports_success`) to the run's `logs/train.csv` (and W&B), at the stream's step count
    (`first_step`: the steps of the stream before the stage)."""
    if tracker is None:
        return None
    tracker.expect_columns(("episode_length", "episode_return", *(("episode_success",) if reports_success else ())))

    def log(steps: int, episode_return: float, episode_length: int, success: float | None = None) -> None:
        values = {"episode_return": episode_return, "episode_length": episode_length}
        if success is not None:
            values["episode_success"] = success
        tracker.log_step(first_step + steps, values)

    return log


def evaluate_returns(setting: Any, method: Any,
                     eval_envs: list[list[Any]]) -> tuple[list[float], list[float] | None, float]:
    """Mean return of `--eval_episodes` greedy episodes (the best-scored action at each
    step, or the action `predict` returns) on each task's environment, the episodes run
    side by side: one `predict` call per step for all of them. Episode k of task j starts
    from the same seed at every evaluation, so the rows of the matrix compare the policies
    on the same episodes. Also the share of the episodes that succeeded at some step, where
    the environments report success (`info["success"]`, else None), and the FLOPs of
    `predict` per observation, counted on each task's first step."""
    returns, successes = [], []
    counted_flops = counted_observations = 0
    for task_id in range(setting.stream_tasks):
        envs = eval_envs[task_id]
        observations = [env.reset(seed=setting.evaluation_seed(task_id, k))[0]
                        for k, env in enumerate(envs)]
        totals = np.zeros(len(envs))
        succeeded = np.zeros(len(envs))
        reported = False
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
                observations[i], reward, terminated, truncated, info = envs[i].step(action)
                totals[i] += float(reward)
                if "success" in info:
                    reported = True
                    succeeded[i] = max(succeeded[i], float(info["success"] > 0))
                if not (terminated or truncated):
                    still.append(i)
            active = still
        returns.append(float(totals.mean()))
        successes.append(float(succeeded.mean()) if reported else None)
    found = None if any(s is None for s in successes) else successes
    return returns, found, counted_flops / max(counted_observations, 1)
