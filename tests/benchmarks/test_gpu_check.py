"""The GPU check reads pytest's outcome from a log, a part killed at its time limit included,
and runs its parts on a machine without a GPU (the GPU runs then say what stopped them)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
gpu_check = importlib.import_module("gpu_check")


def test_failures_are_named_from_the_summary_and_from_the_tests_as_they_finish():
    log = ("[gw3] [  5%] PASSED tests/a.py::ok\n[gw3] [  6%] FAILED tests/a.py::broken[x]\n"
           "[gw1] [  7%] ERROR tests/b.py::setup\n\nFAILED tests/a.py::broken[x] - AssertionError\n"
           "====== 1 failed, 1 passed, 1 error in 3.20s ======\n")
    assert gpu_check.pytest_outcome(log) == ("1 failed, 1 passed, 1 error in 3.20s",
                                             ["tests/a.py::broken[x]", "tests/b.py::setup"])
    killed = "[gw0] [ 97%] FAILED tests/c.py::slow\n[gpu_check] killed after 200 s\n"
    assert gpu_check.pytest_outcome(killed) == ("no summary (killed or crashed)", ["tests/c.py::slow"])
    assert gpu_check.pytest_outcome("12 passed, 3 skipped in 9.52s\n")[0] == "12 passed, 3 skipped in 9.52s"


def test_the_main_job_part_runs_and_writes_its_log_and_table(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path),
                           "--only", "runs", "--accelerator", "cpu"], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "summary.txt").read_text()
    assert "runs: main job, 32-true: accuracy" in table and "runs: main job, bf16-mixed: accuracy" in table
    assert "runs: main job, 16-mixed: exit 2" in table  # float16 needs a GPU: refused on the CPU
    assert "needs a GPU" in (tmp_path / "runs.log").read_text()


def test_a_sync_is_placed_at_the_innermost_line_of_sylvan_within_a_training_step():
    from traceback import FrameSummary

    loop = FrameSummary(str(REPO / "sylvan" / "run" / "engine.py"), 180, "train_on")
    step = FrameSummary(str(REPO / "sylvan" / "methods" / "rehearsal.py"), 40, "training_step")
    draw = FrameSummary(str(REPO / "sylvan" / "buffers" / "reservoir.py"), 90, "sample")
    inner = FrameSummary("/env/torch/nn/functional.py", 10, "cross_entropy")
    assert gpu_check.sync_place([loop, step, draw, inner]) == "reservoir.py:90 (sample)"
    assert gpu_check.sync_place([loop, inner]) == "engine.py:180 (train_on)"
    assert gpu_check.sync_place([step, draw]) is None  # evaluation, set-up


def test_counting_syncs_says_it_is_skipped_without_a_gpu(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path),
                           "--only", "syncs", "--accelerator", "cpu"], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "syncs: skipped, no CUDA device" in (tmp_path / "summary.txt").read_text()


def test_the_epoch_clock_times_every_epoch_of_every_fit():
    from sylvan.methods import Naive
    from sylvan.settings import ClassIncrementalSetting
    from tests.conftest import tiny_options

    clock = gpu_check.EpochClock()
    ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "epochs": 3}).apply(Naive(), callbacks=[clock])
    assert [epoch for epoch, _ in clock.epochs] == [0, 1, 2, 0, 1, 2]
    assert all(seconds > 0 for _, seconds in clock.epochs)


@pytest.mark.slow
def test_the_plain_loop_loads_its_data_from_host_memory_or_holds_it_on_the_device():
    for data in ("host", "device"):
        done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--plain_loop",
                               "--accelerator", "cpu", "--cifar_samples", "64", "--plain_data", data],
                              capture_output=True, text=True, timeout=300, cwd=REPO)
        assert done.returncode == 0, done.stderr
        assert "s per epoch of 64 images (epochs 2 to 3; first" in done.stdout
        assert f"data in {data} memory, cpu, 32-true" in done.stdout
