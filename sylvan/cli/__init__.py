"""The command line: `sylvan --setting NAME --method NAME [options of both]`.

Parsing happens in two steps. First the names (`--setting`, `--method`, `--config_path`,
`--plugin`, `--list`) are read; then simple-parsing builds a parser from the chosen setting's and
method's dataclasses, so that every field is a flag with its comment as help text.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import signal
import sys
import traceback
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, NoReturn

import yaml
from simple_parsing import ArgumentParser
from simple_parsing.help_formatter import SimpleHelpFormatter

from sylvan.cli.process_exit import exit_process, leave_now
from sylvan.errors import ConfigurationError, RunFailedError, RunInterrupted, SylvanError, did_you_mean
from sylvan.methods import METHODS, Method, applicable_methods, check_applicable, get_method
from sylvan.parallel.health import planned_workers, worker_rank, writes_run_folder
from sylvan.registry import definition_site, is_builtin, option_class_problem
from sylvan.run.budget import refuse_resuming_over_budget
from sylvan.run.checkpoints import configuration_changes, latest_checkpoint, nothing_to_resume, run_is_complete
from sylvan.run.experiment import RunOptions, open_tracker, run_config, run_experiment, run_to_the_end
from sylvan.run.folder_lock import RunFolderLock
from sylvan.run.tracking import foreign_checkpoint, log_damage
from sylvan.settings import SETTINGS, Setting, get_setting


def _names_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--setting", help="setting to run (see --list)")
    parser.add_argument("--method", help="method to run (see --list)")
    parser.add_argument("--config_path", help="YAML file of options, e.g. a run's config.yaml")
    parser.add_argument(
        "--plugin", action="append", default=[],
        help="Python file or module that defines extra methods or settings (repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="print the settings tree and the methods that apply")
    parser.add_argument("--resume", help="folder of an interrupted run: train its remaining tasks")
    parser.add_argument("--summarize", nargs="+", help="results folders: mean ± std over seeds of their runs")
    parser.add_argument("--summary_csv", help="with --summarize: also write the table to this CSV file")
    parser.add_argument("--pareto", help="with --summarize: draw accuracy against cost to this PNG (and a CSV)")
    parser.add_argument("--version", action="store_true", help="print the versions of sylvan and its dependencies")
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def summary_tracking(arguments: Sequence[str], pareto: str | None) -> tuple[dict[str, str | None] | None, list[str]]:
    """The W&B options given with `--summarize` (project, entity, group), which log the Pareto
    table, and the arguments left. W&B options without `--pareto` are refused: nothing would be
    logged."""
    parser = argparse.ArgumentParser(add_help=False)
    for name in ("project", "entity", "group"):
        parser.add_argument(f"--wandb_{name}", dest=name)
    tracking, rest = parser.parse_known_args(list(arguments))
    given = {name: value for name, value in vars(tracking).items() if value is not None}
    if not given:
        return None, rest
    if pareto is None or "project" not in given:
        raise ConfigurationError("with --summarize, --wandb_project logs the Pareto table and plot: give --pareto "
                                 "FILE.png and --wandb_project PROJECT (--wandb_entity and --wandb_group with them)")
    return vars(tracking), rest


PLUGIN_ENTRY_POINTS = ("sylvan.methods", "sylvan.settings")


def load_plugins(plugins: Sequence[str], recorded_in: str | None = None) -> None:
    """Import user files or modules, whose Method / Setting subclasses register themselves;
    then what installed packages declare under the entry point groups `sylvan.methods` and
    `sylvan.settings` (`[project.entry-points."sylvan.methods"]` in their pyproject.toml). `recorded_in`
    names the configuration file that listed `plugins`, for the message when one is gone."""
    for plugin in plugins:
        origin = f"--plugin {plugin}" if recorded_in is None else (
            f"plugin {plugin} (named in {recorded_in}; give its new place with --plugin FILE)"
        )
        path = Path(plugin).expanduser()
        if path.suffix == ".py":
            if not path.is_file():
                raise ConfigurationError(f"{origin}: no such file")
            spec = importlib.util.spec_from_file_location(f"sylvan_plugin_{path.stem}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            try:
                spec.loader.exec_module(module)
            except SystemExit as stop:  # nothing would be run, and the command would say nothing
                sys.modules.pop(spec.name, None)
                raise exited_at_import(origin, stop) from None
            except Exception as error:  # the plugin's own code: where it failed, not sylvan's frames
                sys.modules.pop(spec.name, None)
                raise ConfigurationError(f"{origin} failed to load: {failure_site(error)}") from error
        else:
            try:
                importlib.import_module(plugin)
            except SystemExit as stop:
                raise exited_at_import(origin, stop) from None
            except Exception as error:
                missing = isinstance(error, ModuleNotFoundError) and error.name is not None and (
                    plugin == error.name or plugin.startswith(error.name + ".")
                )
                if missing:
                    raise ConfigurationError(f"{origin}: cannot import it ({error})") from error
                raise ConfigurationError(f"{origin} failed to load: {failure_site(error)}") from error
    from importlib.metadata import entry_points

    for group in PLUGIN_ENTRY_POINTS:
        for entry in entry_points(group=group):
            try:
                entry.load()
            except Exception as error:  # a broken installed plugin: say which, not a traceback
                raise ConfigurationError(
                    f"the installed plugin {entry.name} = {entry.value} (entry point group {group}) "
                    f"failed to load ({type(error).__name__}: {error}); fix or uninstall the package that declares it"
                ) from error
    check_plugin_classes()


def check_plugin_classes() -> None:
    """Refuse, before anything is parsed, a plugin's setting or method that the command line
    could not build from its options (`option_class_problem`), naming where it is defined."""
    for registry in (SETTINGS, METHODS):
        for cls in registry.values():
            problem = None if is_builtin(cls) else option_class_problem(cls)
            if problem:
                raise ConfigurationError(f"{problem}{definition_site(cls)}")


def exited_at_import(origin: str, stop: SystemExit) -> ConfigurationError:
    """The refusal of a plugin (`origin`, as messages name it) that called `sys.exit` at import."""
    return ConfigurationError(f"{origin} failed to load: it called sys.exit({stop.code!r}) at import; a plugin "
                              "defines classes, and leaves the command running")


def failure_site(error: BaseException) -> str:
    """`error`, raised while a plugin was imported, with where it was raised: the file and line
    of the innermost frame of the plugin's code, not sylvan's (where a class it defines is
    refused) nor the import machinery's; for a syntax error, the line that does not parse."""
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} ({error.filename}, line {error.lineno})"
    package = Path(__file__).resolve().parents[1]  # sylvan/, whose frames are not the plugin's
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not frame.filename.startswith("<") and package not in Path(frame.filename).resolve().parents]
    site = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{site}"


