"""Which methods apply to which settings, and the checks of a setting-method pair made before a
run starts. It reads the method registry and the classes it is given, and imports no setting, so
that the run loop (which `Setting.apply` calls) checks a pair without importing back up the tree."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

from sylvan.errors import ConfigurationError, InapplicableMethodError
from sylvan.registry import METHODS

if TYPE_CHECKING:
    from sylvan.methods.core.base import Method
    from sylvan.settings.base import Setting


def applicable_methods(setting: type[Setting]) -> list[str]:
    """Names of the registered methods that apply to `setting`, sorted."""
    return sorted(name for name, cls in METHODS.items() if cls.is_applicable(setting))


def check_pair(setting: Setting, method: Method) -> None:
    """Every check of running `method` on `setting`, made before anything of the run is loaded
    or written: the method applies to the setting (else the methods that do are listed), the
    setting accepts the method (`Setting.check_method`), and the method the setting's
    configuration (`Method.validate_for`). `run_experiment` and every run loop call it; it
    changes nothing, so a second call costs only its time."""
    check_applicable(method, type(setting))
    refuse_agent_options(method, setting)
    setting.check_method(method)
    method.validate_for(setting)


def refuse_agent_options(method: Method, setting: Setting) -> None:
    """Refuse an option that acts only on a reinforcement-learning agent (`Method.agent_options`),
    given a value of its own, on a setting with no agent (a supervised one)."""
    if getattr(setting, "action_space_kind", None) is not None:
        return
    defaults = {f.name: f.default for f in fields(method) if f.init}
    for name in getattr(method, "agent_options", ()):
        if getattr(method, name) != defaults[name]:
            raise ConfigurationError(
                f"--{name} acts only where {method.name} is applied to a reinforcement-learning agent; "
                f"{setting.name} has none"
            )


def target_name(target: type) -> str:
    """How messages and listings name what a method targets: a setting as "the 'name' setting",
    an assumption both branches share (`sylvan.settings.assumptions`) as "settings with <it>"."""
    assumption = target.__dict__.get("assumption_name")
    return f"settings with {assumption}" if assumption else f"the {target.name!r} setting"


def check_applicable(method: Method | type[Method], setting: type[Setting]) -> None:
    """Raise a clear error, listing what does apply, when `method` cannot run on `setting`."""
    if not method.is_applicable(setting):
        raise InapplicableMethodError(
            f"method {method.name!r} targets {target_name(method.target_setting)} and "
            f"does not apply to {setting.name!r}. Methods that apply to {setting.name!r}: "
            f"{', '.join(applicable_methods(setting))}"
        )
