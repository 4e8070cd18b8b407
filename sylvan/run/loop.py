"""The run loop, one for every setting: check the pair, make the run context, train stage after
stage (the task hooks around each where boundaries are known), evaluate after each, record its
cost, checkpoint, and hand the results to the tracker as they come.

What a setting trains on and how it is evaluated is its `Stages` (`Setting.stages()`): the tasks'
loaders and their test sets (`sylvan.run.supervised.TaskStages`), or environments and greedy
episodes (`sylvan.run.reinforcement.EnvironmentStages`). Everything the run holds lives here and
in its `RunContext`, and is gone when the run returns."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from sylvan.analysis.metrics import Results
from sylvan.errors import RunFailedError
from sylvan.run.accounting import TrainedParameters, record_cost
from sylvan.run.budget import refuse_over_budget, stop_over_budget
from sylvan.run.context import RunContext
from sylvan.run.garbage_collection import resume_after_start_up
from sylvan.run.pairing import check_pair
from sylvan.run.stages import record_stage_end, record_training_episodes, with_task_hooks

if TYPE_CHECKING:
    from sylvan.run.evaluation import Evaluation


class StageWork(NamedTuple):
    """What training one stage went through, beside the method's new state."""

    samples: int  # samples (or environment steps) trained on
    episode_returns: list[float] | None = None  # the returns of its training episodes (reinforcement learning)


class Stages:
    """What one run of a setting trains on, stage after stage, and how it is evaluated. Made by
    `Setting.stages()`, ahead of the run (`run_experiment`, to refuse missing data before a run
    folder is written) or when it starts; closed when it ends."""

    nb_stages: int  # the training stages (one per task where boundaries are known)
    nb_tasks: int  # the tasks every evaluation scores
    parallel: Any = None  # the data-parallel part (`sylvan.parallel.data_parallel.DataParallel`), or None
    pixel_inputs: bool = False  # whether the inputs are uint8 pixels (`RunContext.pixel_inputs`)
    whole_fits_counted: bool = True  # FLOPs: every step of a fit counted, or the method's calls sampled
    # the global generators' states once the stages were made (their loading draws from them)
    generator_states: Any = None

    def begin(self) -> None:
        """When the run starts (before the method is configured): the global generators as making
        the stages left them, whatever ran between (a run folder made, a tracker opened)."""
        if self.generator_states is not None:
            from sylvan.run.checkpoints import restore_rng_states

            restore_rng_states(self.generator_states)

    def new_results(self, method: Any, initial: list[float] | None) -> Results:
        """The results of a run starting now, its accuracies before training `initial`."""
        raise NotImplementedError

    def initial_accuracies(self, method: Any) -> list[float] | None:
        """Every task's accuracy (or return) before any training; None where it is not measured."""
        return self.evaluate(method, seen=self.nb_tasks).accuracies

    def data(self) -> Iterator[Any]:
        """Per stage, what its training hands the method (loaders; a stage index where the data is
        made when the stage trains)."""
        raise NotImplementedError

    def fit(self, run: RunContext, method: Any, stage: int, data: Any) -> StageWork:
        """Hand stage `stage`'s `data` to the method to train on (the task hooks are the loop's)."""
        raise NotImplementedError

    def train(self, run: RunContext, train: Callable[[], None]) -> float:
        """Run `train` (the stage's fit, within its task hooks) where the stage trains: here, or
        in every data-parallel worker. The seconds spent starting workers rather than training."""
        train()
        return 0.0

    def skip(self, method: Any, data: Any) -> None:
        """A stage trained before the interruption of a resumed run: the method is told of it
        with its loaders (`Method.skip_stage`), none where its data are not loaders."""
        method.skip_stage([])

    def evaluate(self, method: Any, seen: int) -> Evaluation:
        """The evaluation after a stage, the first `seen` tasks trained on."""
        raise NotImplementedError

    def record(self, results: Results) -> None:
        """After a stage's evaluation: what the stages measured besides it, into `results`."""

    def resumed(self, results: Results) -> None:
        """Resuming: `results` are the run's after its last finished stage (what `record` put
        there included), before the stages after it train."""

    def translate_failure(self, error: BaseException) -> BaseException | None:
        """The error to raise instead of `error` (a worker's failure, named), or None."""
        return None

    def close(self) -> None:
        """Release what the run held (environments)."""