def recorded_plugins(config: dict[str, Any], source: str) -> list[str]:
    """The plugins a configuration file lists under `plugins` (a run's config.yaml records
    those it was started with)."""
    plugins = config.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigurationError(f"{source}: `plugins` must be a list of files or module names, got {plugins!r}")
    return plugins


def load_run_plugins(given: Sequence[str], config: dict[str, Any], source: str) -> list[str]:
    """Load the plugins of a run: those given with --plugin, which replace any that the
    configuration file `source` records; else the recorded ones. Returns what was loaded."""
    if given:
        load_plugins(given)
        return list(given)
    recorded = recorded_plugins(config, source)
    load_plugins(recorded, recorded_in=source)
    return recorded


def settings_tree(root: type[Setting] = Setting) -> list[str]:
    """The tree of settings, one line each (indented under its parent), with the methods that
    apply to each in a column of its own."""

    def rows(setting: type[Setting], depth: int) -> list[tuple[str, str]]:
        label = "    " * depth + (setting.name if depth else "setting (root)")
        found = [(label, ", ".join(applicable_methods(setting)) or "-")]
        for child in sorted(setting.children(), key=lambda s: s.name):
            found += rows(child, depth + 1)
        return found

    tree = rows(root, 0)
    width = max(len(label) for label, _ in tree) + 2
    return [f"{label:<{width}}methods: {methods}" for label, methods in tree]


