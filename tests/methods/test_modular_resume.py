"""The modular methods' state (prototypes, shards and experts; every task's path and the module
pool; the stored networks and where each task started) survives a kill -9: the run resumed from
its last checkpoint ends as the run never stopped."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import whole_and_resumed_after_kill

RUNS = {
    "hard_moe": ["--setting", "class_incremental", "--experts", "3", "--new_cluster_distance", "1.2"],
    "mntdp": ["--setting", "task_incremental"],
    "selective_finetune": ["--setting", "task_incremental"],
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(RUNS))
def test_a_run_killed_mid_stream_resumes_to_the_uninterrupted_result(tmp_path, method):
    common = ["--method", method, *RUNS[method], "--dataset", "digits", "--nb_tasks", "5", "--epochs", "4",
              "--progress_bar", "false", "--accelerator", "cpu", "--seed", "3"]
    expected, got = whole_and_resumed_after_kill(*common, results_dir=tmp_path)
    assert got["complete"] and got["accuracy_matrix"] == expected["accuracy_matrix"]
    assert got["cost"]["parameters"] == expected["cost"]["parameters"]
