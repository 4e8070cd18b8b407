"""The import graph goes one way: no cycle among sylvan's modules (imports for type hints alone,
under `TYPE_CHECKING`, aside), and settings, buffers and models never import a method."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "sylvan"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(tree: ast.AST) -> list[str]:
    """The sylvan modules a module's code imports when it runs (at its top or in a function),
    leaving out what `if TYPE_CHECKING:` imports for type checkers only."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sylvan"):
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
            names.append(node.module)  # `from package import module` binds through the package too
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names if alias.name.startswith("sylvan"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    return {name: {resolve(target) for target in runtime_imports(ast.parse(path.read_text()))} - {name}
            for name, path in modules.items()}


def cycle_through(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_among_sylvans_modules():
    assert cycle_through(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert cycle_through({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sylvan.x import y\nfrom sylvan.z import w\n"
    assert runtime_imports(ast.parse(source)) == ["sylvan.z.w", "sylvan.z"]
    # a module that imports a module of its own package through the package (`from sylvan.methods
    # import derpp` in a method) depends on the package, whose __init__ imports the module: a cycle
    package = {"sylvan.methods": {"sylvan.methods.lode"}, "sylvan.methods.lode": set()}
    package["sylvan.methods.lode"] = {"sylvan.methods.derpp", "sylvan.methods"}
    assert cycle_through(package) == ["sylvan.methods", "sylvan.methods.lode", "sylvan.methods"]


def package_of(module: str) -> str:
    """The part of sylvan a module belongs to: its folder under `sylvan/` (`sylvan.run`), or
    itself for a module at the top level (`sylvan.errors`)."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """`graph` read between sylvan's folders (and its top-level modules): an edge from a folder
    to another where a module of the first imports one of the second."""
    packages: dict[str, set[str]] = {}
    for name, targets in graph.items():
        packages.setdefault(package_of(name), set()).update(package_of(target) for target in targets)
    return {name: targets - {name} for name, targets in packages.items()}


# sylvan's folders from the one that imports the most to the ones every other imports: each
# imports only folders to its right (and the top-level modules)
LAYERS = ["sylvan.cli", "sylvan.comparison", "sylvan.methods", "sylvan.settings", "sylvan.run", "sylvan.parallel",
          "sylvan.buffers", "sylvan.models", "sylvan.analysis"]


def test_no_import_cycle_among_sylvans_folders():
    """The settings describe, the run runs, the workers' owner below both: no folder of sylvan
    imports one that (through others) imports it back, so each can be read without those above."""
    packages = package_graph(import_graph())
    assert cycle_through(packages) is None, cycle_through(packages)
    upward = sorted(f"{name} imports {target}" for name, targets in packages.items() if name in LAYERS
                    for target in targets if target in LAYERS and LAYERS.index(target) < LAYERS.index(name))
    assert not upward, upward


def test_the_package_graph_reads_folders_and_top_level_modules():
    graph = {"sylvan.run.loop": {"sylvan.settings.base", "sylvan.errors"}, "sylvan.settings.base": {"sylvan.run.loop"},
             "sylvan.errors": set()}
    assert package_graph(graph) == {"sylvan.run": {"sylvan.settings", "sylvan.errors"},
                                    "sylvan.settings": {"sylvan.run"}, "sylvan.errors": set()}
    assert cycle_through(package_graph(graph)) == ["sylvan.run", "sylvan.settings", "sylvan.run"]


def test_the_run_imports_no_setting():
    """A setting describes its stream (`Setting.stages()`: the tasks' data or environments, what is
    evaluated); the run runs it knowing no setting module. Setting-specific run code lives beside
    its setting (`sylvan.settings.osaka_stages`)."""
    for name, targets in import_graph().items():
        if name.startswith(("sylvan.run", "sylvan.parallel")):
            assert not {t for t in targets if t.startswith(("sylvan.settings", "sylvan.methods"))}, name


def test_settings_buffers_and_models_never_import_a_method():
    for name, targets in import_graph().items():
        if name.startswith(("sylvan.settings", "sylvan.buffers", "sylvan.models")):
            assert not {t for t in targets if t.startswith("sylvan.methods")}, name


def test_no_setting_module_exceeds_250_lines():
    """A setting module holds one node of the tree, or one job of the data path; the run loops,
    evaluation and data parallelism live in `sylvan.run` and `sylvan.parallel`."""
    sizes = {path.relative_to(REPO).as_posix(): len(path.read_text().splitlines())
             for path in (PACKAGE / "settings").rglob("*.py")}
    assert {path: size for path, size in sizes.items() if size > 250} == {}


@pytest.mark.parametrize("setting_name", ["online", "class_incremental", "task_incremental", "multi_task"])
def test_a_setting_keeps_nothing_of_a_finished_run(setting_name):
    """Settings are configuration: what a run holds (its tasks, tracker, meter, workers) lives in
    its run context and is gone with it, so one setting can run many methods, one after another."""
    from dataclasses import fields

    from sylvan.methods import Rehearsal
    from sylvan.settings import SETTINGS
    from tests.conftest import tiny_options

    setting_cls = SETTINGS[setting_name]
    setting = setting_cls(**tiny_options(setting_cls))
    before = dict(vars(setting))
    setting.apply(Rehearsal(buffer_size=20))
    configuration = {f.name for f in fields(setting)}
    kept = {name: value for name, value in vars(setting).items() if name not in configuration and value is not None}
    assert kept == {name: value for name, value in before.items() if name not in configuration}


def test_no_registered_method_sits_on_more_than_five_sylvan_classes():
    """Shared behaviour is a part a method holds (`sylvan.methods.parts`), not a base it inherits."""
    from sylvan.methods import METHODS

    depths = {name: [k.__name__ for k in cls.__mro__ if k.__module__.startswith("sylvan")]
              for name, cls in METHODS.items()}
    assert {name: chain for name, chain in depths.items() if len(chain) > 5} == {}


def test_the_methods_package_holds_the_registered_methods_only():
    """Bases live in `sylvan.methods.core`, parts and shared functions in `sylvan.methods.parts`."""
    from sylvan.methods import METHODS

    registered = {cls.__module__ for cls in METHODS.values()}
    modules = {f"sylvan.methods.{path.stem}" for path in (PACKAGE / "methods").glob("*.py") if path.stem != "__init__"}
    assert modules - registered == set()


def test_the_buffer_base_holds_no_code_of_one_policy_or_retrieval():
    """What one policy or retrieval needs (GRASP's replay counts, GSS's scores, ASER's slots)
    lives with it, not in the base every buffer inherits."""
    source = (PACKAGE / "buffers" / "base.py").read_text().lower()
    assert [name for name in ("grasp", "gss", "aser", "draw_counts") if name in source] == []


def test_the_replay_base_declares_no_option_of_one_policy():
    """A buffer policy's options are its own dataclass (`POLICY_OPTIONS`), which a replay method
    takes whole as `buffer_options`: the base every replay method inherits names none of them."""
    from dataclasses import fields

    from sylvan.buffers import BUFFER_POLICIES, POLICY_OPTIONS
    from sylvan.methods.core.replay import ReplayMethod

    assert [f.name for f in fields(ReplayMethod) if any(f.name.startswith(p) for p in BUFFER_POLICIES)] == []
    source = (PACKAGE / "methods" / "core" / "replay.py").read_text()
    policy_options = {f.name for options in POLICY_OPTIONS.values() for f in fields(options)}
    assert policy_options and [name for name in policy_options if name in source] == []


def test_replay_methods_reach_a_policys_work_only_through_its_admission():
    """What the gss and aser policies need from the model (gradient scores, features) is handed
    to the admission that lives with their buffers by `sylvan.methods.parts.admission`, not by
    the base every replay method inherits."""
    targets = import_graph()["sylvan.methods.core.replay"]
    specific = ("gradient_scores", "shapley", "sylvan.buffers.gss", "sylvan.buffers.aser")
    assert [t for t in targets if any(name in t for name in specific)] == []


def held_buffers(method) -> set[str]:
    """The names of the attributes of a configured `method` that hold a rehearsal buffer (itself,
    or in a list, tuple or dict): what the method keeps to save with its state."""
    from sylvan.buffers.base import RehearsalBuffer

    held = set()
    for name, value in vars(method).items():
        members = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(member, RehearsalBuffer) for member in members):
            held.add(name)
    return held


SAVING = {"state_dict", "load_state_dict"}  # what a method may call on a buffer it holds: saving it


def buffer_calls(source: str, held: set[str]) -> list[str]:
    """Where `source` reaches a buffer other than to save it: `self.NAME.x` or `len(self.NAME)` for
    an attribute NAME that holds one, a name bound to a buffer it makes (`make_buffer(...)`,
    `...Buffer(...)`) used beyond being handed on, or a channel's buffer (`.buffer.x`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        made: set[str] = set()
        if isinstance(node, ast.FunctionDef):
            for statement in ast.walk(node):
                if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Call):
                    called = ast.unparse(statement.value.func)
                    if called == "make_buffer" or called.endswith("Buffer"):
                        made |= {t.id for t in statement.targets if isinstance(t, ast.Name)}
            for usage in ast.walk(node):
                if isinstance(usage, ast.Attribute) and isinstance(usage.value, ast.Name) and usage.value.id in made:
                    found.append(f"{node.name}: {ast.unparse(usage)}")
        if isinstance(node, ast.Attribute) and node.attr not in SAVING:
            target = node.value
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self" \
                    and target.attr in held:
                found.append(ast.unparse(node))
            if isinstance(target, ast.Attribute) and target.attr == "buffer":
                found.append(ast.unparse(node))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "len" and node.args \
                and ast.unparse(node.args[0]) in {f"self.{name}" for name in held}:
            found.append(ast.unparse(node))
    return found


def test_buffer_calls_are_found_by_what_an_attribute_holds():
    source = ("def f(self):\n    memory = ReservoirBuffer(3)\n    memory.add(x=1)\n    self.kept.sample(2)\n"
              "    self.kept.state_dict()\n    len(self.kept)\n    self.replay.take(2)\n"
              "    self.replay.buffer.gather(1)\n")
    assert sorted(buffer_calls(source, {"kept"})) == sorted(
        ["f: memory.add", "self.kept.sample", "len(self.kept)", "self.replay.buffer.gather"])


def test_methods_reach_their_memory_only_through_a_replay_channel():
    """A buffer a method makes is handed to a replay channel (`sylvan.buffers.channel`): every
    draw, insertion and read of it goes through the channel; the method keeps the buffer only to
    save and restore it with its state. Checked by type: each registered method is configured,
    and what its attributes hold says which of its calls reach a buffer."""
    from sylvan.methods import METHODS
    from sylvan.settings import ClassIncrementalSetting, ContinualRLSetting, Setting
    from tests.conftest import tiny_method, tiny_options

    found = {}
    for name, cls in sorted(METHODS.items()):
        target = cls.target_setting  # a setting, or an assumption both branches share (then, its SL setting)
        setting_cls = target if issubclass(target, Setting) and target is not Setting else ClassIncrementalSetting
        setting = setting_cls(**tiny_options(setting_cls, cls))
        method = tiny_method(cls)
        method.configure(setting)
        if issubclass(setting_cls, ContinualRLSetting):
            method.run.engine  # noqa: B018 - made, as a run makes it
        held = held_buffers(method)
        modules = {klass.__module__ for klass in cls.__mro__ if klass.__module__.startswith("sylvan.methods")}
        for module in sorted(modules):
            path = PACKAGE.parent / (module.replace(".", "/") + ".py")
            calls = buffer_calls(path.read_text(), held)
            if calls:
                found[f"{name} ({path.relative_to(PACKAGE)})"] = calls
    assert found == {}


def test_the_admissions_of_gss_and_aser_live_with_their_buffers():
    from sylvan.buffers.aser import ASERReplacement
    from sylvan.buffers.gss import GSSAdmission

    assert GSSAdmission.__module__ == "sylvan.buffers.gss" and ASERReplacement.__module__ == "sylvan.buffers.aser"
    assert "buffer" in inspect.signature(GSSAdmission).parameters
    assert "method" not in inspect.signature(ASERReplacement).parameters


# what builds a method's part from its hyperparameters, or checks them: given the method itself
READS_THE_METHODS_HYPERPARAMETERS = {"check_decoupling"}


def test_parts_receive_what_they_act_on_not_the_method():
    """A part (`sylvan.methods.parts`) is given the network, buffer or values it works with; only
    what builds one from a method's hyperparameters, or checks them, is given the method."""
    import importlib
    import pkgutil

    import sylvan.methods.parts as parts

    given_the_method = []
    for module_info in pkgutil.iter_modules(parts.__path__):
        module = importlib.import_module(f"sylvan.methods.parts.{module_info.name}")
        for name, value in vars(module).items():
            if getattr(value, "__module__", None) != module.__name__ or name in READS_THE_METHODS_HYPERPARAMETERS:
                continue
            if inspect.isclass(value) or inspect.isfunction(value):
                try:
                    parameters = inspect.signature(value).parameters
                except (TypeError, ValueError):
                    continue
                if "method" in parameters:
                    given_the_method.append(f"{module_info.name}.{name}")
    assert given_the_method == []


def test_no_method_file_exceeds_150_lines():
    """A registered method is its hyperparameters and the hooks it changes; what it shares with
    others, and how it follows its paper, live in `sylvan.methods.parts` and docs/method-notes.md."""
    sizes = {path.name: len(path.read_text().splitlines()) for path in (PACKAGE / "methods").glob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 150} == {}


def test_signals_are_handled_in_one_module():
    """Installing signal handlers and raising `StoppedBySignal` on a signal happen in
    `sylvan.run.signals` only; the entry point uses it."""
    handling = ("signal.signal(", "SIGTERMException", "raise_stopped_by_signal")
    places = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                    if any(name in path.read_text() for name in handling))
    assert places == ["run/signals.py"]


def test_one_checkpointer_saves_and_restores_a_run():
    """Writing checkpoint files and putting a run back from one happen in
    `sylvan.run.checkpointer` only (the file format itself is `sylvan.run.checkpoints`)."""
    calls = ("save_checkpoint(", "save_worker_checkpoint(", "method.load_state_dict(", "tracker.restore(")
    places = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                    if path.name != "checkpoints.py" and any(call in path.read_text() for call in calls))
    assert places == ["run/checkpointer.py"]


LIGHTNING_PACKAGES = ("lightning", "lightning_fabric", "pytorch_lightning")


def lightning_imports(tree: ast.AST) -> list[tuple[str, str]]:
    """(module, name) of every import from Lightning in a module (`import lightning.x` gives
    (lightning.x, ""))."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIGHTNING_PACKAGES:
            found.extend((node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((alias.name, "") for alias in node.names
                         if alias.name.split(".")[0] in LIGHTNING_PACKAGES)
    return found


def test_sylvan_trains_on_lightning_fabric_and_the_trainer_is_a_plugin_only():
    """sylvan's loop is its own, on Fabric: `lightning.pytorch` (the Trainer) is imported only
    by the Trainer strategy offered to one's own LightningModule projects."""
    trainer_users = sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
        for module, name in lightning_imports(ast.parse(path.read_text()))
        if module.startswith(("lightning.pytorch", "pytorch_lightning"))
        or (module == "lightning" and name in ("", "Trainer", "LightningModule", "Callback", "LightningDataModule"))
    )
    assert sorted(set(trainer_users)) == ["parallel/rehearsal_strategy.py"]


def test_no_private_name_of_lightning_is_used():
    """Nothing Lightning keeps private (a `_`-prefixed module, class or function) is imported,
    and no `_`-prefixed attribute of a Lightning object is read: Lightning may change them in
    any release."""
    private = sorted(
        f"{path.relative_to(PACKAGE)}: {module} {name}" for path in PACKAGE.rglob("*.py")
        for module, name in lightning_imports(ast.parse(path.read_text()))
        if name.startswith("_") or any(part.startswith("_") for part in module.split("."))
    )
    assert private == []
    reads = sorted(
        f"{path.relative_to(PACKAGE)}: {line.strip()}" for path in PACKAGE.rglob("*.py")
        for line in path.read_text().splitlines()
        if any(f"{owner}._" in line and f"{owner}.__" not in line for owner in ("fabric", "strategy", "trainer"))
    )
    assert reads == []


def test_the_task_hooks_are_called_in_one_place():
    """Every run loop tells a method of its tasks through `sylvan.run.stages.with_task_hooks`:
    no setting calls `on_task_start` or `on_task_end` itself (methods call their bases')."""
    calls = ("method.on_task_start(", "method.on_task_end(")
    places = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                    if any(call in path.read_text() for call in calls))
    assert places == ["run/stages.py"]


def test_the_checks_of_a_setting_and_method_pair_are_made_in_one_place():
    """`check_pair` holds every check of a pair; the run loops and `run_experiment` call it."""
    calls = ("method.validate_for(setting)", "setting.check_method(method)")
    places = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                    if any(call in path.read_text() for call in calls))
    assert places == ["run/pairing.py"]


