"""The image-file benchmark runs end to end on a folder given to it and prints a row per way."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from image_files import write_tiny_imagenet  # noqa: E402


@pytest.mark.slow
def test_prints_each_way_of_preparing_tiny_imagenet(tmp_path):
    root = write_tiny_imagenet(tmp_path, train_per_class=2, test_per_class=1)
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "image_files.py"), "--data_dir", str(root), "--threads", "1", "2"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split("|")[0].strip() for line in out.stdout.splitlines() if line.count("|") == 2]
    assert rows[1:] == [
        "decode the files only, 1 thread(s)", "decode the files only, 2 thread(s)",
        "sylvan: decode, then build whole tasks", "--image_cache, first run (decode, keep)",
        "--image_cache, later run (read back)", "continuum: file by file (ToTensor per sample)",
    ]
    assert out.stdout.count("(600 images, 0.01 GiB of uint8 tasks") == 3  # of 3x64x64 pixels
    assert "(0.03 GiB of float32 tasks)" in out.stdout
