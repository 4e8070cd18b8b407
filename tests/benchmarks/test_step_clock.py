"""benchmarks/buffers.py times training steps with a callback: it must see every step of every
task, and nothing between tasks."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from buffers import clocked_run  # noqa: E402

from sylvan.methods import Naive  # noqa: E402


def test_one_interval_per_step_but_the_first_of_each_task():
    options = dict(dataset="digits", nb_tasks=5, batch_size=16, epochs=2, progress_bar=False)
    method = Naive()
    steps = []
    original = method.training_step

    def counting(batch):
        steps.append(len(batch.y))
        return original(batch)

    method.training_step = counting
    clock = clocked_run(method, **options)
    epochs = 5 * 2  # the first batch of each epoch of each task starts no interval
    assert len(clock.intervals) == len(steps) - epochs > 0
    assert all(interval > 0 for interval in clock.intervals)