# the modules at the package's top level: what every folder uses (errors, the registries, the
# minibatches of in-memory tensors, host-to-device copies, the workers) and the command's entry
# point (`python -m sylvan`, `sylvan`); everything else lives in a folder
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "errors.py", "registry.py", "minibatches.py", "transfer.py",
                     "workers.py"}


def test_the_package_top_level_holds_only_what_every_folder_uses():
    loose = {path.name for path in PACKAGE.glob("*.py")} - TOP_LEVEL_MODULES
    assert not loose, f"put {sorted(loose)} in a folder (run/, analysis/, cli/, ...)"


def test_importing_sylvan_imports_no_method_setting_or_lightning():
    """`import sylvan` stays light: its names (`sylvan.METHODS`, `sylvan.Setting`, ...) are
    imported when first used."""
    code = ("import sys, sylvan; loaded = [m for m in sys.modules if m.startswith(('sylvan.', 'lightning', 'torch'))]; "
            "print(loaded); assert not loaded; assert sylvan.METHODS['naive'].name == 'naive'")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_setting_holds_no_rank_of_the_process_running_it():
    """A setting is a configuration: which worker a process is, and whether it writes the run's
    folder, are the process's (`sylvan.parallel.health`) and the run's (`RunContext.rank`)."""
    from sylvan.settings import SETTINGS

    for setting_cls in SETTINGS.values():
        held = [name for name in ("rank", "is_writer", "worker_seed") if hasattr(setting_cls, name)]
        assert not held, f"{setting_cls.__name__} holds {held}"


