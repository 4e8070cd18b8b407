"""continuum's packages imported a module at a time (`sylvan.settings.data.lazy_continuum`): the
in-memory path (here: synthetic data; digits come from scikit-learn) leaves pandas, scikit-learn
and Hugging Face `datasets` unimported, and every name continuum's `__init__` files import is the
same object as with continuum imported as it is."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sylvan.settings.data.lazy_continuum import parse_init

ROOT = Path(__file__).resolve().parents[2]

# Every name the lazy packages' `__init__` files bind, described by what it is (module and
# qualified name), after `prelude`; printed as JSON.
DESCRIBE_NAMES = """
import importlib, importlib.util, json, sys
from sylvan.settings.data.lazy_continuum import LAZY_PACKAGES, parse_init
def describe(value):
    if isinstance(value, type(sys)):
        return value.__name__
    return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
described = {}
for package_name in LAZY_PACKAGES:
    package = importlib.import_module(package_name)
    with open(importlib.util.find_spec(package_name).origin) as init:
        sources, stars, constants = parse_init(init.read())
    for name in [*sources, *constants]:
        described[f"{package_name}.{name}"] = describe(getattr(package, name))
    for star in stars:  # `from M import *`: the names M exports, looked up on the package
        module = importlib.import_module(star)
        for name in getattr(module, "__all__", [key for key in vars(module) if not key.startswith("_")]):
            described[f"{package_name}.{name}"] = describe(getattr(package, name))
namespace = {}
exec("from continuum.scenarios import *", namespace)
described["star"] = sorted(key for key in namespace if not key.startswith("__"))
described["lazy"] = type(sys.modules["continuum"]).__name__
print(json.dumps(described))
"""


def run_python(code: str) -> str:
    """What `code` prints, run in a fresh interpreter from the repository root."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_in_memory_data_does_not_import_what_other_datasets_need():
    printed = run_python("""
        import sys
        from sylvan.settings import ClassIncrementalSetting
        tasks = ClassIncrementalSetting(dataset="synthetic", progress_bar=False).prepare_tasks()
        assert len(tasks) == 5 and len(tasks[0].y_train) > 0
        from continuum import ClassIncremental
        from continuum.datasets import InMemoryDataset
        print(type(sys.modules["continuum"]).__name__,
              sorted({"pandas", "sklearn", "datasets", "matplotlib"} & set(sys.modules)))
    """)
    assert printed.split() == ["LazyPackage", "[]"]


def test_continuum_plotting_helpers_run_their_module_when_first_called():
    # continuum's task sets import `continuum.viz`, which imports pyplot, for helpers a run never calls
    printed = run_python("""
        import sys
        import sylvan.settings.data
        from continuum.tasks import TaskSet
        from continuum.viz import color_map
        deferred = type(sys.modules["continuum.viz"]).__name__
        before = "matplotlib" in sys.modules
        colors = color_map(4)
        import continuum.viz
        print(deferred, before, colors.shape, "matplotlib.pyplot" in sys.modules,
              type(sys.modules["continuum.viz"]).__name__, continuum.viz.color_map(4).tolist() == colors.tolist())
    """)
    assert printed.split() == ["DeferredModule", "False", "(4,", "3)", "True", "module", "True"]


def test_every_name_is_the_object_continuum_itself_imports():
    lazy = json.loads(run_python("import sylvan.settings.data\n" + DESCRIBE_NAMES))
    plain = json.loads(run_python("import continuum\n" + DESCRIBE_NAMES))
    assert (lazy.pop("lazy"), plain.pop("lazy")) == ("LazyPackage", "module")
    assert lazy == plain
    assert {"continuum.ClassIncremental", "continuum.datasets.CIFAR10", "continuum.__version__"} <= set(lazy)
    assert "ClassIncremental" in lazy["star"]


def test_modules_and_submodules_import_through_the_lazy_packages():
    printed = run_python("""
        import sylvan.settings.data
        import continuum
        import continuum.scenarios.permutations  # it imports a name from its own (lazy) package
        from continuum import Permutations, rehearsal
        from continuum.datasets import TinyImageNet200
        print(Permutations.__module__, rehearsal.__name__, continuum.datasets.TinyImageNet200 is TinyImageNet200)
    """)
    assert printed.split() == ["continuum.scenarios.permutations", "continuum.rehearsal", "True"]
    with pytest.raises(AssertionError, match="has no attribute 'NoSuchScenario'"):
        run_python("import sylvan.settings.data\nfrom continuum import scenarios\nscenarios.NoSuchScenario")


def test_continuum_imported_first_stays_as_it_is():
    printed = run_python("""
        import continuum, sys
        from sylvan.settings.data import lazy_continuum
        print(lazy_continuum.install(), type(sys.modules["continuum"]).__name__)
    """)
    assert printed.split() == ["False", "module"]


def test_an_init_that_does_more_than_import_is_run_as_it_is():
    assert parse_init('"""doc"""\nfrom a.b import c as d, e\nfrom f import *\n__all__ = ["d"]\n') == (
        {"d": ("a.b", "c"), "e": ("a.b", "e")}, ["f"], {"__all__": ["d"]}
    )
    assert parse_init("from a import b\nb.setup()\n") is None
    assert parse_init("from . import b\n") is None  # relative: not resolved here
    assert parse_init("VERSION = compute()\n") is None
