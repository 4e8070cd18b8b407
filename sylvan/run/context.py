"""The run context: what one run of a method on a setting has, made by `Setting.apply` and
handed to the method's `configure`.

A run owns its tracker (results, logs, W&B), its training engine (devices, precision, strategy,
loggers, progress: `sylvan.run.engine`) and the callbacks of its fits, its workers (rank, world
size, jobs, collectives, per-worker seeds: `sylvan.workers.Workers`), the data-parallel part (the
workers' strategy, their launch and failures) and the replay channel; the method trains through the
run's engine (`engine`, `fit_callbacks`) and replays through it (`replay_channel`). What the
method may read of the setting's configuration (its fields, its assumptions, the facts derived
from them, such as `num_classes` or `input_shape`) it reads through the run too; the setting's
run loop stays out of reach, and the setting keeps no state of the run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from sylvan.buffers.channel import LocalReplay
from sylvan.minibatches import minibatch_loader
from sylvan.run.accounting import ComputeAccount
from sylvan.run.checkpointer import Checkpointer
from sylvan.workers import Workers

if TYPE_CHECKING:
    from sylvan.buffers.base import RehearsalBuffer
    from sylvan.parallel.data_parallel import DataParallel
    from sylvan.settings.base import Setting


class RunContext:
    """One run of a method on a setting. Made by `Setting.apply` (or, for a method configured
    outside a run, by `RunContext.standalone`)."""

    def __init__(self, setting: Setting, tracker: Any = None, parallel: DataParallel | None = None,
                 stage_count: int = 1, pixel_inputs: bool = False, callbacks: Sequence[Any] = ()) -> None:
        self.setting = setting
        self.tracker = tracker
        self.parallel = parallel  # None: one process
        # the one owner of which worker this process is and of what the workers share
        self.workers = parallel.workers if parallel is not None else Workers(1, seed=setting.seed)
        self.stage_count = stage_count  # the training stages ahead (one per task where boundaries are known)
        # whether the run's inputs are uint8 pixels k, handed to methods as float32 k / 255, which a
        # rehearsal buffer may keep as the pixels (`RehearsalBuffer.pixel_fields`)
        self.pixel_inputs = pixel_inputs
        self.online_meter: Any = None  # the predict-then-train meter of the stage being trained, if any
        # the finished tasks' training data, where the setting keeps them available (`sylvan.run.past_tasks`)
        self.past_tasks: Any = None
        self.checkpointer = Checkpointer(setting, tracker, self.workers)  # saves and restores the run
        self.compute = ComputeAccount()  # the run's training FLOPs (`sylvan.run.accounting`)
        self._engine: Any = None  # made when a method first trains (`engine`)
        self.callbacks = list(callbacks)  # callbacks of one's own, in every fit (`sylvan.run.callbacks`)

    @classmethod
    def standalone(cls, setting: Setting, stage_count: int | None = None) -> RunContext:
        """A run of `setting` with no tracker, for a method configured outside `Setting.apply`
        (a script, a test): as many stages as the setting plans, data parallel where it is."""
        parallel = None
        if getattr(setting, "world_size", 1) > 1 or setting.data_parallel:
            from sylvan.parallel.data_parallel import DataParallel

            parallel = DataParallel.of(setting)
        stages = setting.planned_stages() if stage_count is None else stage_count
        return cls(setting, parallel=parallel, stage_count=stages)

    def __getattr__(self, name: str) -> Any:
        """The setting's configuration a method may read (`Setting.method_facts`)."""
        setting = self.__dict__.get("setting")
        if setting is not None and name in setting.method_facts():
            return getattr(setting, name)
        raise AttributeError(
            f"a run has no attribute {name!r}: a method reads the run's own parts (tracker, rank, world_size, "
            "engine, replay_channel, ...) and the setting's configuration "
            f"({', '.join(sorted(setting.method_facts())) if setting is not None else 'none yet'})"
        )

    # ----- the workers ------------------------------------------------------------------

    @property
    def world_size(self) -> int:
        """The processes that train this run together (`Workers.world_size`)."""
        return self.workers.world_size

    @property
    def rank(self) -> int:
        """This process's place among them; 0 writes the results, checkpoints and logs."""
        return self.workers.rank

    # ----- training ---------------------------------------------------------------------

    @property
    def engine(self) -> Any:
        """The run's training engine (`sylvan.run.engine.Engine`), made when the method first
        trains: after it configured itself, so that a data-parallel run's strategy carries the
        replay channel it asked for."""
        if self._engine is None:
            from sylvan.run.engine import Engine

            setting = self.setting
            loggers = self.tracker.loggers() if self.tracker is not None else []
            self._engine = Engine(setting.accelerator, setting.precision, self.parallel, loggers,
                                  progress_bar=getattr(setting, "shows_progress_bar", False),
                                  compile=getattr(setting, "compile", False))
        return self._engine

    def setup(self, module: Any, *optimizers: Any) -> Any:
        """`module` (and its optimizers) set up on the run's device, precision and strategy, for
        a network a method trains in a loop of its own (an expert, a candidate, fast weights):
        the module as Fabric wraps it (its forward runs at the run's precision, through DDP with
        several workers), and the optimizers wrapped alike. Train it with `backward`."""
        return self.engine.setup(module, *optimizers)

    def autocast(self) -> Any:
        """A context in which a method's forward passes run at the run's precision (autocast under
        mixed precision), for calls that are not a `setup` module's forward (a policy's draw)."""
        return self.engine.forward_context()

    def setup_optimizers(self, *optimizers: Any) -> Any:
        """Optimizers of parameters that belong to no network `setup` was given (a learned
        temperature, say), wrapped to step at the run's precision (loss scaling under `16-mixed`)."""
        return self.engine.setup_optimizers(*optimizers)

    def backward(self, loss: Any) -> None:
        """`loss.backward()` at the run's precision (scaled under `16-mixed`) and strategy."""
        self.engine.backward(loss)

    def clip_gradients(self, module: Any, optimizer: Any, max_norm: float) -> Any:
        """Clip the gradients of `module` (as `setup` gave it) to a total norm of `max_norm`, once
        unscaled under `16-mixed`; the total norm before clipping."""
        return self.engine.clip_gradients(module, optimizer, max_norm)

    def loader(self, dataset: Any, batch_size: int, seed_offset: int, shuffle: bool = True) -> Any:
        """A loader of minibatches of `dataset` for a method's own fit (its memory, the union of
        the tasks seen), served as the run serves its stream: in pinned memory when training on a
        GPU, shuffled in an order drawn from the run's seed and `seed_offset` (which the method
        varies from one fit to the next). The engine shards it among the workers."""
        generator = torch.Generator().manual_seed(self.setting.seed * 1000 + seed_offset)
        return minibatch_loader(dataset, batch_size, shuffle, generator, pin_memory=self.setting.pins_batches)

    def fit_callbacks(self, measure_online: bool = True) -> list[Any]:
        """The callbacks of a fit of this run: the predict-then-train meter of an online stage
        (unless the method trains on something other than the stream: `measure_online=False`),
        the callbacks given to the run, and, last, so that the others' work before a step falls
        outside the step's count, the sampled FLOP count (`sylvan.run.accounting`)."""
        meter = [] if self.online_meter is None or not measure_online else [self.online_meter]
        own = [callback for callback in self.callbacks if measure_online or not callback.measures_stream]
        return [*meter, *own, self.compute.callback()]

    def replay_channel(self, buffer: RehearsalBuffer, draws: tuple[int, ...]) -> Any:
        """Where a method replays from and inserts into, around its local `buffer`: the buffer
        itself in one process (`LocalReplay`); with several workers replaying globally, the
        distributed asynchronous rehearsal (`sylvan.buffers.global_replay`), each step's `draws`
        taken uniformly from the union of every worker's buffer, which the workers' strategy
        exchanges ahead of the step."""
        if self.parallel is None or not self.parallel.replays_globally:
            return LocalReplay(buffer)
        from sylvan.buffers.global_replay import GlobalReplay

        channel = GlobalReplay(buffer, draws, synchronous=self.parallel.replay_sync, seed=self.setting.seed,
                               join_batch=False, workers=self.workers)
        self.parallel.channel = channel
        return channel
