"""The regression set covers every registered method with the command it was recorded with, and
its comparison tells identical matrices from changed ones."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

from sylvan.methods import METHODS
from sylvan.registry import is_builtin
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
regression_set = importlib.import_module("regression_set")


def test_the_recording_holds_every_registered_method_with_its_command():
    recorded = json.loads(regression_set.RECORD.read_text())
    assert recorded["options"] == regression_set.runs()
    built_in = {name for name, cls in METHODS.items() if is_builtin(cls)}  # not the plugins other tests load
    pairs = {"ewc-sac", "mas-dqn"}  # continual-learning methods on agents
    assert built_in | {"distributed-rehearsal"} | pairs == set(recorded["runs"])
    assert all(run.get("accuracy_matrix") or run.get("return_matrix") for run in recorded["runs"].values())
    assert recorded["runs"]["dqn"]["return_matrix"] and recorded["runs"]["rehearsal"]["task_aware_matrix"]


def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "regression_set.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def test_a_run_recorded_then_compared_is_identical_and_a_changed_matrix_is_reported(tmp_path):
    record = tmp_path / "record.json"
    assert script("--record", "--only", "naive", "--file", str(record)).returncode == 0
    same = script("--only", "naive", "--file", str(record))
    assert same.returncode == 0 and "1 of 1 runs identical to the recording" in same.stdout
    changed = json.loads(record.read_text())
    changed["runs"]["naive"]["accuracy_matrix"][0][0] += 1e-12
    record.write_text(json.dumps(changed))
    differs = script("--only", "naive", "--file", str(record))
    assert differs.returncode == 1 and "naive: differs" in differs.stdout
    unknown = script("--only", "no_such_run", "--file", str(record))
    assert unknown.returncode != 0 and "unknown runs ['no_such_run']" in unknown.stderr
