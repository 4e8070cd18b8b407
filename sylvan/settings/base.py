"""The root of the tree of settings, and the registry that maps CLI names to settings.

A setting is a dataclass (its fields are the knobs a user may set) plus class-level assumptions
(`ClassVar`s, so that no flag can loosen them). Children add assumptions: a method that targets a
setting applies to it and to every descendant. The root assumes nothing a supervised problem
would need, so that the reinforcement-learning branch can hang under it too.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import torch

from sylvan.errors import ConfigurationError, refuse_if_given, require_finite_numbers, unknown_name
from sylvan.registry import register

if TYPE_CHECKING:
    from sylvan.analysis.metrics import Results

SETTINGS: dict[str, type[Setting]] = {}

# Knowledge a method may rely on. A child may only turn these on, never off: what holds for the
# parent's methods must hold below it. (`single_pass` is a restriction on the data, not something
# a method relies on, so a child may lift it: class-incremental trains several epochs per task.)
KNOWLEDGE_ASSUMPTIONS = (
    "task_boundaries_known",
    "task_labels_at_train",
    "task_labels_at_test",
    "shared_output_space",
    "data_parallel",
    "past_data_available",
    "pretraining_phase",
)

MAX_SEED = 2**32 - 1  # the largest seed every generator of a run accepts (NumPy's: 32 bits)


@dataclass
class ProgressBarOption:
    """The option of a setting whose training shows a progress bar (a fit's steps, an agent's
    environment steps)."""

    # show a progress bar during training: true (or the bare flag), false, or by
    # default only when the output is a terminal (a log file gets a line per task instead)
    progress_bar: Optional[bool] = field(default=None, metadata={"custom_args": {"const": True}})

    @property
    def shows_progress_bar(self) -> bool:
        """`--progress_bar` as given, else whether the output (where the bar is drawn) is a
        terminal: redrawn in place there, the bar would fill a log with thousands of lines."""
        return sys.stdout.isatty() if self.progress_bar is None else self.progress_bar


@dataclass
class Setting:
    """A non-stationary problem on which a method is trained and evaluated: `apply(method)`."""

    name: ClassVar[str] = "setting"
    task_boundaries_known: ClassVar[bool] = False
    task_labels_at_train: ClassVar[bool] = False
    task_labels_at_test: ClassVar[bool] = False
    shared_output_space: ClassVar[bool] = False
    single_pass: ClassVar[bool] = False
    data_parallel: ClassVar[bool] = False
    past_data_available: ClassVar[bool] = False  # past tasks' training data stay open to the method
    # tasks of a pre-training distribution come before the stream (`Method.pretrain`)
    pretraining_phase: ClassVar[bool] = False
    # a restriction on the evaluation, not knowledge: after each stage only the tasks seen so far
    # are evaluated, so that a method never receives a future task's data (the stream of datasets)
    evaluates_seen_tasks_only: ClassVar[bool] = False

    seed: int = 0  # random seed: fixes data order, buffer sampling and initialization

    # what a method may read of the setting through its run, besides its fields and assumptions
    # (children add theirs: `method_facts`)
    facts: ClassVar[tuple[str, ...]] = ()
    # fields inherited from a parent that this setting has no use for, each with why: refused where
    # given (not at their defaults) and left out of --help
    unused_options: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for assumption in KNOWLEDGE_ASSUMPTIONS:
            for parent in cls.__mro__[1:]:
                if getattr(parent, assumption, False) and not getattr(cls, assumption):
                    raise TypeError(
                        f"{cls.__name__} may not loosen {parent.__name__}'s {assumption}"
                    )
        if "name" in cls.__dict__:
            register(SETTINGS, cls, "setting")

    def __post_init__(self) -> None:
        require_finite_numbers(self)
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigurationError` for invalid or contradictory field values."""
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigurationError(f"--seed must be from 0 to {MAX_SEED} (NumPy's generators take 32 bits), "
                                     f"got {self.seed}")
        for name, why in self.unused_options.items():
            refuse_if_given(self, name, f"{why} on {self.name}")

    def apply(self, method: Any, tracker: Any = None, resume: Any = None, callbacks: Sequence[Any] = (),
              stages: Any = None) -> Results:
        """Train `method` on this setting's stream, evaluate it, and return the results, through
        the run loop (`sylvan.run.loop`). `tracker` (see `sylvan.run.tracking`) writes results as
        the run goes; `resume` (a `sylvan.run.checkpoints.RunCheckpoint`) continues an interrupted
        run after its last finished stage; `callbacks` (`sylvan.run.callbacks.Callback`s of one's
        own) join every fit of the run; `stages`: the run's `stages()`, made ahead of it (so that
        missing data is refused before a run folder is written), else made now. Each branch of
        the tree runs it the same way, with its own `stages`; then the setting's work after the
        stream (`after_stream`). The results are complete only once both are done: a run
        stopped in either is resumed from its last checkpoint."""
        from sylvan.run.loop import run_stages

        method = method.on_setting(self) if hasattr(method, "on_setting") else method
        measures_after = type(self).after_stream is not Setting.after_stream
        untrained = replace(method) if measures_after else None  # its hyperparameters, unconfigured
        results = run_stages(self, method, tracker, resume, callbacks, stages)
        if measures_after:
            self.after_stream(untrained, results, tracker)
        results.complete = True
        return results

    def after_stream(self, untrained: Any, results: Results, tracker: Any = None) -> None:
        """What the setting measures once every stage has trained, into `results` (`untrained`:
        a copy of the method as it was before the run configured it). Nothing by default."""

    def stages(self) -> Any:
        """What one run of this setting trains on, stage after stage, and how it is evaluated
        (`sylvan.run.loop.Stages`): its data loaded (or downloaded) now, with the global
        generators seeded with the setting's seed; the run puts the generators back as loading
        left them when it starts (`Stages.begin`), so that a run is the same whether its stages
        were made just before it or ahead of it. The setting keeps none of it."""
        raise NotImplementedError

    def check_method(self, method: Any) -> None:
        """Raise `ConfigurationError` where `method`, though it applies to this kind of setting,
        cannot run on this instance of it (an RL method on an environment whose kind of actions
        it does not handle). Called before a run starts, before anything is written."""

    @classmethod
    def method_facts(cls) -> frozenset[str]:
        """The names a method may read of this setting through its run: the fields, the
        assumptions, the name, and the derived facts the setting and its parents list in `facts`."""
        from dataclasses import fields

        declared = {name for klass in cls.__mro__ for name in vars(klass).get("facts", ())}
        return frozenset({f.name for f in fields(cls)} | set(KNOWLEDGE_ASSUMPTIONS) | declared
                         | {"name", "single_pass"})

    def planned_stages(self) -> int:
        """The training stages a run of this setting has: one per task where boundaries are
        known, else one (a child that stages otherwise says so)."""
        return getattr(self, "nb_tasks", 1) if self.task_boundaries_known else 1

    def stage_task_label(self, stage: int) -> int | None:
        """The task label the method's task hooks are given for training stage `stage` (where
        boundaries are known): the stage's task where task labels come with training, else None."""
        return stage if self.task_labels_at_train else None

    def check_resumable(self) -> None:
        """Raise `ConfigurationError` where an interrupted run of this setting cannot be
        resumed from its checkpoints (every setting can, unless it says otherwise)."""

    @classmethod
    def parent(cls) -> type[Setting] | None:
        for base in cls.__bases__:
            if issubclass(base, Setting):
                return base
        return None

    @classmethod
    def children(cls) -> list[type[Setting]]:
        return [s for s in SETTINGS.values() if s.parent() is cls]

    @classmethod
    def assumptions(cls) -> dict[str, bool]:
        names = (*KNOWLEDGE_ASSUMPTIONS, "single_pass")
        return {name: bool(getattr(cls, name)) for name in names}


