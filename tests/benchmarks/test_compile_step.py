"""benchmarks/compile_step.py times the plain step of sylvan's backbones eager and compiled: each
asked mode gets a row with its figures, and a refused step count exits non-zero."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = str(REPO / "benchmarks" / "compile_step.py")


def run(*options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, "--device", "cpu", *options], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def test_each_mode_gets_a_row_with_its_step_time():
    done = run("--modes", "eager", "--steps", "3", "--networks", "mlp")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().startswith("mlp")]
    assert len(rows) == 1 and rows[0][:3] == ["mlp", "10", "eager"]
    first, step, ratio = float(rows[0][4]), float(rows[0][5]), float(rows[0][6])
    assert first >= 0 and step > 0 and ratio == 1.0  # an eager first step may round to 0.000 s


@pytest.mark.slow
def test_the_compiled_step_is_timed_beside_the_eager_one():
    done = run("--steps", "3", "--networks", "mlp")
    assert done.returncode == 0, done.stderr
    modes = [line.split()[2] for line in done.stdout.splitlines() if line.strip().startswith("mlp")]
    assert modes == ["eager", "compiled"]


def test_a_step_count_below_one_is_refused():
    done = run("--steps", "0")
    assert done.returncode == 2 and "--steps must be at least 1" in done.stderr
