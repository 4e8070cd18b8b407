"""How a class enters the registry of settings (`sylvan.settings.base.SETTINGS`) or of methods
(`sylvan.methods.base.METHODS`) by its command-line name: as it is defined, sylvan's own and
those of plugins alike (`register`)."""

from __future__ import annotations


def is_builtin(cls: type) -> bool:
    """Whether `cls` is one of sylvan's own classes, not a plugin's."""
    module = cls.__module__
    return module == "sylvan" or module.startswith("sylvan.")


def register(registry: dict[str, type], cls: type, kind: str) -> None:
    """Enter `cls` in `registry` under its `name`. A plugin's class may not take the name of one
    of sylvan's own `kind`s (setting or method): every run naming it, and every result recorded
    under that name, would silently be the plugin's."""
    previous = registry.get(cls.name)
    if previous is not None and previous is not cls and is_builtin(previous) and not is_builtin(cls):
        raise TypeError(
            f"{cls.__qualname__} takes the name {cls.name!r}, which is sylvan's own {kind} "
            f"({previous.__module__}.{previous.__qualname__}); give it another name"
        )
    registry[cls.name] = cls