def summary(cls: type, limit: int = 100) -> str:
    """The opening sentences of `cls`'s docstring that fit in `limit` characters (at least the
    first, cut at a word with "..." if it alone is longer); "" for a class without one (a
    dataclass without a docstring gets its signature as `__doc__`)."""
    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):
        return ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    text = ""
    for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
        if text and len(text) + 1 + len(sentence) > limit:
            break
        text = f"{text} {sentence}".strip()
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + "..."


def methods_table() -> list[str]:
    """One line per registered method: its name, target setting and summary."""
    return [
        f"  {name:<16} targets {METHODS[name].target_setting.name:<18} {summary(METHODS[name])}"
        for name in sorted(METHODS)
    ]


def general_help() -> str:
    return "\n".join(
        [
            "usage: sylvan --setting SETTING --method METHOD [options]",
            "",
            "Continual learning as a tree of settings; a method applies to its target setting",
            "and every setting below it. Options of a setting and a method are shown by",
            "  sylvan --setting SETTING --method METHOD --help",
            "",
            "settings (and the methods that apply):",
            *("  " + line for line in settings_tree()),
            "",
            "methods:",
            *methods_table(),
            "",
            "general options:",
            "  --list                 print the settings tree with the applicable methods",
            "  --config_path FILE     load options from a YAML file (e.g. a run's config.yaml)",
            "  --resume RUN_DIR       continue an interrupted run from its last finished task",
            "  --summarize DIR ...    mean ± std over seeds of the runs in results folders",
            "                         (--summary_csv FILE also writes the table as CSV;",
            "                         --pareto FILE.png draws accuracy against compute and memory)",
            "  --plugin FILE_OR_MODULE  import extra methods or settings (repeatable)",
            "  --results_dir DIR      where run folders are written (default: results)",
            "  --loggers NAME ...     where the metrics go: csv (default), tensorboard, wandb",
            "  --wandb_project NAME   log to Weights & Biases",
            "  --version              print the versions of sylvan and its dependencies",
        ]
    )


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


def help_formatter(setting_cls: type[Setting]) -> type[HelpFormatter]:
    """The help's formatter for `setting_cls`: its options that it has no use for are left out."""
    hidden = frozenset(f"--{name}" for name in setting_cls.unused_options)
    return type("SettingHelpFormatter", (HelpFormatter,), {"hidden": hidden})


