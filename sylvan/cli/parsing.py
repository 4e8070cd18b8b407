"""The parser of a setting and a method: simple-parsing builds it from their dataclasses (and the
chosen buffer policy's options, and the run options), so that every field is a flag with its
comment as help; `--help` shows the options that apply; arguments that are none of theirs are
named with whose options they are."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from typing import Any

from simple_parsing import ArgumentParser
from simple_parsing.help_formatter import SimpleHelpFormatter

from sylvan.errors import ConfigurationError
from sylvan.methods import METHODS, Method
from sylvan.methods.core.on_agent import OnAgent, agent_class, agents, default_agent, pair_options_class, part_options
from sylvan.run.experiment import RunOptions
from sylvan.settings import SETTINGS, ContinualRLSetting, Setting


class HelpFormatter(SimpleHelpFormatter):
    """simple-parsing's help, less the "(default: ...)" it adds to an option whose help says its
    default in words already ("(default: no budget)", "default: an even split")."""

    hidden: frozenset[str] = frozenset()  # the flags left out: the setting's unused options

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "default:" in action.help.lower():
            return action.help
        return super()._get_help_string(action)

    def _shown(self, actions: Iterable[argparse.Action]) -> list[argparse.Action]:
        return [action for action in actions if not set(action.option_strings) & self.hidden]

    def add_usage(self, usage: Any, actions: Iterable[argparse.Action], groups: Any, prefix: Any = None) -> None:
        super().add_usage(usage, self._shown(actions), groups, prefix)

    def add_arguments(self, actions: Iterable[argparse.Action]) -> None:
        super().add_arguments(self._shown(actions))


def help_formatter(setting_cls: type[Setting], method_cls: type[Method] | None = None) -> type[HelpFormatter]:
    """The help's formatter for `setting_cls` (and `method_cls` on it): the options the setting has
    no use for are left out, and those of the method that act only on an agent, where it has none."""
    hidden = {f"--{name}" for name in setting_cls.unused_options}
    if method_cls is not None and not issubclass(setting_cls, ContinualRLSetting):
        hidden |= {f"--{name}" for name in method_cls.agent_options}
    return type("SettingHelpFormatter", (HelpFormatter,), {"hidden": frozenset(hidden)})


def build_parser(
    setting_cls: type[Setting], method_cls: type[Method], config: dict[str, Any], policy: str | None = None
) -> ArgumentParser:
    """The full parser: the setting's fields, the method's fields, the options of the buffer
    policy `policy` where the method takes them (`policy_options_class`) and the run options,
    with defaults from `config` (a loaded YAML file) where it has them."""
    parser = command_parser(f"{method_cls.name} on {setting_cls.name}.", setting_cls, method_cls)
    kind = policy_options_class(method_cls, policy)
    method_values, policy_values = split_policy_options(method_cls, config.get("method_options"), policy, kind)
    add_sections(parser, {"setting_options": (setting_cls, config.get("setting_options")),
                          "method_options": (method_cls, method_values), "buffer_options": (kind, policy_values),
                          "run": (RunOptions, config.get("run"))})
    return parser


def command_parser(description: str, setting_cls: type[Setting], method_cls: type[Method]) -> ArgumentParser:
    """A parser of sylvan's command line for a setting and a method, `description` before the
    setting's: the names a command gave them by (--setting, --method, --config_path, --plugin,
    --list) parse, hidden from --help."""
    parser = ArgumentParser(prog="sylvan", description=f"{description} {(setting_cls.__doc__ or '').strip()}",
                            add_dest_to_option_strings=False, formatter_class=help_formatter(setting_cls, method_cls))
    for name in ("--setting", "--method", "--config_path"):
        parser.add_argument(name, type=str, help=argparse.SUPPRESS)
    parser.add_argument("--plugin", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true", help=argparse.SUPPRESS)
    return parser


def add_sections(parser: ArgumentParser, sections: dict[str, tuple[type | None, Any]]) -> None:
    """Add each section's dataclass (none where None) under its name, with the config file's values
    for it (None: the section is left out, or empty) as defaults."""
    for dest, (cls, values) in sections.items():
        if cls is not None:
            default = None if values is None else cls(**_known_fields(cls, values, dest))
            parser.add_arguments(cls, dest=dest, default=default)


def parse_options(
    setting_cls: type[Setting], method_cls: type[Method], config: dict[str, Any], argv: Sequence[str]
) -> tuple[Setting, Method, RunOptions, list[str]]:
    """The setting, the method (with its buffer policy's options, where it takes them) and the
    run options that `argv` and `config` give, and the arguments that are none of theirs.
    `--help` prints the options and exits here. A continual-learning method on a reinforcement-
    learning setting comes back applied to its agent (`parse_pair_options`)."""
    if runs_on_agent(setting_cls, method_cls):
        return parse_pair_options(setting_cls, method_cls, config, argv)
    policy = chosen_buffer_policy(method_cls, argv, config)
    args, unknown = build_parser(setting_cls, method_cls, config, policy).parse_known_args(list(argv))
    method: Method = args.method_options
    if getattr(args, "buffer_options", None) is not None:
        method = replace(method, buffer_options=args.buffer_options)
    return args.setting_options, method, args.run, unknown


def runs_on_agent(setting_cls: type[Setting], method_cls: type[Method]) -> bool:
    """Whether `method_cls` runs on `setting_cls` as its part on an agent (`OnAgent`)."""
    return (issubclass(setting_cls, ContinualRLSetting) and not getattr(method_cls, "is_agent", False)
            and method_cls.applies_to_agents())


def chosen_agent(setting_cls: type[Setting], config: dict[str, Any], argv: Sequence[str]) -> str:
    """The `--agent` a command gives (or its config file), else the default for the kind of
    actions of the setting's environment (which is parsed for it, alone)."""
    given = given_option("agent", argv, config)
    if given is not None:
        return str(given)
    parser = ArgumentParser(add_dest_to_option_strings=False, add_help=False)
    values = config.get("setting_options")
    default = None if values is None else setting_cls(**_known_fields(setting_cls, values, "setting_options"))
    parser.add_arguments(setting_cls, dest="setting_options", default=default)
    setting, _ = parser.parse_known_args([arg for arg in argv if arg not in ("-h", "--help")])
    return default_agent(setting.setting_options.action_space_kind)


def parse_pair_options(
    setting_cls: type[Setting], method_cls: type[Method], config: dict[str, Any], argv: Sequence[str]
) -> tuple[Setting, Method, RunOptions, list[str]]:
    """`parse_options` of a continual-learning method on a reinforcement-learning setting: the
    method's options that act on an agent (`part_options`), `--agent` and the agent's options;
    the method comes back as `OnAgent(method, agent)`. A config file's `method_options` hold
    all of them, as the pair's `hparams` records them."""
    agent_cls = agent_class(chosen_agent(setting_cls, config, argv), method_cls.name)
    pair_cls = pair_options_class(method_cls, agent_cls)
    parser = command_parser(f"{method_cls.name} on {setting_cls.name}, applied to the agent {agent_cls.name}.",
                            setting_cls, method_cls)
    parser.add_argument("--agent", type=str, default=agent_cls.name,
                        help=f"the agent {method_cls.name} is applied to: {', '.join(agents())}")
    values = config.get("method_options")
    values = dict(values) if isinstance(values, dict) else values
    agent_values = None
    if isinstance(values, dict):
        values.pop("agent", None)
        agent_names = option_names(agent_cls)
        agent_values = {name: value for name, value in values.items() if name in agent_names}
        values = {name: value for name, value in values.items() if name not in agent_names}
    add_sections(parser, {"setting_options": (setting_cls, config.get("setting_options")),
                          "method_options": (pair_cls, values), "agent_options": (agent_cls, agent_values),
                          "run": (RunOptions, config.get("run"))})
    args, unknown = parser.parse_known_args(list(argv))
    given = vars(args.method_options)
    method = method_cls(**{name: given[flag] for flag, name in part_options(method_cls, agent_cls).items()})
    pair = OnAgent(method, args.agent_options, regularize_critic=given["regularize_critic"])
    return args.setting_options, pair, args.run, unknown


def chosen_buffer_policy(method_cls: type[Method], argv: Sequence[str], config: dict[str, Any]) -> str | None:
    """The `--buffer_policy` a command chooses for a method that has one: given on the command
    line, else in the config file, else the method's default; None for a method without one."""
    if "buffer_policy" not in option_names(method_cls) or "buffer_options" not in option_names(method_cls):
        return None  # (an off-policy RL method's replay buffer has no policy of those)
    given = given_option("buffer_policy", argv, config)
    return given or next(f.default for f in fields(method_cls) if f.name == "buffer_policy")


def given_option(name: str, argv: Sequence[str], config: dict[str, Any]) -> Any:
    """The method option `name` as the command line gives it (its last `--name VALUE` or
    `--name=VALUE`), else as the config file's `method_options` does; None where neither does."""
    given = None
    for position, arg in enumerate(argv):
        if arg == f"--{name}" and position + 1 < len(argv):
            given = argv[position + 1]
        elif arg.startswith(f"--{name}="):
            given = arg.split("=", 1)[1]
    method_options = config.get("method_options")
    if given is None and isinstance(method_options, dict):
        given = method_options.get(name)
    return given


def policy_options_class(method_cls: type[Method], policy: str | None) -> type | None:
    """The options dataclass of the buffer policy `policy` (`POLICY_OPTIONS`) that the command
    line offers for `method_cls`: only the chosen policy's show in `--help` and parse. None for
    a policy without options, and for a method that sets them with fields of its own (`aser`)."""
    if policy is None:
        return None
    from sylvan.buffers import POLICY_OPTIONS

    kind = POLICY_OPTIONS.get(policy)
    if kind is None or option_names(kind) <= option_names(method_cls):
        return None
    return kind


def split_policy_options(
    method_cls: type[Method], values: Any, policy: str | None, kind: type | None
) -> tuple[Any, dict[str, Any] | None]:
    """A config file's `method_options` split into the method's own and those of the chosen
    buffer policy's options `kind`. A run's config.yaml records every policy's options: another
    policy's at its default is left out; another value for it is refused, as it has no effect."""
    if policy is None or not isinstance(values, dict):
        return values, None
    from sylvan.buffers import policy_of_option, policy_option_defaults

    defaults = policy_option_defaults()
    own, taken = {}, {}
    for name, value in values.items():
        owner = policy_of_option(name)
        if owner is None or name in option_names(method_cls):
            own[name] = value
        elif kind is not None and name in option_names(kind):
            taken[name] = value
        elif value != defaults[name]:
            raise ConfigurationError(
                f"config option method_options.{name} {value!r} has no effect: it is the {owner} policy's, "
                f"and --buffer_policy is {policy}"
            )
    return own, (taken if kind is not None else None)


def option_names(cls: type) -> set[str]:
    """The options of the dataclass `cls` (a setting, method or the run options): its init fields."""
    return {f.name for f in fields(cls) if f.init}


def unknown_options_message(unknown: Sequence[str], setting_cls: type[Setting], method_cls: type[Method]) -> str:
    """What to say of command-line arguments that are not options of this setting and method:
    for a flag that another setting or method has (`--buffer_size` given to `naive`), which."""
    lines = [f"unrecognized arguments: {' '.join(unknown)}."]
    if any(arg == "--agent" or arg.startswith("--agent=") for arg in unknown):
        lines.append(f"--agent chooses the reinforcement-learning agent a continual-learning method is applied to, on "
                     f"the RL settings; {method_cls.name} on {setting_cls.name} takes none.")
    registered = [*SETTINGS.values(), *METHODS.values()]
    from sylvan.buffers import policy_of_option

    for flag in (arg.split("=", 1)[0] for arg in unknown if arg.startswith("--")):
        owners = sorted({cls.name for cls in registered if flag[2:] in option_names(cls)})
        policy = policy_of_option(flag[2:])
        if policy is not None and "buffer_options" in option_names(method_cls):
            lines.append(f"{flag} is an option of the {policy} buffer policy: it takes effect with "
                         f"--buffer_policy {policy}.")
        elif owners:
            lines.append(f"{flag} is not an option of {method_cls.name} on {setting_cls.name}, "
                         f"but of {', '.join(owners)}.")
    lines.append(f"`sylvan --setting {setting_cls.name} --method {method_cls.name} --help` lists the options.")
    return " ".join(lines)


def _known_fields(cls: type, values: Any, section: str) -> dict[str, Any]:
    """The options of a config file's `section` for the dataclass `cls`, each checked against
    its field's type (YAML gives ints, floats, strings, lists: a wrong one is a message here,
    not a traceback from the class)."""
    if not isinstance(values, dict):
        raise ConfigurationError(f"config file section {section!r} must be a mapping of options, got {values!r}")
    names = option_names(cls)
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigurationError(
            f"config file section {section!r} has unknown options {unknown}; "
            f"{cls.__name__} accepts {sorted(names)}"
        )
    hints = typing.get_type_hints(cls)
    return {name: _typed_value(value, hints[name], f"{section}.{name}") for name, value in values.items()}


def _typed_value(value: Any, hint: Any, option: str) -> Any:
    """`value` as the type `hint` (int, float, str, bool, optional and list forms of them), or a
    `ConfigurationError` naming `option`; types beyond these are left to the dataclass."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = typing.get_args(hint)
        if value is None and type(None) in kinds:
            return None
        others = [kind for kind in kinds if kind is not type(None)]
        return _typed_value(value, others[0], option) if len(others) == 1 else value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigurationError(f"config option {option} must be a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_typed_value(v, item, option) for v in value]
    if hint in (int, float) and isinstance(value, str):
        try:  # YAML 1.1 reads an exponent without a decimal point (lr: 1e-3) as a string
            value = float(value)
        except ValueError:
            pass
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and number and float(value).is_integer():
        return int(value)
    if hint is float and number:
        return float(value)
    if hint is str and (isinstance(value, str) or number):
        return str(value)
    if hint not in (bool, int, float, str):
        return value
    raise ConfigurationError(f"config option {option} must be {_TYPE_NAMES[hint]}, got {value!r}")


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
