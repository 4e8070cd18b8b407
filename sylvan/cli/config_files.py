"""Configuration files: the YAML a run's config.yaml records and `--config_path` and `--resume`
read, checked for its layout (its keys, no key given twice, text)."""

from __future__ import annotations

from typing import Any

import yaml

from sylvan.cli.parsing import option_names
from sylvan.errors import ConfigurationError, did_you_mean
from sylvan.methods import METHODS
from sylvan.run.experiment import RunOptions
from sylvan.settings import SETTINGS


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
