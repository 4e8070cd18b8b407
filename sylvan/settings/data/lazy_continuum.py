"""continuum, imported one module at a time as its names are used.

continuum's package `__init__` files import every dataset and scenario the library has, and with
them pandas, scikit-learn and Hugging Face `datasets`: about 1 s of a CPU core that a run on an
in-memory dataset (MNIST read from its files, digits, synthetic) would pay before its first step,
though it needs only `InMemoryDataset`, a scenario and task sets. `install()` puts `continuum`
and its packages `continuum.datasets` and `continuum.scenarios` in `sys.modules` as lazy
packages: their `__init__` files are parsed, not run, and each name one of them would import is
imported from the module that defines it when it is first looked up, so that
`from continuum import ClassIncremental` imports `continuum.scenarios.class_incremental` and what
that module needs, and nothing else. The objects are continuum's own, so nothing a run computes
changes; a dataset that needs the rest (CIFAR through torchvision, CORe50) imports its module then.

A package whose `__init__` does more than import names and set constants (another layout of
continuum) is left to be imported as it is.

`continuum.viz`, the plotting helpers continuum's task sets import, imports matplotlib's pyplot
(about 0.4 s with matplotlib) for functions a run never calls. It is installed as a
`DeferredModule`: a name of one of its functions gives a function that runs the module, once, when
it is first called; any other name runs it when looked up.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

LAZY_PACKAGES = ("continuum", "continuum.datasets", "continuum.scenarios")
DEFERRED_MODULES = ("continuum.viz",)


class LazyPackage(types.ModuleType):
    """A package whose `__init__` imports names from its modules, with each import done when
    its name is first looked up (`sources`: name -> (module, attribute)); `stars` are the
    modules its `from M import *` statements name, looked up last, in their order."""

    def __init__(self, spec: Any, sources: dict[str, tuple[str, str]], stars: list[str],
                 constants: dict[str, Any]) -> None:
        super().__init__(spec.name)
        self.__spec__ = spec
        self.__loader__ = spec.loader
        self.__file__ = spec.origin
        self.__path__ = list(spec.submodule_search_locations)
        self.__package__ = spec.name
        self.__dict__.update(constants)
        self._lazy_sources = sources
        self._lazy_stars = stars

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_lazy_"):  # not set yet
            raise AttributeError(name)
        if name in self._lazy_sources:
            value = self._resolve(*self._lazy_sources[name])
        else:
            value = self._from_stars(name)
            if value is None:
                if importlib.util.find_spec(f"{self.__name__}.{name}") is None:
                    raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
                value = importlib.import_module(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._lazy_sources))

    def _resolve(self, module_name: str, attribute: str) -> Any:
        """`from module_name import attribute`, as the `__init__` would have run it."""
        if module_name == self.__name__:  # `from continuum import datasets`: a module of this package
            return importlib.import_module(f"{module_name}.{attribute}")
        module = importlib.import_module(module_name)
        try:
            return getattr(module, attribute)
        except AttributeError:
            return importlib.import_module(f"{module_name}.{attribute}")

    def _from_stars(self, name: str) -> Any:
        """`name` from the first module of the `from M import *` statements that exports it."""
        for module_name in self._lazy_stars:
            module = importlib.import_module(module_name)
            exported = getattr(module, "__all__", None)
            if exported is None:
                exported = [key for key in vars(module) if not key.startswith("_")]
            if name in exported:
                return getattr(module, name)
        return None


class DeferredModule(types.ModuleType):
    """A module of functions (`functions`: their names) that is run on the first call of one of
    them, or on the first lookup of another name; `loaded()` is the module run."""

    def __init__(self, spec: Any, functions: set[str]) -> None:
        super().__init__(spec.name)
        self.__spec__ = spec
        self.__loader__ = spec.loader
        self.__file__ = spec.origin
        self._deferred_functions = functions
        self._deferred_module: types.ModuleType | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_deferred_") or (name.startswith("__") and self._deferred_module is None):
            raise AttributeError(name)  # not set yet, or asked by the import system (`__path__`)
        if name not in self._deferred_functions:
            return getattr(self.loaded(), name)

        def deferred(*args: Any, **kwargs: Any) -> Any:
            return getattr(self.loaded(), name)(*args, **kwargs)

        deferred.__name__ = deferred.__qualname__ = name
        deferred.__module__ = self.__name__
        setattr(self, name, deferred)
        return deferred

    def loaded(self) -> types.ModuleType:
        """The module, run on the first call (it then replaces this one in `sys.modules`)."""
        if self._deferred_module is None:
            module = importlib.util.module_from_spec(self.__spec__)
            self.__spec__.loader.exec_module(module)
            self._deferred_module = module
            if sys.modules.get(self.__name__) is self:
                sys.modules[self.__name__] = module
        return self._deferred_module


def top_level_functions(source: str) -> set[str]:
    """The names of the functions a module's `source` defines at its top level."""
    return {statement.name for statement in ast.parse(source).body if isinstance(statement, ast.FunctionDef)}


def parse_init(source: str) -> tuple[dict[str, tuple[str, str]], list[str], dict[str, Any]] | None:
    """The names a package `__init__` (its `source`) imports, (module, attribute) each, the
    modules it star-imports and the constants it sets; None where it does anything else."""
    sources: dict[str, tuple[str, str]] = {}
    stars: list[str] = []
    constants: dict[str, Any] = {}
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module:
            for alias in statement.names:
                if alias.name == "*":
                    stars.append(statement.module)
                else:
                    sources[alias.asname or alias.name] = (statement.module, alias.name)
        elif (isinstance(statement, ast.Assign) and len(statement.targets) == 1
              and isinstance(statement.targets[0], ast.Name)):
            try:
                constants[statement.targets[0].id] = ast.literal_eval(statement.value)
            except ValueError:
                return None
        elif not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)):
            return None  # anything but a docstring: run the `__init__` as it is
    return sources, stars, constants


def install() -> bool:
    """Put continuum's packages in `sys.modules` as lazy packages, where none of them is imported
    yet and each `__init__` only imports names; whether they are (installed now or before)."""
    if any(isinstance(sys.modules.get(name), LazyPackage) for name in LAZY_PACKAGES):
        return True
    if any(name in sys.modules for name in LAZY_PACKAGES):
        return False
    packages = []
    for name in LAZY_PACKAGES:
        spec = importlib.util.find_spec(name) if name == LAZY_PACKAGES[0] else _child_spec(packages[0], name)
        if spec is None or spec.origin is None or spec.submodule_search_locations is None:
            return False
        with open(spec.origin, encoding="utf-8") as init:
            parsed = parse_init(init.read())
        if parsed is None:
            return False
        packages.append(LazyPackage(spec, *parsed))
    for package in packages:
        sys.modules[package.__name__] = package
    for package in packages[1:]:
        setattr(packages[0], package.__name__.rpartition(".")[2], package)
    for name in DEFERRED_MODULES:
        spec = _child_spec(packages[0], name)
        if spec is not None and spec.origin is not None and spec.origin.endswith(".py"):
            with open(spec.origin, encoding="utf-8") as module:
                sys.modules[name] = DeferredModule(spec, top_level_functions(module.read()))
    return True


def _child_spec(parent: LazyPackage, name: str) -> Any:
    """The spec of package `name` inside `parent`, found without importing `parent`."""
    return importlib.machinery.PathFinder.find_spec(name, parent.__path__)
