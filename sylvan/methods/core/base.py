"""The method contract: a dataclass of hyperparameters, a target setting, and a few hooks.

A method applies to its `target_setting` and to every setting below it in the tree. Defining a
subclass with a `name` registers it: it is then listed, parsed, run and tested like the built-in
methods, on every setting it applies to.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch.utils.data import DataLoader

from sylvan.errors import (
    ConfigurationError,
    require_at_least,
    require_finite_numbers,
    require_in,
    unknown_name,
)
from sylvan.registry import METHODS, register
from sylvan.settings.base import Setting

if TYPE_CHECKING:
    from sylvan.run.context import RunContext

# hooks where a method usually keeps state that outlives a training stage (see check_resumable)
STATE_HOOKS = ("configure", "on_task_start", "on_task_end", "pretrain", "fit", "after_backward", "after_step")



def state_copy(value: Any) -> Any:
    """A copy of a declared state attribute, sharing no tensor with it: tensors on the CPU,
    containers copied through, numbers and None as they are."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {key: state_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(state_copy(item) for item in value)
    return copy.deepcopy(value)


def has_own_state(value: Any) -> bool:
    """Whether `value` saves and restores itself (a network, an optimizer, a buffer, a part)."""
    return callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None))


def saved_state(value: Any) -> Any:
    """What a checkpoint keeps of the declared state attribute `value`: a random generator's
    state, the `state_dict()` of an object that has one, else a copy (`state_copy`)."""
    if isinstance(value, torch.Generator):
        return value.get_state()
    if has_own_state(value) and not isinstance(value, type):
        return value.state_dict()
    return state_copy(value)


def restored_state(current: Any, saved: Any) -> Any:
    """The declared state attribute whose value is now `current` (as `configure` left it), put
    back to `saved`: a generator, a network, an optimizer or a buffer restores itself in place
    (what holds it, such as an optimizer holding parameters, keeps holding it); a trained
    tensor (a parameter) takes the saved values in place; a tensor comes back on the device the run keeps it on;
    anything else is a copy of `saved`."""
    if isinstance(current, torch.Generator):
        current.set_state(saved)
        return current
    if has_own_state(current) and not isinstance(current, type) and not isinstance(current, torch.Tensor):
        current.load_state_dict(saved)
        return current
    if isinstance(current, torch.Tensor) and current.requires_grad:  # a parameter an optimizer holds
        with torch.no_grad():
            current.copy_(saved)
        return current
    if isinstance(current, torch.Tensor) and isinstance(saved, torch.Tensor):
        return saved.to(current.device).clone()
    return state_copy(saved)


