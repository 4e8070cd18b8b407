"""benchmarks/buffers.py's throughput table runs for each retrieval: with `grasp`, sylvan's
buffers are given features with every batch and draw in GRASP's order."""

import sys
from pathlib import Path

import pytest

from sylvan.buffers import retrieval as retrievals

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import buffers  # noqa: E402


@pytest.mark.slow  # the table's stream is at least 40,960 samples, through a per-sample loop too
@pytest.mark.parametrize("retrieval", ["uniform", "grasp"])
def test_throughput_table_measures_every_row(retrieval, monkeypatch):
    ranked = []
    grasp_indices = retrievals.grasp_indices
    monkeypatch.setattr(retrievals, "grasp_indices", lambda *args: ranked.append(1) or grasp_indices(*args))
    figures = buffers.throughput((1, 2, 2), 64, "cpu", repeats=1, only=["reservoir"], retrieval=retrieval)
    assert set(figures) == {"reservoir", "per-sample loop", "row copies only"}
    insert, own_loop, sample = figures["reservoir"]
    assert insert > 0 and own_loop > 0 and sample > 0
    assert bool(ranked) == (retrieval == "grasp")