def test_configure_names_what_it_receives_the_run():
    """`Method.configure` receives the run context (`sylvan.run.context.RunContext`), not the
    setting: every method names its argument `run`, so that no reader takes it for the setting."""
    named_otherwise = []
    for path in (PACKAGE / "methods").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "configure" and len(node.args.args) > 1:
                if node.args.args[1].arg != "run":
                    named_otherwise.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not named_otherwise, named_otherwise


def test_one_module_asks_which_worker_a_process_is():
    """`sylvan.workers` alone asks torch.distributed for a rank or a world size (or whether a
    process group is up); the run holds one `Workers` and hands it, or what it says, to the rest."""
    asks = re.compile(r"\b(dist|distributed)\.(get_rank|get_world_size|is_initialized)\s*\(")
    places = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if asks.search(path.read_text()))
    assert places == ["workers.py"], places


def test_methods_count_no_flops_and_show_no_progress_of_their_own():
    """A loop a method owns runs on the engine's trigger points (`Engine.loop`), where the FLOP
    count, the training log and the progress bar see its steps: no method counts by hand."""
    by_hand = sorted(str(path.relative_to(PACKAGE)) for path in (PACKAGE / "methods").rglob("*.py")
                     if re.search(r"\.compute\.|FlopCount|tqdm|log_metrics\(", path.read_text()))
    assert not by_hand, by_hand


def test_one_predict_then_train_meter_serves_the_online_settings_and_osaka():
    """Both single-pass streams are scored by one mechanism: a `PredictThenTrain` callback at the
    start of every step that trains on a batch of the stream (a fit's, or a method loop's)."""
    from sylvan.run.callbacks import OnlineAccuracyMeter, PredictThenTrain
    from sylvan.run.stream_meter import StreamMeter

    assert issubclass(OnlineAccuracyMeter, PredictThenTrain) and issubclass(StreamMeter, PredictThenTrain)
    scoring_loaders = [f"{path.relative_to(PACKAGE)}: {node.name}" for path in PACKAGE.rglob("*.py")
                       for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)
                       and any(ast.unparse(base).endswith("DataLoader") for base in node.bases)
                       and re.search(r"\b(score|predict)\w*\(", ast.unparse(node))]
    assert scoring_loaders == [], "a loader that scores what it hands out is a second mechanism"
