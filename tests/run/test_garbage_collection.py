"""The garbage collector paused while a command starts up, and how a run turns it back on."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref

import pytest

from sylvan.run import garbage_collection
from tests.conftest import REPO


class Held:
    """An object to follow with a weak reference."""


@pytest.fixture
def collector_restored(monkeypatch):
    """Whatever a test does, the collector is left enabled, unfrozen and unpaused after it."""
    monkeypatch.setattr(garbage_collection, "_paused", False)
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def cycle_holding() -> weakref.ReferenceType:
    """A reference cycle, no longer reachable, that holds an object: only a collection frees it."""
    held = Held()
    cycle: list = [held]
    cycle.append(cycle)
    return weakref.ref(held)


def test_resuming_without_a_pause_leaves_the_collector_of_python_code_alone(collector_restored):
    gc.enable()
    frozen = gc.get_freeze_count()
    garbage_collection.resume_after_start_up()
    assert gc.isenabled() and gc.get_freeze_count() == frozen

    gc.disable()  # a user's own choice stays theirs
    garbage_collection.resume_after_start_up()
    assert not gc.isenabled() and gc.get_freeze_count() == frozen


def test_the_start_ups_cycles_are_collected_before_the_survivors_are_frozen(collector_restored):
    gc.enable()
    garbage_collection.pause_for_start_up()
    assert not gc.isenabled()
    dropped = cycle_holding()
    allocated = [[[]] for _ in range(100_000)]  # enough to start collections, were the collector on
    del allocated
    assert dropped() is not None  # paused: nothing collected it

    garbage_collection.resume_after_start_up()
    assert dropped() is None  # collected, not frozen for the rest of the process
    assert gc.isenabled() and gc.get_freeze_count() > 0

    frozen = gc.get_freeze_count()
    garbage_collection.resume_after_start_up()  # once only
    assert gc.get_freeze_count() == frozen


def test_the_pause_only_stops_an_enabled_collector(collector_restored):
    gc.disable()
    garbage_collection.pause_for_start_up()
    garbage_collection.resume_after_start_up()
    assert not gc.isenabled()  # not paused by sylvan: not turned on by sylvan


PLUGIN = '''
import gc, json, os
from typing import ClassVar
from dataclasses import dataclass
from sylvan.methods import Naive

@dataclass
class Watching(Naive):
    """Naive, noting the collector's state at its first training step."""
    name: ClassVar[str] = "watching_the_collector"

    def training_step(self, batch):
        path = os.environ["COLLECTOR_STATE"]
        if not os.path.exists(path):
            with open(path, "w") as out:
                json.dump({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}, out)
        return super().training_step(batch)
'''


@pytest.mark.parametrize("entry", ["cli.py", "-m sylvan"])
def test_a_command_trains_with_the_collector_on_and_its_start_up_frozen(tmp_path, entry):
    (tmp_path / "watching.py").write_text(PLUGIN)
    state = tmp_path / "state.json"
    command = [sys.executable, *(["-m", "sylvan"] if entry == "-m sylvan" else [str(REPO / "cli.py")])]
    out = subprocess.run(
        [*command, "--plugin", str(tmp_path / "watching.py"), "--setting", "class_incremental", "--method",
         "watching_the_collector", "--dataset", "synthetic", "--train_samples", "100", "--nb_tasks", "2",
         "--progress_bar", "false", "--results_dir", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "COLLECTOR_STATE": str(state)},
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(state.read_text())
    assert seen["enabled"] and seen["frozen"] > 100_000  # torch and the rest: frozen, skipped by collections
