"""The OSAKA benchmark: its runs (every row at each stationarity and seed, online SGD without the
pre-training phase), and its quick mode end to end, which prints the table of the claims."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import osaka  # noqa: E402


def test_every_row_runs_at_each_stationarity_and_seed():
    jobs = osaka.jobs("mnist", [0, 1, 2, 3, 4], [0.9, 0.98], osaka.FULL)
    assert len(jobs) == len({folder for folder, _, _ in jobs}) == 2 * len(osaka.ROWS) * 5
    assert {row for _, row, _ in jobs} == {"continual_maml", "maml", "anil", "online_sgd", "fine_tuning", "rehearsal"}
    assert not osaka.ROWS["online_sgd"][2] and osaka.ROWS["fine_tuning"][2]  # only online SGD skips pre-training
    assert all(options["stream_steps"] == 10_000 for _, _, options in jobs)


@pytest.mark.slow
def test_the_quick_mode_prints_the_table_of_each_stationarity(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "osaka.py"), "--quick", "--out", str(tmp_path),
                           "--jobs", "2"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    for p in ("0.9", "0.98"):
        assert f"### p = {p} (seeds 0 1)" in done.stdout
    assert done.stdout.count("| continual_maml |") == 2 and "to a context of the pre-training" in done.stdout