SETTINGS[Setting.name] = Setting


ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
# Lightning Fabric's precision settings that sylvan's training supports (evaluation runs in float32)
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def check_accelerator(accelerator: str) -> None:
    """Refuse an unknown `--accelerator`, or one that asks for a GPU this machine lacks."""
    if accelerator not in ACCELERATORS:
        raise ConfigurationError(f"--accelerator must be cpu, gpu or auto, got {accelerator!r}")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigurationError(
            f"--accelerator {accelerator} asks for a GPU, and torch finds none on this machine "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --accelerator cpu, "
            "or auto to take a GPU wherever there is one"
        )


def check_precision(precision: str, accelerator: str) -> None:
    """Refuse an unknown `--precision`, or one the device the run trains on cannot do."""
    if precision not in PRECISIONS:
        raise unknown_name("precision", precision, PRECISIONS)
    on_cuda = accelerator_device(accelerator).type == "cuda"
    if precision == "16-mixed" and not on_cuda:
        raise ConfigurationError(
            "--precision 16-mixed (float16 with loss scaling) needs a GPU, and this run trains on the CPU; "
            "use --precision bf16-mixed there, or 32-true"
        )
    if precision == "bf16-mixed" and on_cuda and not torch.cuda.is_bf16_supported():
        raise ConfigurationError(
            f"--precision bf16-mixed: {torch.cuda.get_device_name()} has no bfloat16 support; "
            "use --precision 16-mixed or 32-true"
        )


def check_compile(compile: bool, accelerator: str) -> None:
    """Refuse `--compile` where torch.compile could not build what it generates: on the CPU it
    writes C++ and compiles it at the first step, with `$CXX` or a compiler on the PATH."""
    if not compile or accelerator_device(accelerator).type == "cuda":
        return
    if not any(shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "clang++", "c++")):
        raise ConfigurationError("--compile on the CPU needs a C++ compiler (torch.compile generates C++ and builds "
                                 "it): none of $CXX, g++, clang++ or c++ found; install one, or leave --compile out")


def accelerator_device(accelerator: str) -> torch.device:
    """The device `--accelerator` puts methods on: CUDA where asked for (or `auto`) and present."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def get_setting(name: str) -> type[Setting]:
    """The setting class registered under the CLI name `name`."""
    if name not in SETTINGS:
        raise unknown_name("setting", name, [n for n in SETTINGS if n != Setting.name])
    return SETTINGS[name]
