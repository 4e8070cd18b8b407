"""The stages of a supervised setting's run (`sylvan.run.loop`): the tasks loaded once, a stage's
loaders handed to the method, every task's test set scored after each, and, with several workers,
each stage trained in every data-parallel worker.

The setting describes the stages (`training_stages`: each stage's loaders) and whether its stream
is scored as it trains (`single_pass`: predict-then-train, `OnlineAccuracyMeter`); the stages hand
each stage's data to the method's `fit` and score every task's test set after it
(`sylvan.run.evaluation`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from sylvan.analysis.metrics import Results
from sylvan.parallel.health import planned_workers
from sylvan.run.callbacks import OnlineAccuracyMeter
from sylvan.run.checkpoints import rng_states
from sylvan.run.evaluation import evaluate_setting
from sylvan.run.loop import Stages, StageWork
from sylvan.run.past_tasks import PastTasks
from sylvan.run.signals import interruption_behind

if TYPE_CHECKING:
    from sylvan.run.context import RunContext
    from sylvan.run.evaluation import Evaluation


class TaskStages(Stages):
    """The stages of a supervised stream over `setting`'s tasks, loaded now (seeded)."""

    def __init__(self, setting: Any) -> None:
        self.setting = setting
        self.parallel = None
        if planned_workers(setting) > 1 or setting.data_parallel:
            from sylvan.parallel.data_parallel import DataParallel

            self.parallel = DataParallel.of(setting)
        self.tasks = setting.seeded_tasks()
        self.generator_states = rng_states()
        self.nb_stages = setting.nb_stages(self.tasks)
        self.nb_tasks = len(self.tasks)
        self.pixel_inputs = bool(self.tasks) and all(task.x_train.dtype == torch.uint8 for task in self.tasks)

    def new_results(self, method: Any, initial: list[float] | None) -> Results:
        setting = self.setting
        return Results(setting.name, method.name, accuracy_matrix=[], initial_accuracies=initial,
                       joint_training=method.joint_training, evaluation_split=setting.evaluation_split)

    def initial_accuracies(self, method: Any) -> list[float] | None:
        """None where the setting scores only the tasks seen so far (before training: none)."""
        return None if self.setting.evaluates_seen_tasks_only else super().initial_accuracies(method)

    def data(self) -> Iterator[list[Any]]:
        return self.setting.training_stages(self.tasks)

    def skip(self, method: Any, data: list[Any]) -> None:
        method.skip_stage(data)

    def fit(self, run: RunContext, method: Any, stage: int, data: list[Any]) -> StageWork:
        setting = self.setting
        if setting.past_data_available:  # the tasks before this one, to revisit
            run.past_tasks = PastTasks(self.tasks[:stage], setting.seed)
        # a single-pass stream is scored as it trains: each minibatch predicted before its step
        run.online_meter = OnlineAccuracyMeter(method, setting.task_labels_at_train) if setting.single_pass else None
        method.fit(data[0], None)
        return StageWork(samples=sum(len(loader.dataset) for loader in data) * setting.epochs_per_task)

    def train(self, run: RunContext, train: Callable[[], None]) -> float:
        """Train in one process, or as one of the workers (started by the first fit), after which
        nothing of the replay exchange stays in flight and every worker's share of the stream's
        predict-then-train counts is summed."""
        parallel = self.parallel
        if parallel is None:
            train()
            return 0.0

        def joined_then_trained() -> None:
            # the workers joined before the method trains: a stage that shares jobs out asks each
            # worker's rank first (a resumed run's first stage comes before any fit has launched them)
            run.engine.launch()
            train()

        parallel.timed_stage(joined_then_trained)
        if parallel.channel is not None:
            parallel.channel.wait()
        if run.online_meter is not None:
            from sylvan.run.sharded_evaluation import summed_online_counts

            summed_online_counts(run.online_meter, parallel.workers)
        return parallel.stage_startup

    def evaluate(self, method: Any, seen: int) -> Evaluation:
        """On every task, or on the `seen` first ones where the setting hides the others (their
        entries of the accuracy matrices are then None)."""
        setting, tasks = self.setting, self.tasks
        if not setting.evaluates_seen_tasks_only:
            return evaluate_setting(setting, method, tasks, self.parallel)
        evaluation = evaluate_setting(setting, method, tasks[:seen], self.parallel)
        unseen = [None] * (len(tasks) - seen)
        aware = None if evaluation.aware is None else evaluation.aware + unseen
        return evaluation._replace(accuracies=evaluation.accuracies + unseen, aware=aware)

    def translate_failure(self, error: BaseException) -> BaseException | None:
        """The workers' failure behind `error` (`DataParallel.translate_failure`), or the signal
        that stopped this worker where its peers' broken connections came of that signal."""
        replacement = None if self.parallel is None else self.parallel.translate_failure(error)
        return replacement if replacement is None else interruption_behind(error) or replacement
