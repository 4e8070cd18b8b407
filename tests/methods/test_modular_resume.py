"""The modular methods' state (prototypes, shards and experts; every task's path and the module
pool; the stored networks and where each task started) survives a kill -9: the run resumed from
its last checkpoint ends as the run never stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.cli.test_cli import REPO, sylvan

RUNS = {
    "hard_moe": ["--setting", "class_incremental", "--experts", "3", "--new_cluster_distance", "1.2"],
    "mntdp": ["--setting", "task_incremental"],
    "selective_finetune": ["--setting", "task_incremental"],
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(RUNS))
def test_a_run_killed_mid_stream_resumes_to_the_uninterrupted_result(tmp_path, method):
    common = ["--method", method, *RUNS[method], "--dataset", "digits", "--nb_tasks", "5", "--epochs", "4",
              "--progress_bar", "false", "--accelerator", "cpu", "--seed", "3", "--results_dir", str(tmp_path)]
    whole = sylvan(*common, "--run_name", "whole")
    assert whole.returncode == 0, whole.stderr
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *common, "--run_name", "killed"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "killed" / "checkpoints" / "after_stage_0.pt"
    written = tmp_path / "killed" / "results.json"  # after the checkpoint of the task it reports
    deadline = time.monotonic() + 120
    while not (first.exists() and written.exists()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = json.loads(written.read_text())
    assert not killed["complete"], "killed after its first task, before its last"
    resumed = sylvan("--resume", str(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr
    expected = json.loads((tmp_path / "whole" / "results.json").read_text())
    got = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert got["complete"] and got["accuracy_matrix"] == expected["accuracy_matrix"]
    assert got["cost"]["parameters"] == expected["cost"]["parameters"]