@dataclass
class Method:
    """Base of every method. Hooks, in the order a setting calls them:

    - `configure(run)`: once, before anything (build the model from the setting's spaces, read
      through the run context, which the method keeps as `self.run`);
    - `on_task_start(task_id)` / `on_task_end(task_id)`: only where task boundaries are known;
      `task_id` is None where task labels are hidden at training time;
    - `fit(train_data, val_data)`: once per task, or once for the whole stream;
    - `predict(x, task_labels)`: returns one score per class, shape (batch, num_classes);
      `task_labels` is None wherever the setting hides them.
    """

    name: ClassVar[str] = ""
    replays: ClassVar[bool] = False  # replays through the run's replay channel (`RunContext.replay_channel`)
    # options that act only where the method is applied to a reinforcement-learning agent (hidden from a
    # supervised setting's --help, refused there), and options of its supervised learner alone (not offered
    # beside an agent, as the learner's own, such as --lr and --backbone, are not)
    agent_options: ClassVar[tuple[str, ...]] = ()
    classifier_options: ClassVar[tuple[str, ...]] = ()
    target_setting: ClassVar[type[Setting]] = Setting

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            register(METHODS, cls, "method")

    def __post_init__(self) -> None:
        require_finite_numbers(self)
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigurationError` for hyperparameters that make no sense."""

    def require_at_least(self, minimum: float, *names: str, strict: bool = False) -> None:
        """Raise `ConfigurationError`, naming the flag, for the first of the hyperparameters
        `names` below `minimum` (at or below it with `strict`)."""
        require_at_least(self, minimum, *names, strict=strict)

    def require_in(self, low: float, high: float, *names: str, low_open: bool = False, high_open: bool = False) -> None:
        """Raise `ConfigurationError`, naming the flag, for the first of the hyperparameters
        `names` outside [low, high] (`low_open` / `high_open` leave that end out)."""
        require_in(self, low, high, *names, low_open=low_open, high_open=high_open)

    def validate_for(self, setting: Setting) -> None:
        """Raise `ConfigurationError` for hyperparameters that make no sense on `setting` (e.g. a
        memory too small for its classes). Called before a run starts, before anything is written."""

    @classmethod
    def is_applicable(cls, setting: Setting | type[Setting]) -> bool:
        """True when `setting` is the target setting or one of its descendants."""
        setting_type = setting if isinstance(setting, type) else type(setting)
        return issubclass(setting_type, cls.target_setting)

    @classmethod
    def applies_to_agents(cls) -> bool:
        """Whether the method has a part for reinforcement-learning agents (`agent_part`: see
        `sylvan.methods.core.on_agent.AppliesToAgents`)."""
        return callable(getattr(cls, "agent_part", None)) and not getattr(cls, "is_agent", False)

    def on_setting(self, setting: Setting) -> Method:
        """What runs on `setting`: the method itself (a method that applies to agents answers
        otherwise on a reinforcement-learning setting: `AppliesToAgents`)."""
        return self

    def configure(self, run: RunContext | Setting) -> None:
        """Prepare for a run (build the model from the setting's spaces): `run` is the run
        context `Setting.apply` makes (`sylvan.run.context`), which the method keeps as
        `self.run`; given a bare setting (a script, a test), a one-process run of it."""
        from sylvan.run.context import RunContext

        self.run = run if isinstance(run, RunContext) else RunContext.standalone(run)
        self.parts.clear()  # a run's parts are its own

    @property
    def joint_training(self) -> bool:
        """True for a method that learns nothing before the setting's last training stage and
        then trains on every task's data at once: its results leave out the metrics across stages
        (`Results.joint_training`), since the rows before the last are an untrained network's."""
        return False

    @property
    def pixel_fields(self) -> tuple[str, ...]:
        """The fields of a rehearsal buffer to keep as uint8 pixels (`RehearsalBuffer.pixel_fields`):
        the inputs "x", where the run's are images given as float k / 255 (`RunContext.pixel_inputs`)."""
        return ("x",) if self.run.pixel_inputs else ()

    def on_task_start(self, task_id: int | None) -> None:
        """Called when a task starts, where boundaries are known."""

    def on_task_end(self, task_id: int | None) -> None:
        """Called when a task ends, where boundaries are known. The parts the method holds are
        told here (`hold`): an override calls this first, as it would any base's."""
        for part in self.parts.values():
            part.on_task_end()

    def hold(self, name: str, make: Callable[[], Any]) -> Any:
        """The part `name` of this method (`sylvan.methods.parts`), made by `make()` the first
        time it is asked for in a run (two bases of a method asking for the same part share it).
        A part has `on_task_end()`, `state_dict()` and `load_state_dict(state)`: it is told when a
        task ends, and its state goes into the method's checkpoints beside the method's own."""
        if name not in self.parts:
            self.parts[name] = make()
        return self.parts[name]

    @property
    def parts(self) -> dict[str, Any]:
        """The parts this method holds in the current run, by name."""
        return self.__dict__.setdefault("_parts", {})

    def pretrain(self, train_data: DataLoader) -> None:
        """The pre-training phase of a setting that has one (`osaka`): tasks of the pre-training
        distribution to learn from before the stream begins. By default, ordinary training on
        them (`fit`); a method that learns otherwise from them (a meta-learner) overrides this."""
        self.fit(train_data, None)

    def fit(self, train_data: DataLoader, val_data: DataLoader | None = None) -> None:
        raise NotImplementedError

    def predict(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Class scores (batch, classes) for inputs `x`, wherever `x` lies: the scores come
        back on `x`'s device, whichever device the method computes on."""
        raise NotImplementedError

    @classmethod
    def declared_state(cls) -> tuple[str, ...]:
        """The attributes its classes declare as state (`state_attributes`), bases first."""
        names = tuple(dict.fromkeys(name for klass in reversed(cls.__mro__)
                                    for name in vars(klass).get("state_attributes", ())))
        if "parts" in names:
            raise TypeError(f"{cls.__name__} declares a state attribute named 'parts', the key of its parts' state")
        return names

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint of this method holds (model weights, buffers, ...): everything that
        changes during a run and that the next stages depend on. Here: the state of each part it
        holds, under the part's name in "parts" (so that two parts never save the same key), and
        the attributes its classes declare (`state_attributes`: tensors, numbers, lists and
        dicts of them, copied; networks, optimizers, buffers and random generators, by their own
        state). A class with state of another kind overrides this and `load_state_dict` (see
        `check_resumable`)."""
        state: dict[str, Any] = {"parts": {name: part.state_dict() for name, part in self.parts.items()}}
        for name in self.declared_state():
            state[name] = saved_state(getattr(self, name))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what `state_dict` returned, after `configure` (resuming a run)."""
        parts = state.get("parts")
        for name, part in self.parts.items():
            # a checkpoint written before parts had names of their own holds their keys at its top
            part.load_state_dict(state if parts is None else parts[name])
        for name in self.declared_state():
            setattr(self, name, restored_state(getattr(self, name, None), state[name]))

    @classmethod
    def check_resumable(cls) -> None:
        """Raise `ConfigurationError` unless a run of this method can be resumed exactly. A class
        of the method that defines `state_dict`, or a hook where state that outlives a stage is
        usually kept (`STATE_HOOKS`), must itself, or through a subclass, define
        `load_state_dict`, declare its state (`state_attributes`), or declare with
        `checkpoint_complete = True` that what it inherits already saves all its state. So a
        method that never thought of checkpoints is refused rather than resumed without some of
        its state."""
        for klass in cls.__mro__:  # the method's own class first, then its bases
            own = klass.__dict__
            if klass is Method or "load_state_dict" in own or own.get("checkpoint_complete"):
                return  # this class restores (or vouches for) its own state and its bases'
            if "state_attributes" in own:
                continue  # its state is declared: the base's state_dict saves it; its bases answer for theirs
            overridden = [name for name in ("state_dict", *STATE_HOOKS) if name in own]
            if issubclass(klass, Method) and overridden:
                raise ConfigurationError(
                    f"method {cls.name!r} cannot resume a run: {klass.__name__} overrides "
                    f"{', '.join(overridden)} but not load_state_dict, so its checkpoints may miss some "
                    "of its state. Save that state in state_dict and restore it in load_state_dict (or "
                    "set checkpoint_complete = True in the class if the inherited ones hold it all)"
                )

    def skip_stage(self, loaders: list[DataLoader]) -> None:
        """Resuming: a stage trained before the interruption goes by without training (its
        effect is in the restored state). A method that keeps the data it was given outside
        its state (`from_scratch`) takes them here."""

    def runtime_stats(self) -> dict[str, float]:
        """Timings of the method's own machinery so far (written to `runtime.json`, never to
        `results.json`: they vary from run to run). None by default."""
        return {}

    def hparams(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def get_method(name: str) -> type[Method]:
    """The method class registered under `name`."""
    if name not in METHODS:
        raise unknown_name("method", name, list(METHODS))
    return METHODS[name]


def joined_state(state: dict[str, Any], **entries: Any) -> dict[str, Any]:
    """`state` (what a base's `state_dict` returned) with `entries` added, for a class that saves
    state of its own beside its bases'; a `TypeError` where an entry would replace a key a base
    (or a part, or a declared attribute) already saves, which would then be lost."""
    clash = sorted(set(entries) & set(state))
    if clash:
        raise TypeError(f"two parts of the method's state would be saved under the same key: {', '.join(clash)}")
    return {**state, **entries}
