"""Every replay method replays from the distributed rehearsal buffer on data-parallel settings:
each draw it makes comes from the global replay (never from its local buffer alone), and its new
samples go in through the global replay, which sends the next step's candidates. Generated over
the registry: a new replay method gets its row without touching this file."""

from __future__ import annotations

import pytest

from sylvan.buffers.base import RehearsalBuffer
from sylvan.buffers.global_replay import GlobalReplay
from sylvan.methods import METHODS, ReplayMethod
from sylvan.settings import DistributedSetting
from tests.conftest import tiny_method, tiny_options

REPLAY_METHODS = sorted(name for name, cls in METHODS.items() if issubclass(cls, ReplayMethod))


def test_the_replay_methods_are_known():
    assert {"rehearsal", "der", "derpp", "er_ace", "mir"} <= set(REPLAY_METHODS)


@pytest.mark.parametrize("name", REPLAY_METHODS)
def test_a_replay_method_draws_every_replay_from_the_global_buffer(name, monkeypatch):
    method_cls = METHODS[name]
    setting = DistributedSetting(**tiny_options(DistributedSetting), batch_size=8)
    takes: list[tuple[int, int]] = []  # (step, samples asked for)
    take, insert = GlobalReplay.take, GlobalReplay.insert

    def recorded_take(self, n):
        takes.append((self.steps, n))
        return take(self, n)

    def recorded_insert(self, fields):
        assert "y" in fields and len(fields["x"]) == len(fields["y"])
        return insert(self, fields)

    def local_sample(self, n):
        raise AssertionError("a replay drawn from the local buffer alone")

    monkeypatch.setattr(GlobalReplay, "take", recorded_take)
    monkeypatch.setattr(GlobalReplay, "insert", recorded_insert)
    monkeypatch.setattr(RehearsalBuffer, "sample", local_sample)
    method = tiny_method(method_cls, buffer_size=30, replay_size=4)
    assert setting.apply(method).complete
    replay = method.replay
    declared = method.replay_draws(setting.batch_size)
    assert replay.draw_sizes == declared and not replay.join_batch
    steps = sum(-(-len(task.x_train) // 8) for task in setting.prepare_tasks())
    assert method.runtime_stats()["replay_steps"] == replay.steps == steps
    assert len(method.buffer) > 0, "the new samples reached the local buffer"
    per_step: dict[int, list[int]] = {}
    for step, n in takes:
        per_step.setdefault(step, []).append(n)
    assert len(per_step) == steps
    for step, asked in per_step.items():  # every declared draw, in order, at its declared size
        # (on the first step nothing is stored yet: DER++ then skips its second draw)
        assert asked == list(declared) or (step == 1 and asked == list(declared[: len(asked)])), (step, asked)


@pytest.mark.parametrize("name", ["rehearsal", "derpp"])
def test_replay_scope_local_draws_from_the_own_buffer_under_plain_ddp(name, monkeypatch):
    """The baseline of the distributed buffer: each worker replays from its own buffer alone."""
    def no_global_replay(self, n):
        raise AssertionError("a draw from the global buffer")

    monkeypatch.setattr(GlobalReplay, "take", no_global_replay)
    setting = DistributedSetting(**tiny_options(DistributedSetting), batch_size=8, replay_scope="local")
    method = tiny_method(METHODS[name], buffer_size=30, replay_size=4)
    assert setting.apply(method).complete
    assert not method.replays_globally and method.runtime_stats() == {}
    assert len(method.buffer) == 30
