"""The suite run in parallel (`python -m pytest -n auto`, the README's command): each pytest-xdist
worker, and each command a test starts from it, computes on one thread (see `conftest.py`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch


@pytest.mark.skipif(not os.environ.get("PYTEST_XDIST_WORKER"), reason="checks a pytest-xdist worker (-n auto)")
def test_each_worker_and_the_commands_it_starts_compute_on_one_thread():
    threads = os.environ["OMP_NUM_THREADS"]
    assert torch.get_num_threads() == int(threads)
    child = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True, timeout=120)
    assert child.stdout.strip() == threads