def run_stages(setting: Any, method: Any, tracker: Any = None, resume: Any = None,
               callbacks: Sequence[Any] = (), stages: Stages | None = None) -> Results:
    """Train `method` on `setting`'s stages (`stages`, made ahead of the run, or `setting.stages()`
    now) and return its results. `tracker` writes them as the run goes; `resume` continues an
    interrupted run after its last finished stage; `callbacks` join every fit. With several
    data-parallel workers, a worker that dies or raises stops the others within
    `--worker_timeout` seconds and worker 0 names it; finished stages are on disk."""
    check_pair(setting, method)
    stages = setting.stages() if stages is None else stages
    resume_after_start_up()  # where a command paused the garbage collector while it started
    try:
        return _run(setting, method, stages, tracker, resume, callbacks)
    except Exception as error:
        replacement = stages.translate_failure(error)
        if replacement is None:
            raise
        raise replacement from (error if isinstance(replacement, RunFailedError) else None)
    finally:
        stages.close()


def _run(setting: Any, method: Any, stages: Stages, tracker: Any, resume: Any, callbacks: Sequence[Any]) -> Results:
    nb_stages, nb_tasks = stages.nb_stages, stages.nb_tasks
    stages.begin()
    run = RunContext(setting, tracker, stages.parallel, stage_count=nb_stages, pixel_inputs=stages.pixel_inputs,
                     callbacks=callbacks)
    method.configure(run)
    refuse_over_budget(method, run, setting.memory_budget)
    if resume is None:
        results, finished = stages.new_results(method, stages.initial_accuracies(method)), -1
    else:
        results, finished = run.checkpointer.restore(method, resume, nb_stages, nb_tasks)
        stages.resumed(results)
    start = time.perf_counter() - results.total_wall_time
    trained = TrainedParameters()
    for stage, data in enumerate(stages.data()):
        if stage <= finished:  # resuming: trained before the interruption
            stages.skip(method, data)
            continue
        stage_start = time.perf_counter()
        trained.start(method)
        run.compute.start_stage(whole=stages.whole_fits_counted)
        try:
            startup, work = _train_stage(setting, method, stages, run, stage, data)
        except BaseException:
            run.compute.abandon()
            raise
        training_flops = run.compute.end_stage()
        results.worker_startup_time += startup
        results.task_train_time.append(time.perf_counter() - stage_start - startup)
        evaluation = stages.evaluate(method, seen=stage + 1)
        results.accuracy_matrix.append(evaluation.accuracies)
        if evaluation.successes is not None:
            results.success_matrix = (results.success_matrix or []) + [evaluation.successes]
        if evaluation.aware is not None:
            results.task_aware_matrix = (results.task_aware_matrix or []) + [evaluation.aware]
        if evaluation.confusion is not None:
            results.confusion_matrix = evaluation.confusion.tolist()
        results.samples_seen.append(work.samples)
        if work.episode_returns is not None:
            record_training_episodes(results, work.episode_returns)
        record_cost(results, run, method, training_flops, evaluation.inference_flops_per_sample,
                    trained.count(method))
        record_stage_end(results, method, stage_start, start)
        if run.online_meter is not None:
            results.online_accuracy = run.online_meter.accuracy
        stages.record(results)
        run.checkpointer.save(stage, method, results)
        if tracker is not None:
            tracker.on_stage_end(results, stage, nb_stages, stage + 1 if nb_stages == nb_tasks else nb_tasks)
        stop_over_budget(results, stage, nb_stages, setting.memory_budget, method.name, tracker)
    return results


def _train_stage(setting: Any, method: Any, stages: Stages, run: RunContext, stage: int, data: Any
                 ) -> tuple[float, StageWork]:
    """Train one stage where it trains (`Stages.train`), its fit within the task hooks; the seconds
    spent starting workers, and what the stage trained on."""
    work: list[StageWork] = []

    def train() -> None:
        with_task_hooks(setting, method, stage, lambda: work.append(stages.fit(run, method, stage, data)))

    startup = stages.train(run, train)
    return startup, work[0]
