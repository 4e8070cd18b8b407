"""The loop-overhead benchmark runs its loops and prints each against the plain one."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_the_loops_run_and_are_compared_with_the_plain_one():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "lightning_overhead.py"), "--samples", "300",
                           "--rounds", "1"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[0].strip(): line for line in done.stdout.splitlines() if "|" in line}
    assert set(rows) == {"Lightning Trainer", "Lightning Fabric loop", "plain PyTorch loop"}
    assert rows["plain PyTorch loop"].rstrip().endswith("1.00 x plain")
