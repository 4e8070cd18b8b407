"""The per-sample reference buffers that benchmarks/buffers.py measures sylvan's policies against
must implement the same policies, or the speed-ups it prints compare different algorithms."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from reference_buffers import REFERENCES  # noqa: E402


def stream(buffer, steps: int = 30, seed: int = 0) -> None:
    """Batches of 16 whose labels come from a growing set of classes (up to 8)."""
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        y = torch.randint(0, 3 + step // 5, (16,), generator=generator)
        buffer.add(y.float().view(16, 1, 1, 1).expand(16, 1, 2, 2), y, torch.rand(16, 4, generator=generator))


@pytest.mark.parametrize("policy", ["class_balanced", "gdumb", "prs", "ring"])
def test_class_aware_references_stay_balanced_and_consistent(policy):
    np.random.seed(0)
    buffer = REFERENCES[policy](50, (1, 2, 2), "cpu")
    stream(buffer)
    slots = sorted(slot for members in buffer.members.values() for slot in members)
    assert slots == list(range(50)) and buffer.size == 50
    counts = {label: len(members) for label, members in buffer.members.items()}
    if policy == "prs":  # a class seen less than its share keeps every sample; none far above it
        share = 50 / len(counts)  # (ties among the largest go to the first label: up to 2 above)
        assert all(counts[c] == n for c, n in buffer.seen.items() if n <= share)
        assert max(counts.values()) <= share + 2
    else:
        assert max(counts.values()) - min(counts.values()) <= 1
    for label, members in buffer.members.items():  # each slot holds a sample of its label
        assert (buffer.y[members] == label).all() and (buffer.x[members] == label).all()


def test_reservoir_reference_fills_then_samples_distinct_rows():
    np.random.seed(0)
    buffer = REFERENCES["reservoir"](50, (1, 2, 2), "cpu")
    stream(buffer)
    assert buffer.size == 50 and buffer.seen == 480
    x, y = buffer.sample(20)
    assert len(set(x[:, 0, 0, 0].tolist())) <= len(set(y.tolist())) and len(y) == 20
    assert (x[:, 0, 0, 0] == y.float()).all()


def test_herding_reference_keeps_each_class_within_its_quota():
    buffer = REFERENCES["herding"](50, (1, 2, 2), "cpu")
    stream(buffer)
    quota = 50 // len(buffer.exemplars)
    for label, (x, features) in buffer.exemplars.items():
        assert len(x) == len(features) <= quota and (x == label).all()


def test_every_policy_has_a_reference():
    """benchmarks/buffers.py times every registered policy against its reference: one without
    would stop the benchmark."""
    from sylvan.buffers import BUFFER_POLICIES

    assert set(REFERENCES) == set(BUFFER_POLICIES)


def test_fifo_reference_keeps_the_most_recent_samples_in_ring_order():
    buffer = REFERENCES["fifo"](50, (1, 2, 2), "cpu")
    for step in range(30):  # 480 samples: the last 50 are 430..479, sample k in slot k mod 50
        ids = torch.arange(16 * step, 16 * step + 16)
        buffer.add(ids.float().view(16, 1, 1, 1).expand(16, 1, 2, 2), ids)
    assert buffer.size == 50
    assert buffer.y.tolist() == [430 + (slot - 430) % 50 for slot in range(50)]


def test_gss_reference_follows_the_replacement_law_of_sylvans_gss():
    """A full reference GSS buffer holding scores 0.2, 0.6, 1.2 lets a sample scored 0.4 replace
    slot i with probability (C_i / sum C) * C_i / (C_i + 0.4), as `sylvan.buffers.gss` does; a
    sample scored 1 or more never enters once it is full."""
    from scipy import stats

    held, offered, trials = [0.2, 0.6, 1.2], 0.4, 3000
    np.random.seed(0)
    counts = np.zeros(4)
    for _ in range(trials):
        buffer = REFERENCES["gss"](3, (1,), "cpu")
        buffer.add(torch.arange(3.0).unsqueeze(1), torch.arange(3), None, torch.tensor(held))
        buffer.add(torch.tensor([[-1.0]]), torch.tensor([9]), None, torch.tensor([offered]))
        where = np.flatnonzero(buffer.y.numpy() == 9)
        counts[where[0] if len(where) else 3] += 1
    expected = np.array([c / sum(held) * c / (c + offered) for c in held])
    expected = np.append(expected, 1 - expected.sum()) * trials
    assert stats.chisquare(counts, expected)[1] > 1e-3, (counts, expected)
    buffer.add(torch.tensor([[-2.0]]), torch.tensor([8]), None, torch.tensor([1.0]))
    assert 8 not in buffer.y.tolist() and buffer.size == 3


def test_ring_reference_keeps_each_class_s_most_recent_samples():
    buffer = REFERENCES["ring"](12, (1,), "cpu")
    labels = [0, 1, 2] * 10 + [0] * 5  # 35 samples: quotas 4, 4, 4
    for start in range(0, len(labels), 7):
        ids = torch.arange(start, min(start + 7, len(labels)))
        buffer.add(ids.float().unsqueeze(1), torch.tensor(labels[start:start + 7]))
    held = sorted(buffer.x[:, 0].long().tolist())
    last = {c: [i for i, label in enumerate(labels) if label == c][-4:] for c in range(3)}
    assert held == sorted(last[0] + last[1] + last[2])
