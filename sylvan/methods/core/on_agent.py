"""A continual-learning method on the reinforcement-learning branch: the method's part applied to
an agent, the learner of that branch.

On a supervised setting a method such as `ewc` trains its own classifier. On a reinforcement-
learning setting the learner is an agent (`sac`, `dqn`, chosen with `--agent`): it acts, stores
transitions and takes gradient steps by its algorithm, and the method brings its part to it
(`Method.agent_part`: a penalty that anchors the agent's networks, masks, a projection of the
gradient, a replay of past tasks). `OnAgent(method, agent)` is that pair, run like any method:
the agent trains, holding the part, which the agent's losses, gradients and task ends reach
(`sylvan.methods.core.agent`). Its name, results and run folder are the method's.

On the command line, the pair's options are the method's own (those of its part: `--ewc_lambda`;
not those of its supervised learner, such as `--backbone`), `--agent` and the agent's options. A
method option that the agent also has is given as `--<method>_<option>` (ewc's `--gamma`, the
decay of its Fisher information, is `--ewc_gamma` beside the agent's discount `--gamma`).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import fields
from typing import Any

from simple_parsing.docstring import get_attribute_docstring

from sylvan.errors import ConfigurationError
from sylvan.methods.core.agent import Agent
from sylvan.methods.core.base import Method
from sylvan.registry import METHODS


def agents() -> dict[str, type[Agent]]:
    """The registered agents, by name."""
    return {name: cls for name, cls in sorted(METHODS.items()) if getattr(cls, "is_agent", False)}


def default_agent(action_space_kind: str) -> str:
    """The agent a method is applied to where none is chosen: `sac` for continuous actions,
    `dqn` for discrete ones."""
    return "sac" if action_space_kind == "continuous" else "dqn"


def agent_class(name: str, method_name: str) -> type[Agent]:
    """The agent named `name`, or a clear error listing them."""
    known = agents()
    if name not in known:
        raise ConfigurationError(f"--agent {name!r}: no such agent; the agents {method_name} applies to: "
                                 f"{', '.join(known)}")
    return known[name]


def learner_options(method_cls: type[Method]) -> set[str]:
    """The options of `method_cls` that belong to the supervised learner it trains (learning
    rate, optimizer, network): on an agent, the agent's own options take their place."""
    from sylvan.methods.core.supervised import SupervisedMethod

    return {f.name for f in fields(SupervisedMethod)} if issubclass(method_cls, SupervisedMethod) else set()


def part_options(method_cls: type[Method], agent_cls: type[Agent]) -> dict[str, str]:
    """{flag name: the method's field}: the options of `method_cls` that act on an agent (every
    option but its learner's), named `<method>_<option>` where the agent has an option of that name."""
    agent_names = {f.name for f in fields(agent_cls) if f.init}
    skipped = learner_options(method_cls) | set(method_cls.classifier_options)
    return {(f"{method_cls.name}_{f.name}" if f.name in agent_names else f.name): f.name
            for f in fields(method_cls) if f.init and f.name not in skipped}


REGULARIZE_CRITIC_HELP = (
    "the method's part acts on every network the agent trains (sac's critic too), not only on those it acts "
    "with (the policy; dqn's Q-network): Continual World's regularize_critic")


def pair_options_class(method_cls: type[Method], agent_cls: type[Agent]) -> type:
    """The dataclass of a method's options on an agent (`part_options`), for the command line's
    parser: each field as the method's (type, default, help), under its flag's name."""
    hints = typing.get_type_hints(method_cls)
    made = []
    for flag, name in part_options(method_cls, agent_cls).items():
        original = next(f for f in fields(method_cls) if f.name == name)
        docstring = get_attribute_docstring(method_cls, name)
        help_text = docstring.comment_inline or docstring.comment_above or docstring.docstring_below or ""
        default = ({"default": original.default} if original.default is not dataclasses.MISSING
                   else {"default_factory": original.default_factory})
        metadata = {**original.metadata, "help": help_text}
        made.append((flag, hints[name], dataclasses.field(**default, metadata=metadata)))
    critic = dataclasses.field(default=False, metadata={"help": REGULARIZE_CRITIC_HELP})
    made.append(("regularize_critic", bool, critic))
    return dataclasses.make_dataclass(f"{method_cls.__name__}On{agent_cls.__name__}Options", made)


