"""Plugins: files or modules that define methods and settings, loaded before the command is parsed
(`--plugin`, the plugins a run's config.yaml records, and the entry points of installed
packages); a plugin that fails to load is named with the line that failed."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sylvan.errors import ConfigurationError
from sylvan.methods import METHODS
from sylvan.registry import definition_site, is_builtin, option_class_problem
from sylvan.settings import SETTINGS

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
