"""How a class enters the registry of settings (`sylvan.settings.base.SETTINGS`) or of methods
(`METHODS`, here, re-exported by `sylvan.methods`) by its command-line name: as it is defined,
sylvan's own and those of plugins alike (`register`); and whether the command line can build a
registered class from its options (`option_class_problem`). The methods' registry lives here, not
with the methods, so that a setting can list the methods that suit it without importing them."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing

COMMAND_LINE_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.\-]*")
# every registered method by its command-line name (filled as `sylvan.methods` and plugins define them)
METHODS: dict[str, type] = {}
NAME_RULE = "a string of letters, digits, '_', '-' and '.' (not starting with '-')"


def is_command_line_name(name: object) -> bool:
    """Whether `name` can name a setting, method or dataset: a string of letters, digits, `_`,
    `-` and `.`, not starting with `-` (it is given on the command line and names folders)."""
    return isinstance(name, str) and COMMAND_LINE_NAME.fullmatch(name) is not None


def is_builtin(cls: type) -> bool:
    """Whether `cls` is one of sylvan's own classes, not a plugin's."""
    module = cls.__module__
    return module == "sylvan" or module.startswith("sylvan.")


def register(registry: dict[str, type], cls: type, kind: str) -> None:
    """Enter `cls` in `registry` under its `name`. A plugin's class may not take the name of one
    of sylvan's own `kind`s (setting or method): every run naming it, and every result recorded
    under that name, would silently be the plugin's. A name is given on the command line and
    names results folders, so it is a word: letters, digits, `_`, `-` and `.`, not first `-`."""
    if not is_command_line_name(cls.name):
        raise TypeError(
            f"{cls.__qualname__}.name is {cls.name!r}: a {kind}'s name is given on the command line "
            f"and names results folders, so it must be {NAME_RULE}, such as 'my_{kind}'"
        )
    previous = registry.get(cls.name)
    if previous is not None and previous is not cls and is_builtin(previous) and not is_builtin(cls):
        raise TypeError(
            f"{cls.__qualname__} takes the name {cls.name!r}, which is sylvan's own {kind} "
            f"({previous.__module__}.{previous.__qualname__}); give it another name"
        )
    registry[cls.name] = cls


def _is_class_variable(annotation: object) -> bool:
    """Whether a class annotation declares a class variable, not a field (as `dataclasses` reads
    it: `ClassVar[...]`, written as an object or, under `from __future__ import annotations`, as text)."""
    if isinstance(annotation, str):
        return re.match(r"^\s*(typing\.|t\.)?ClassVar\b", annotation) is not None
    return annotation is typing.ClassVar or typing.get_origin(annotation) is typing.ClassVar


def option_class_problem(cls: type) -> str | None:
    """Why the command line could not build `cls`, a registered setting or method, from its
    options, or None. Its options are its dataclass fields, and it is built by calling it with
    each of them by keyword. So a subclass that declares new fields must itself be a dataclass
    (otherwise they would silently not be options), and an `__init__` of its own must take every
    field by keyword and need nothing else (otherwise the run would fail after parsing)."""
    own = [name for name, annotation in inspect.get_annotations(cls).items() if not _is_class_variable(annotation)]
    if own and "__dataclass_fields__" not in cls.__dict__:
        return (
            f"{cls.__qualname__} is not a dataclass, so its field(s) {', '.join(own)} would not be options: "
            "decorate it with @dataclass (the options of a setting or method are its dataclass fields)"
        )
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    by_keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes_any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    options = [f.name for f in dataclasses.fields(cls) if f.init]
    missing = [] if takes_any_keyword else [
        name for name in options if not any(p.name == name and p.kind in by_keyword for p in parameters)]
    required = [p.name for p in parameters if p.default is inspect.Parameter.empty and p.name not in options
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    if missing or required:
        problems = ([f"does not take its option(s) {', '.join(missing)}"] if missing else []) + (
            [f"requires {', '.join(required)}, which no option gives"] if required else [])
        return (
            f"{cls.__qualname__}.__init__ {' and '.join(problems)}: the command line builds it with "
            "its dataclass fields as keywords; drop the __init__ and do the set-up in __post_init__ "
            "(calling super().__post_init__()) or in configure()"
        )
    return None


def definition_site(cls: type) -> str:
    """' (FILE, line N)' where `cls` is defined, or '' where its source cannot be found."""
    try:
        return f" ({inspect.getsourcefile(cls)}, line {inspect.getsourcelines(cls)[1]})"
    except (OSError, TypeError):
        return ""