def build_parser(
    setting_cls: type[Setting], method_cls: type[Method], config: dict[str, Any], policy: str | None = None
) -> ArgumentParser:
    """The full parser: the setting's fields, the method's fields, the options of the buffer
    policy `policy` where the method takes them (`policy_options_class`) and the run options,
    with defaults from `config` (a loaded YAML file) where it has them."""
    parser = ArgumentParser(
        prog="sylvan",
        description=f"{method_cls.name} on {setting_cls.name}. {(setting_cls.__doc__ or '').strip()}",
        add_dest_to_option_strings=False,
        formatter_class=help_formatter(setting_cls),
    )
    for name in ("--setting", "--method", "--config_path"):
        parser.add_argument(name, type=str, help=argparse.SUPPRESS)
    parser.add_argument("--plugin", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true", help=argparse.SUPPRESS)
    kind = policy_options_class(method_cls, policy)
    method_values, policy_values = split_policy_options(method_cls, config.get("method_options"), policy, kind)
    sections = {"setting_options": config.get("setting_options"), "method_options": method_values,
                "buffer_options": policy_values, "run": config.get("run")}
    for dest, cls in (("setting_options", setting_cls), ("method_options", method_cls), ("buffer_options", kind),
                      ("run", RunOptions)):
        if cls is None:
            continue
        values = sections[dest]  # None: the section is left out, or empty
        default = None if values is None else cls(**_known_fields(cls, values, dest))
        parser.add_arguments(cls, dest=dest, default=default)
    return parser


def parse_options(
    setting_cls: type[Setting], method_cls: type[Method], config: dict[str, Any], argv: Sequence[str]
) -> tuple[Setting, Method, RunOptions, list[str]]:
    """The setting, the method (with its buffer policy's options, where it takes them) and the
    run options that `argv` and `config` give, and the arguments that are none of theirs.
    `--help` prints the options and exits here."""
    policy = chosen_buffer_policy(method_cls, argv, config)
    args, unknown = build_parser(setting_cls, method_cls, config, policy).parse_known_args(list(argv))
    method: Method = args.method_options
    if getattr(args, "buffer_options", None) is not None:
        method = replace(method, buffer_options=args.buffer_options)
    return args.setting_options, method, args.run, unknown


def chosen_buffer_policy(method_cls: type[Method], argv: Sequence[str], config: dict[str, Any]) -> str | None:
    """The `--buffer_policy` a command chooses for a method that has one: given on the command
    line, else in the config file, else the method's default; None for a method without one."""
    if "buffer_policy" not in option_names(method_cls) or "buffer_options" not in option_names(method_cls):
        return None  # (an off-policy RL method's replay buffer has no policy of those)
    given = None
    for position, arg in enumerate(argv):
        if arg == "--buffer_policy" and position + 1 < len(argv):
            given = argv[position + 1]
        elif arg.startswith("--buffer_policy="):
            given = arg.split("=", 1)[1]
    if given is None:
        method_options = config.get("method_options")
        given = method_options.get("buffer_policy") if isinstance(method_options, dict) else None
    return given or next(f.default for f in fields(method_cls) if f.name == "buffer_policy")


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


def load_config(path: str | None, named_by: str = "--config_path") -> dict[str, Any]:
    """The options of the YAML file `path`, checked for a configuration's layout; `named_by`
    says in messages how the file was given (`--config_path FILE`, or a run's folder to resume)."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.load(f, Loader=UniqueKeyLoader) or {}
    except OSError as error:
        raise ConfigurationError(f"{named_by} {path}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise ConfigurationError(f"{named_by} {path} is not a text file (byte {error.start} is not UTF-8); give a "
                                 "YAML file, such as a run's config.yaml") from None
    except DuplicateKey as error:
        raise ConfigurationError(f"{named_by} {path}: {error}; give each option once") from None
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{named_by} {path} is not valid YAML: {error}") from error
    if not isinstance(config, dict):
        raise ConfigurationError(f"{named_by} {path} must hold a mapping of options")
    check_config_keys(config, path, named_by)
    for key in ("setting", "method"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise ConfigurationError(
                f"{named_by} {path}: {key} must be a name (sylvan --list shows them), not {config[key]!r}"
            )
    return config


class DuplicateKey(yaml.YAMLError):
    """A key given twice in one mapping of a configuration file (YAML would keep the last)."""


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives a key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKey(f"{key!r} is given twice (lines {seen[key]} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


CONFIG_KEYS = ("setting", "method", "setting_options", "method_options", "run", "plugins", "plugin_code")
"""What a configuration file may hold at its top level: what a run's config.yaml records."""


def check_config_keys(config: dict[str, Any], path: str, named_by: str = "--config_path") -> None:
    """Refuse a key that a run's config.yaml does not have: ignored, a misspelled or misplaced
    option (`buffer_size: 500` at the top level) would silently run with the default. Where the
    key is an option of a registered setting or method, or a run option, say which section holds it."""
    unknown = sorted(str(key) for key in config if key not in CONFIG_KEYS)
    if not unknown:
        return
    hints = []
    for key in unknown:
        sections = [section for section, classes in (
            ("setting_options", SETTINGS.values()), ("method_options", METHODS.values()), ("run", (RunOptions,)),
        ) if any(key in option_names(cls) for cls in classes)]
        if sections:
            hints.append(f"{key!r} is an option: put it under {' or '.join(sections)}")
        elif did_you_mean(key, CONFIG_KEYS):
            hints.append(f"{key!r}{did_you_mean(key, CONFIG_KEYS)}")
    raise ConfigurationError(
        f"{named_by} {path} has unknown keys {unknown}; a configuration holds "
        f"{', '.join(CONFIG_KEYS)} (the layout of a run's config.yaml)"
        + (". " + "; ".join(hints) if hints else "")
    )


def run(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the experiment, write its results. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names, unparsed = _names_parser().parse_known_args(argv)
    if names.version:
        if unparsed or names.setting or names.method or names.config_path or names.list or names.resume:
            raise ConfigurationError("--version takes no other option: sylvan --version")
        from sylvan.run.provenance import version_text

        print(version_text())
        return 0
    if names.resume:
        if unparsed or names.setting or names.method or names.config_path or names.help or names.list:
            raise ConfigurationError(
                "--resume takes every option from the run's config.yaml: give only --resume RUN_DIR "
                "(and --plugin, only where a plugin file the run used has moved)"
            )
        return resume(Path(names.resume).expanduser(), names.plugin)
    if names.summarize or names.summary_csv or names.pareto:
        tracking, unparsed = summary_tracking(unparsed, names.pareto)
        if not names.summarize or unparsed or names.setting or names.method or names.config_path or names.list:
            raise ConfigurationError(
                "--summarize takes results folders (and --summary_csv FILE, --pareto FILE.png, --plugin FILE, "
                "and with --pareto, --wandb_project, --wandb_entity, --wandb_group) only: sylvan --summarize results "
                "[--summary_csv summary.csv] [--pareto pareto.png [--wandb_project PROJECT]]"
            )
        from sylvan.analysis.summary import summarize

        load_plugins(names.plugin)  # so that options a run did not record take the plugin's defaults
        print(summarize(names.summarize, names.summary_csv, names.pareto, tracking))
        return 0
    config = load_config(names.config_path)
    plugins = load_run_plugins(names.plugin, config, names.config_path or "")
    if names.list:
        print("\n".join(settings_tree()))
        return 0
    setting_name = names.setting or config.get("setting")
    method_name = names.method or config.get("method")
    if not setting_name or not method_name:
        if names.help:
            print(general_help())
            return 0
        missing = " and ".join(n for n, v in (("--setting", setting_name), ("--method", method_name)) if not v)
        raise ConfigurationError(
            f"missing {missing}. Example: sylvan --setting class_incremental --method rehearsal. "
            "Run `sylvan --list` to see the settings and the methods that apply to each."
        )
    setting_cls, method_cls = get_setting(setting_name), get_method(method_name)
    if setting_cls is Setting:
        raise ConfigurationError("the root setting is abstract; pick one of its descendants (sylvan --list)")
    check_applicable(method_cls, setting_cls)
    setting, method, options, unknown = parse_options(setting_cls, method_cls, config, argv)
    if unknown:
        raise ConfigurationError(unknown_options_message(unknown, setting_cls, method_cls))
    try:
        run_experiment(setting, method, options, plugins)
    except KeyboardInterrupt:
        if writes_run_folder(setting):
            raise
        return 130  # a data-parallel worker other than 0, which writes nothing: worker 0 says what was kept
    return 0


def resume(run_dir: Path, plugins: Sequence[str] = ()) -> int:
    """Continue the run in `run_dir` after its last checkpoint, with the options and plugins it
    was started with (`plugins`, where given, replace the recorded ones), writing into the
    same folder."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigurationError(f"--resume {run_dir}: no config.yaml there; give the folder of a run")
    config = load_config(str(config_path), named_by=f"--resume {run_dir}: the run's configuration")
    plugins = load_run_plugins(plugins, config, str(config_path))
    setting_cls, method_cls = get_setting(config.get("setting", "")), get_method(config.get("method", ""))
    setting, method, options, _ = parse_options(setting_cls, method_cls, config, [])
    setting.check_resumable()
    method.check_resumable()
    folder_lock = RunFolderLock(run_dir)
    if writes_run_folder(setting):  # before anything is read: another process may be writing the folder
        folder_lock.acquire()
    checkpoint = latest_checkpoint(run_dir, worker_rank(setting), planned_workers(setting))
    if run_is_complete(run_dir, checkpoint.stage):  # said before anything is restored or announced as resuming
        raise nothing_to_resume(run_dir)
    refuse_resuming_over_budget(checkpoint.results, checkpoint.stage, getattr(setting, "memory_budget", None),
                                method.name)
    damage = (foreign_checkpoint(run_dir, checkpoint) or log_damage(run_dir, checkpoint.tracker_state or {})
              if writes_run_folder(setting) else None)
    if damage:
        raise ConfigurationError(damage)
    config = run_config(setting, method, options, plugins)
    changes = configuration_changes(checkpoint.config, config)
    if changes:  # resumed, the run would be part one configuration and part another, recorded as the second
        raise ConfigurationError(
            f"--resume {run_dir}: its config.yaml no longer describes the run its checkpoints come from "
            f"({'; '.join(changes)}); put the recorded values back, or start a new run with the new ones"
        )
    if not writes_run_folder(setting):  # a data-parallel worker other than 0: it writes its checkpoints' parts only
        try:
            setting.apply(method, None, resume=checkpoint)
        except KeyboardInterrupt:
            return 130  # worker 0 says what was kept
        return 0
    stages = setting.stages()  # its data loaded: missing data is refused before anything is written
    tracker = open_tracker(options, run_dir.name, config, resume_dir=run_dir, folder_lock=folder_lock)
    print(f"[sylvan] resuming {method_cls.name} on {setting_cls.name} after stage {checkpoint.stage + 1}, "
          f"results in {run_dir}", flush=True)
    run_to_the_end(setting, method, tracker, resume_from=checkpoint, stages=stages)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: user mistakes print one paragraph and exit with status 2."""
    from sylvan.parallel.worker_processes import FINISHING_WAIT, STOPPING_WAIT, end_started_workers

    wait = STOPPING_WAIT  # however the run ends, the worker processes it started end with it
    try:
        status = run(argv)
        wait = FINISHING_WAIT
    except RunFailedError as error:
        # every data-parallel worker may fail alike (a divergence: their weights are the same);
        # each says which it is
        from sylvan.parallel.health import global_rank

        worker = f" (worker {global_rank()})" if global_rank() else ""
        print(f"sylvan{worker}: run failed: {error}", file=sys.stderr)
        end_started_workers(wait)
        # a broken process group can abort in its destructors at interpreter exit: leave now
        # (every result was already written, atomically)
        leave_now(1)
    except SylvanError as error:
        print(f"sylvan: error: {error}", file=sys.stderr)
        sys.exit(2)
    except RunInterrupted as interrupted:
        print(f"sylvan: {interrupted}", file=sys.stderr)
        sys.exit(interrupted.exit_status)
    except KeyboardInterrupt:  # outside the training (loading data, starting up)
        print("sylvan: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the output's reader is gone (`sylvan --help | head -1`): nobody to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is still buffered goes nowhere
        sys.exit(128 + signal.SIGPIPE)
    finally:
        end_started_workers(wait)
    sys.exit(status)


def console() -> NoReturn:
    """The `sylvan` command and `python cli.py`: `main`, then `exit_process`, which skips the
    interpreter's teardown (1.5 to 2 s of garbage collection once torch and Lightning are
    loaded) after doing what a normal exit does (see sylvan/cli/process_exit.py)."""
    from sylvan.parallel.worker_processes import die_with_launcher

    die_with_launcher()  # a data-parallel worker: ends with the worker that started it
    try:
        main()
    except SystemExit as stop:
        exit_process(stop.code)
    exit_process(0)


if __name__ == "__main__":
    console()
