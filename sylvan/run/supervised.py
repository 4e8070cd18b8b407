"""The run of a method on a supervised setting: load the tasks, make the run context, train stage
after stage, evaluate after each, and hand the results to the tracker as they come.

The setting says what the stages are (`training_stages`), what a stage hands the method
(`train_stage`) and how a method is evaluated (`evaluate`); everything the run holds lives here
and in its `RunContext`, and is gone when the run returns."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from sylvan.analysis.metrics import Results
from sylvan.errors import RunFailedError
from sylvan.methods.core.base import check_pair
from sylvan.parallel.health import planned_workers
from sylvan.run.accounting import TrainedParameters, record_cost
from sylvan.run.budget import refuse_over_budget, stop_over_budget
from sylvan.run.context import RunContext
from sylvan.run.past_tasks import PastTasks
from sylvan.run.stages import record_stage_end, with_task_hooks


def run_supervised(setting: Any, method: Any, tracker: Any = None, resume: Any = None,
                   callbacks: Sequence[Any] = ()) -> Results:
    """Train `method` on `setting`'s stream and return its results. With several data-parallel
    workers, a worker that dies or raises stops the others within `--worker_timeout` seconds
    (usually at once: the collectives see the broken connection), and worker 0 names the worker
    that failed; finished tasks are already on disk."""
    check_pair(setting, method)
    parallel = None
    if planned_workers(setting) > 1 or setting.data_parallel:
        from sylvan.parallel.data_parallel import DataParallel

        parallel = DataParallel.of(setting)
    try:
        return _train_and_evaluate(setting, method, tracker, resume, parallel, callbacks)
    except Exception as error:
        replacement = None if parallel is None else parallel.translate_failure(error)
        if replacement is None:
            raise
        raise replacement from (error if isinstance(replacement, RunFailedError) else None)


def _train_and_evaluate(setting: Any, method: Any, tracker: Any, resume: Any, parallel: Any,
                        callbacks: Sequence[Any]) -> Results:
    tasks = setting.seeded_tasks()
    nb_stages = setting.nb_stages(tasks)
    pixel_inputs = bool(tasks) and all(task.x_train.dtype == torch.uint8 for task in tasks)
    run = RunContext(setting, tracker, parallel, stage_count=nb_stages, pixel_inputs=pixel_inputs,
                     callbacks=callbacks)
    method.configure(run)
    refuse_over_budget(method, run, setting.memory_budget)
    if resume is None:
        initial = None if setting.evaluates_seen_tasks_only else setting.evaluate(method, tasks, parallel).accuracies
        results = Results(setting.name, method.name, accuracy_matrix=[], initial_accuracies=initial,
                          joint_training=method.joint_training, evaluation_split=setting.evaluation_split)
        finished = -1
    else:
        results, finished = run.checkpointer.restore(method, resume, nb_stages, len(tasks))
    start = time.perf_counter() - results.total_wall_time
    trained = TrainedParameters()
    for stage, loaders in enumerate(setting.training_stages(tasks)):
        if stage <= finished:  # resuming: trained before the interruption
            method.skip_stage(loaders)
            continue
        stage_start = time.perf_counter()
        if setting.past_data_available:  # the tasks before this one, to revisit
            run.past_tasks = PastTasks(tasks[:stage], setting.seed)
        trained.start(method)
        run.compute.start_stage()
        try:
            startup = _train_stage(setting, run, method, stage, loaders)
        except BaseException:
            run.compute.abandon()
            raise
        training_flops = run.compute.end_stage()
        results.worker_startup_time += startup
        results.task_train_time.append(time.perf_counter() - stage_start - startup)
        evaluation = _evaluate(setting, method, tasks, parallel, seen=stage + 1)
        results.accuracy_matrix.append(evaluation.accuracies)
        if evaluation.aware is not None:
            results.task_aware_matrix = (results.task_aware_matrix or []) + [evaluation.aware]
        results.confusion_matrix = evaluation.confusion.tolist()
        results.samples_seen.append(sum(len(loader.dataset) for loader in loaders) * setting.epochs_per_task)
        record_cost(results, run, method, training_flops, evaluation.inference_flops_per_sample,
                    trained.count(method))
        record_stage_end(results, method, stage_start, start, nb_stages)
        if run.online_meter is not None:
            results.online_accuracy = run.online_meter.accuracy
        run.checkpointer.save(stage, method, results)
        if tracker is not None:
            seen = stage + 1 if nb_stages == len(tasks) else len(tasks)
            tracker.on_stage_end(results, stage, nb_stages, seen)
        stop_over_budget(results, stage, setting.memory_budget, method.name, tracker)
    return results


def _evaluate(setting: Any, method: Any, tasks: list[Any], parallel: Any, seen: int) -> Any:
    """The evaluation after a stage: on every task, or on the `seen` first ones where the setting
    hides the others (their entries of the accuracy matrices are then None)."""
    if not setting.evaluates_seen_tasks_only:
        return setting.evaluate(method, tasks, parallel)
    evaluation = setting.evaluate(method, tasks[:seen], parallel)
    unseen = [None] * (len(tasks) - seen)
    aware = None if evaluation.aware is None else evaluation.aware + unseen
    return evaluation._replace(accuracies=evaluation.accuracies + unseen, aware=aware)


def _train_stage(setting: Any, run: RunContext, method: Any, stage: int, loaders: list[Any]) -> float:
    """Train one stage; return the seconds it spent starting the workers rather than training
    (their Python start-up and imports, on the first stage of a data-parallel run)."""
    def train() -> None:
        with_task_hooks(setting, method, stage, lambda: setting.train_stage(run, method, stage, loaders))

    if run.parallel is None:
        train()
        return 0.0
    run.parallel.timed_stage(train)
    if run.parallel.channel is not None:  # nothing of the replay exchange stays in flight across stages
        run.parallel.channel.wait()
    if run.online_meter is not None:  # every worker's shard of the stream counts
        from sylvan.parallel.sharded_evaluation import summed_online_counts

        summed_online_counts(run.online_meter, run.parallel)
    return run.parallel.stage_startup
