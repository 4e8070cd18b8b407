"""What the start-up benchmark reads: a run, and the plain loop beside it, mark their first
training step once, in the file SYLVAN_FIRST_STEP_FILE names, between their start and their end."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import REPO


def marked_run(command: list[str], tmp_path) -> tuple[list[float], float, float, str]:
    mark = tmp_path / "first_step"
    start = time.time()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "SYLVAN_FIRST_STEP_FILE": str(mark)})
    end = time.time()
    assert done.returncode == 0, done.stderr
    return [float(line) for line in mark.read_text().split()], start, end, done.stdout


def test_a_run_marks_its_first_training_step_once(tmp_path):
    marks, start, end, _ = marked_run([sys.executable, str(REPO / "cli.py"), "--setting", "class_incremental",
                                       "--method", "rehearsal", "--dataset", "synthetic", "--train_samples", "200",
                                       "--nb_tasks", "2", "--progress_bar", "false", "--results_dir",
                                       str(tmp_path / "results")], tmp_path)
    assert len(marks) == 1 and start < marks[0] < end


def test_the_plain_loop_reads_mnist_and_marks_its_first_step(tmp_path, mnist_root):
    marks, start, end, out = marked_run([sys.executable, str(REPO / "benchmarks" / "startup.py"), "--plain_loop",
                                         "--data_dir", str(mnist_root)], tmp_path)
    assert len(marks) == 1 and start < marks[0] < end
    accuracy = float(out.split("final average accuracy")[1])
    assert 40 < accuracy < 100  # replay keeps the earlier tasks well above fine-tuning's 20


def test_without_the_variable_nothing_is_written(tmp_path):
    code = "from sylvan.run.first_step import mark_first_step; mark_first_step(); mark_first_step()"
    environment = {key: value for key, value in os.environ.items() if key != "SYLVAN_FIRST_STEP_FILE"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env={**environment, "PYTHONPATH": str(REPO)})
    assert list(tmp_path.iterdir()) == []
