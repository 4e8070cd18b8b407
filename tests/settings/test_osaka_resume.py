"""An osaka run killed (SIGKILL) in the middle of its stream resumes from its last checkpoint to
the results of the run that never stopped: the meta-learner's slow and fast weights, step sizes,
optimizer and collected batches, a replay method's buffer, and the stream's counts so far."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.cli.test_cli import REPO, sylvan


@pytest.mark.slow
@pytest.mark.parametrize("method", ["continual_maml", "rehearsal"])
def test_an_osaka_run_killed_mid_stream_resumes_to_the_uninterrupted_result(tmp_path, method):
    common = ["--setting", "osaka", "--method", method, "--dataset", "digits", "--stream_steps", "1200",
              "--pretraining_tasks", "200", "--stream_stages", "4", "--progress_bar", "false", "--accelerator", "cpu",
              "--seed", "2", "--results_dir", str(tmp_path)]
    whole = sylvan(*common, "--run_name", "whole")
    assert whole.returncode == 0, whole.stderr
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *common, "--run_name", "killed"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "checkpoints" / "after_stage_1.pt"
    written = tmp_path / "killed" / "results.json"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    while process.poll() is None and time.monotonic() < deadline:  # the results of stage 1, written after it
        if written.exists() and len(json.loads(written.read_text() or "{}").get("accuracy_matrix", [])) == 2:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = json.loads(written.read_text())
    assert not killed["complete"] and len(killed["accuracy_matrix"]) == 2, "killed in the stream's third stage"
    resumed = sylvan("--resume", str(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr
    expected = json.loads((tmp_path / "whole" / "results.json").read_text())
    got = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert got["complete"]
    for key in ("accuracy_matrix", "online_accuracy", "stream_accuracy"):
        assert got[key] == expected[key], key
