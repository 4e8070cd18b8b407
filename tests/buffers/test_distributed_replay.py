"""The global replay across 2 gloo workers (real processes): uniform over the union of the
buffers, b + r samples per step, representatives that are real stored samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from sylvan.buffers import make_buffer
from sylvan.buffers.global_replay import GlobalReplay
from tests.gloo_workers import results_on_two_workers

SIZES = (30, 90)  # worker 1 holds three times as many samples as worker 0
R = 8


def worker(rank: int, synchronous: bool, sizes_on_host: bool) -> dict:
    buffer = make_buffer("reservoir", SIZES[rank], seed=rank)
    replay = GlobalReplay(buffer, R, synchronous=synchronous, seed=3, sizes_on_host=sizes_on_host)
    # sample ids: worker 0 owns 0..29, worker 1 owns 1000..1089; label = id % 10; x encodes the id
    ids = torch.arange(SIZES[rank]) + 1000 * rank
    drawn, batch_sizes, consistent = [], [], True
    for step in range(400):
        if step == 0:
            new = ids
        else:  # later batches: samples the buffers will not keep (capacity reached, stream long)
            new = torch.full((4,), -1, dtype=torch.long)
        x = new.float().unsqueeze(1).repeat(1, 3)
        y = new % 10
        out_x, out_y = replay.augment((x, y))
        batch_sizes.append(len(out_y))
        rows = out_x[len(new):, 0].long()
        consistent &= bool(torch.equal(rows % 10, out_y[len(new):]))
        drawn += rows.tolist()
        if step == 0:  # keep the buffers as they are after the first batch
            buffer.add = lambda **_: None
    replay.wait()
    return {"drawn": drawn, "sizes": batch_sizes, "ok": consistent, "timings": replay.timings()}


# sizes_on_host: the sizes in a gloo collective of their own, as on CUDA (forced here on the CPU)
@pytest.mark.parametrize("synchronous, sizes_on_host", [(False, False), (True, False), (False, True)])
def test_global_sampling_is_uniform_over_the_union(tmp_path, synchronous, sizes_on_host):
    for rank, result in enumerate(results_on_two_workers(worker, tmp_path, synchronous, sizes_on_host)):
        sizes = result["sizes"]
        assert result["ok"], "every replayed x matches its stored label"
        new_count = SIZES[rank]
        assert sizes[0] == new_count, "nothing to replay before any buffer holds a sample"
        assert all(size == 4 + R for size in sizes[2:]), "b + r samples on every step"
        drawn = np.array(result["drawn"])
        assert set(drawn.tolist()) <= set(range(30)) | set(range(1000, 1090)), "only stored samples"
        from_worker_1 = float((drawn >= 1000).mean())
        # uniform over the union: 90 / 120 of the draws come from worker 1, whoever asks
        assert abs(from_worker_1 - 0.75) < 0.03, from_worker_1
        counts = np.bincount(np.where(drawn >= 1000, drawn - 1000 + 30, drawn), minlength=120)
        _, p_value = stats.chisquare(counts)
        assert p_value > 1e-3, "every stored sample equally likely"
        timings = result["timings"]
        assert timings["replay_steps"] == 400
        assert 0 < timings["replay_blocked_ms_per_step"] < timings["replay_critical_ms_per_step"]


def test_a_restored_replay_draws_as_the_one_never_stopped(tmp_path):
    """What a checkpoint keeps of the replay at a task's end (its generator, its step count, and
    the candidates of the exchange that completed then, which the next step draws from) makes a
    restored replay, with its buffer restored, give the same batches as the original."""

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.arange(4) + 4 * step
        return ids.float().unsqueeze(1), ids % 10

    original = GlobalReplay(make_buffer("reservoir", 20, seed=1), R, seed=3)
    for step in range(30):
        original.augment(batch(step))
    original.wait()  # the task ends
    torch.save({"buffer": original.buffer.state_dict(), "replay": original.state_dict()}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=False)
    restored = GlobalReplay(make_buffer("reservoir", 20, seed=8), R, seed=9)
    restored.buffer.load_state_dict(state["buffer"])
    restored.load_state_dict(state["replay"])
    for step in range(30, 60):
        expected, got = original.augment(batch(step)), restored.augment(batch(step))
        assert len(got[1]) == 4 + R
        assert all(torch.equal(a, b) for a, b in zip(expected, got)), step
    assert restored.timings()["replay_steps"] == original.timings()["replay_steps"] == 60
    # with one worker every candidate is its own; with more, the split among them is drawn too
    for _ in range(5):
        sizes = np.array([30, 50, 20])
        assert np.array_equal(restored.choose_from_union(sizes), original.choose_from_union(sizes))


DRAWS = (R, 5)  # two independent draws per step, as DER++ makes


def worker_with_draws(rank: int) -> dict:
    """A method that replays by itself: the strategy prepares the step's draws, the method takes
    them and inserts its new samples (with logits beside them) itself."""
    buffer = make_buffer("reservoir", SIZES[rank], seed=rank)
    replay = GlobalReplay(buffer, DRAWS, seed=3, join_batch=False)
    ids = torch.arange(SIZES[rank]) + 1000 * rank
    draws, consistent = [[], []], True
    for step in range(400):
        new = ids if step == 0 else torch.full((4,), -1, dtype=torch.long)
        x, y = new.float().unsqueeze(1).repeat(1, 3), new % 10
        assert replay.training_batch((x, y))[0] is x, "the batch is left as it is"
        for k, size in enumerate(DRAWS):
            drawn = replay.take(size)
            if step == 0:
                consistent &= drawn == {}
                continue
            rows = drawn["x"][:, 0].long()
            consistent &= len(rows) == size and len(set(rows.tolist())) == size
            consistent &= bool(torch.equal(rows % 10, drawn["y"]))
            consistent &= bool(torch.equal(rows.float(), drawn["logits"][:, 0]))
            draws[k].append(rows.tolist())
        replay.insert({"x": x, "y": y, "logits": new.float().unsqueeze(1).repeat(1, 2)})
        if step == 0:
            buffer.add = lambda **_: None
    replay.wait()
    return {"draws": draws, "ok": bool(consistent)}


def test_several_draws_per_step_are_each_uniform_over_the_union_and_independent(tmp_path):
    for result in results_on_two_workers(worker_with_draws, tmp_path):
        assert result["ok"], "each draw has its size, distinct stored samples, their labels and logits"
        for draw in result["draws"]:
            drawn = np.array([row for step in draw for row in step])
            assert set(drawn.tolist()) <= set(range(30)) | set(range(1000, 1090))
            assert abs(float((drawn >= 1000).mean()) - 0.75) < 0.04
            counts = np.bincount(np.where(drawn >= 1000, drawn - 1000 + 30, drawn), minlength=120)
            assert stats.chisquare(counts)[1] > 1e-3
        # independent draws share R * 5 / 120 samples on average; the same draw twice would share
        # 5, disjoint parts of one draw none
        overlaps = [len(set(a) & set(b)) for a, b in zip(*result["draws"])]
        assert abs(np.mean(overlaps) - R * 5 / 120) < 0.12, np.mean(overlaps)


def test_a_method_takes_the_declared_draws_and_inserts_its_samples():
    replay = GlobalReplay(make_buffer("reservoir", 50, seed=1), (6, 4), seed=3, join_batch=False)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.arange(4) + 4 * step
        return ids.float().unsqueeze(1), ids % 10

    for step in range(10):
        x, y = batch(step)
        replay.training_batch((x, y))
        first, second = replay.take(6), replay.take(4)
        stored = min(4 * step, 50)
        assert len(first.get("y", [])) == min(6, stored) and len(second.get("y", [])) == min(4, stored)
        with pytest.raises(RuntimeError, match="declares every draw it makes"):
            replay.take(1)
        replay.insert({"x": x, "y": y})
    replay.training_batch(batch(10))
    with pytest.raises(ValueError, match="asked for 7 samples from a draw of 6"):
        replay.take(7)
    part = replay.take(3)  # a smaller last batch replays fewer: 3 of the 6, chosen at random
    assert len(part["x"]) == 3 and len(set(part["x"][:, 0].tolist())) == 3
    assert set(part["x"][:, 0].long().tolist()) <= set(range(40))
    # a step that never inserted leaves the next one without candidates: refused, not silent
    with pytest.raises(RuntimeError, match="must call `insert`"):
        replay.training_batch(batch(11))
