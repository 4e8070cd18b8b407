"""benchmarks/buffers.py times training steps with a callback: it must see every step of every
task, and nothing between tasks."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from buffers import clocked_run  # noqa: E402

from sylvan.methods import Naive  # noqa: E402
from tests.conftest import counted_steps  # noqa: E402


def test_one_interval_per_step_but_the_first_of_each_task():
    options = dict(dataset="digits", nb_tasks=5, batch_size=16, epochs=2, progress_bar=False)
    method = Naive()
    steps = counted_steps(method)
    clock = clocked_run(method, **options)
    epochs = 5 * 2  # the first batch of each epoch of each task starts no interval
    assert len(clock.intervals) == len(steps) - epochs > 0
    assert all(interval > 0 for interval in clock.intervals)


def test_step_times_replay_the_asked_number_of_samples(mnist_root, monkeypatch):
    """The step-time table's rows differ by r: rehearsal replays r samples with each batch of b,
    and the compute it is compared with is naive on batches of b + r."""
    import buffers

    from sylvan.methods import Rehearsal

    seen: dict[str, set[int]] = {"naive": set(), "rehearsal": set()}
    naive_step, rehearsal_step = Naive.training_step, Rehearsal.training_step

    def naive_counting(self, batch):
        seen["naive"].add(len(batch.y))
        return naive_step(self, batch)

    def rehearsal_counting(self, batch):
        loss = rehearsal_step(self, batch)
        seen["rehearsal"].add(len(self.draw_replay(self.replay_count(len(batch.y)))["y"]))
        return loss

    monkeypatch.setattr(Naive, "training_step", naive_counting)
    monkeypatch.setattr(Rehearsal, "training_step", rehearsal_counting)
    times = buffers.step_times(16, 4, 50, str(mnist_root), train_samples=2_000, rounds=1)
    assert set(times) == {"naive", "naive b + r", "rehearsal", "plain naive", "plain rehearsal"}
    assert all(seconds > 0 for seconds in times.values())
    assert {16, 20} <= seen["naive"] and 4 in seen["rehearsal"]


def test_the_plain_loop_replays_r_samples_from_a_reservoir_of_pixels(mnist_root, monkeypatch):
    """The plain-loop column times naive steps on b samples and rehearsal steps on b + r, r
    drawn from the reservoir once it holds samples."""
    import buffers
    import torch.nn.functional as F

    sizes: list[int] = []
    cross_entropy = F.cross_entropy

    def counting(logits, labels, *args, **kwargs):
        sizes.append(len(labels))
        return cross_entropy(logits, labels, *args, **kwargs)

    monkeypatch.setattr(F, "cross_entropy", counting)
    naive, rehearsal = buffers.plain_step_times(16, 4, 50, str(mnist_root), train_samples=320)
    assert naive > 0 and rehearsal > 0
    assert sizes[:20] == [16] * 20 and sizes[20] == 16 and set(sizes[21:]) == {20}