class AppliesToAgents:
    """What a continual-learning method adds to apply to reinforcement-learning agents as well:
    its part for an agent (`agent_part`), and on a reinforcement-learning setting, itself applied
    to the default agent for the kind of actions where no agent was chosen (`on_setting`). A
    method lists it first among its bases: `class EWC(AppliesToAgents, WeightRegularization)`."""

    def agent_part(self, agent: Agent) -> Any:
        """The part this method brings to `agent` (a penalty, masks, a projection, a replay; see
        `sylvan.methods.core.agent` for what a part sees of the agent)."""
        raise NotImplementedError

    def on_setting(self, setting: Any) -> Method:
        kind = getattr(setting, "action_space_kind", None)
        return self if kind is None else on_agent(self, None, kind)  # type: ignore[arg-type]


class OnAgent(Method):
    """`method`'s part applied to `agent`, run as one method named after `method`. Anything the
    run asks of a method that the pair does not answer itself is the agent's."""

    def __init__(self, method: Method, agent: Agent, regularize_critic: bool = False) -> None:
        """`regularize_critic`: the part acts on every network of the agent, not only on those it
        acts with (`Agent.protected_networks`)."""
        if not type(method).applies_to_agents():
            raise ConfigurationError(f"method {method.name!r} has no part for reinforcement-learning agents")
        self.method, self.agent, self.regularize_critic = method, agent, regularize_critic
        agent.regularizes_all_networks = regularize_critic
        self.name = method.name
        self.target_setting = method.target_setting
        self.action_spaces = tuple(getattr(agent, "action_spaces", ("discrete",)))

    def __getattr__(self, name: str) -> Any:
        if name in ("method", "agent", "regularize_critic"):  # not set yet (copying an unconfigured pair)
            raise AttributeError(name)
        return getattr(self.agent, name)

    def __repr__(self) -> str:
        return f"OnAgent({self.method!r}, {self.agent!r})"

    @property
    def components(self) -> tuple[Method, Agent]:
        """The method and the agent: where their classes are a plugin's, the run records it."""
        return self.method, self.agent

    def is_applicable(self, setting: Any) -> bool:  # an instance's, not the class's
        return self.method.is_applicable(setting) and self.agent.is_applicable(setting)

    def on_setting(self, setting: Any) -> Method:
        return self

    def check_resumable(self) -> None:  # the agent's state holds the part's
        self.agent.check_resumable()

    def validate_for(self, setting: Any) -> None:  # the method's own checks are of its supervised learner
        self.agent.validate_for(setting)

    def configure(self, run: Any) -> None:
        self.agent.configure(run)
        self.run = self.agent.run
        self.agent.hold(self.method.name, lambda: self.method.agent_part(self.agent))

    def fit(self, train_data: Any, val_data: Any = None) -> None:
        self.agent.fit(train_data, val_data)

    def predict(self, x: Any, task_labels: Any = None) -> Any:
        return self.agent.predict(x, task_labels)

    def on_task_start(self, task_id: int | None) -> None:
        self.agent.on_task_start(task_id)

    def on_task_end(self, task_id: int | None) -> None:
        self.agent.on_task_end(task_id)

    def skip_stage(self, loaders: Any) -> None:
        self.agent.skip_stage(loaders)

    def state_dict(self) -> dict[str, Any]:
        return self.agent.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state)

    def runtime_stats(self) -> dict[str, float]:
        return self.agent.runtime_stats()

    def hparams(self) -> dict[str, Any]:
        """The method's options on the agent (under their flags' names), the agent's name and its
        options: what a run's config.yaml records, and what the command line parses back."""
        own = self.method.hparams()
        options = {flag: own[name] for flag, name in part_options(type(self.method), type(self.agent)).items()}
        return {**options, "regularize_critic": self.regularize_critic, "agent": self.agent.name,
                **self.agent.hparams()}


def on_agent(method: Method, agent: Agent | None, action_space_kind: str) -> OnAgent:
    """`method` applied to `agent`, or to the default agent for the kind of actions."""
    return OnAgent(method, agent if agent is not None else METHODS[default_agent(action_space_kind)]())
