"""Property tests of the class-balanced policies (class_balanced, gdumb)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sylvan.buffers import BUFFER_POLICIES, ClassBalancedBuffer, GDumbBuffer, make_buffer
from sylvan.buffers.balancing import equal_quotas, group_ranks, level_down
from tests.buffers.labelled_streams import check_storage, feed, feed_from, label_batches

LABEL_BATCHES = label_batches(6)


@settings(max_examples=80, deadline=None)
@given(capacity=st.integers(1, 30), batches=LABEL_BATCHES, seed=st.integers(0, 5))
def test_class_balanced_keeps_min_of_seen_and_quota(capacity, batches, seed):
    buffer = ClassBalancedBuffer(capacity, seed=seed)
    total = feed(buffer, batches)
    check_storage(buffer, total)
    seen = torch.bincount(torch.tensor([y for b in batches for y in b], dtype=torch.long), minlength=7)
    assert np.array_equal(buffer.class_seen, seen[: len(buffer.class_seen)].numpy())
    assert seen[len(buffer.class_seen):].sum() == 0
    classes = torch.nonzero(seen).flatten()
    if len(classes) == 0:
        assert len(buffer) == 0
        return
    quotas = equal_quotas(len(classes), capacity)
    counts = buffer.class_counts()
    for quota, label in zip(quotas.tolist(), classes.tolist()):
        assert counts.get(label, 0) == min(int(seen[label]), quota)


@settings(max_examples=80, deadline=None)
@given(capacity=st.integers(1, 30), batches=LABEL_BATCHES, seed=st.integers(0, 5))
def test_gdumb_is_greedy_and_balanced(capacity, batches, seed):
    buffer = GDumbBuffer(capacity, seed=seed)
    total = feed(buffer, batches)
    check_storage(buffer, total)
    assert len(buffer) == min(capacity, total), "GDumb fills every slot it can"
    seen = torch.bincount(torch.tensor([y for b in batches for y in b], dtype=torch.long), minlength=7)
    counts = buffer.class_counts()
    if not counts:
        return
    largest = max(counts.values())
    for label in torch.nonzero(seen).flatten().tolist():
        held = counts.get(label, 0)
        if held < int(seen[label]):  # the class lost samples: it is (almost) the largest
            assert held >= largest - 1


def test_class_balanced_is_uniform_within_a_class():
    n, capacity, trials = 100, 20, 400
    counts = np.zeros(n)
    for seed in range(trials):
        buffer = ClassBalancedBuffer(capacity, seed=seed)
        for start in range(0, 2 * n, 10):  # two classes interleaved; class 0 has even ids
            ids = torch.arange(start, start + 10)
            buffer.add(x=ids.float().unsqueeze(1), y=ids % 2, id=ids)
        stored = buffer.get_all()
        evens = stored["id"][stored["y"] == 0] // 2
        counts[evens.numpy()] += 1
    assert counts.sum() == trials * capacity / 2
    _, p_value = stats.chisquare(counts.reshape(10, -1).sum(1))
    assert p_value > 1e-3, counts.reshape(10, -1).sum(1)


def test_new_class_shrinks_quotas():
    buffer = ClassBalancedBuffer(10, seed=0)
    buffer.add(x=torch.zeros(30, 1), y=torch.zeros(30, dtype=torch.long))
    assert buffer.class_counts() == {0: 10}
    buffer.add(x=torch.zeros(3, 1), y=torch.tensor([1, 1, 2]))
    assert buffer.class_counts() == {0: 4, 1: 2, 2: 1}


def test_gdumb_skips_samples_of_the_largest_class():
    buffer = GDumbBuffer(4, seed=0)
    buffer.add(x=torch.arange(4.0).unsqueeze(1), y=torch.tensor([0, 0, 0, 1]))
    buffer.add(x=torch.tensor([[9.0]]), y=torch.tensor([0]))
    assert sorted(buffer.get_all()["x"][:, 0].tolist()) == [0.0, 1.0, 2.0, 3.0]
    buffer.add(x=torch.tensor([[7.0]]), y=torch.tensor([2]))
    assert buffer.class_counts() == {0: 2, 1: 1, 2: 1}


@pytest.mark.parametrize("policy", sorted(BUFFER_POLICIES))
def test_state_dict_restores_future_draws(policy):
    batches = [[i % 5 for i in range(j, j + 7)] for j in range(12)]
    a = make_buffer(policy, 12, seed=1)
    b = make_buffer(policy, 12, seed=2)
    feed(a, batches[:6], features=True)
    b.load_state_dict(a.state_dict())
    for buffer in (a, b):  # the same continuation of the stream, ids 42 onwards
        feed_from(buffer, batches[6:], start=42)
    assert torch.equal(a.get_all()["id"], b.get_all()["id"])
    assert torch.equal(a.sample(5)["id"], b.sample(5)["id"])
    assert a.seen == b.seen == 84
    assert a.replaced == b.replaced > 0


@pytest.mark.parametrize("policy", sorted(BUFFER_POLICIES))
def test_replaced_counts_the_samples_written_over_stored_ones(policy):
    """`replaced`: how many stored samples were overwritten, batch by batch (ids are unique, so a
    slot below the size before the batch that holds another id after it was replaced once)."""
    buffer, start, replaced = make_buffer(policy, 10, seed=3), 0, 0
    for j in range(15):
        held = buffer.get_all()["id"].clone() if len(buffer) else torch.empty(0, dtype=torch.long)
        start = feed_from(buffer, [[(j + i) % 4 for i in range(6)]], start)
        replaced += int((buffer.get_all()["id"][: len(held)] != held).sum())
        assert buffer.replaced == replaced
    assert replaced > 0


@settings(max_examples=100, deadline=None)
@given(counts=st.lists(st.integers(0, 20), min_size=1, max_size=8), data=st.data())
def test_level_down_removes_from_the_top(counts, data):
    array = np.array(counts, dtype=np.int64)
    remove = data.draw(st.integers(0, int(array.sum())))
    removal = level_down(array, remove, np.random.default_rng(0).permutation(len(array)))
    after = array - removal
    assert int(removal.sum()) == remove and (removal >= 0).all() and (after >= 0).all()
    cut = removal > 0
    if cut.any():  # every class that was cut ends within one of the largest remaining
        assert int(after[cut].min()) >= int(after.max()) - 1


def test_group_ranks():
    labels = np.array([3, 1, 3, 3, 1, 0])
    assert group_ranks(labels).tolist() == [0, 0, 1, 2, 1, 0]
    # counts passed in, with trailing zeros (a batch counted against more labels than it holds)
    assert group_ranks(labels, np.bincount(labels, minlength=7)).tolist() == [0, 0, 1, 2, 1, 0]


@pytest.mark.parametrize("policy", ["class_balanced", "gdumb", "prs"])
def test_class_aware_policies_refuse_negative_labels_and_keep_their_state(policy):
    buffer = make_buffer(policy, 8)
    buffer.add(x=torch.zeros(4, 2), y=torch.tensor([0, 1, 0, 2]))
    with pytest.raises(ValueError, match="labels >= 0"):
        buffer.add(x=torch.zeros(2, 2), y=torch.tensor([1, -1]))
    assert buffer.seen == 4 and buffer.class_seen.tolist() == [2, 1, 1]
    buffer.add(x=torch.zeros(2, 2), y=torch.tensor([4, 1], dtype=torch.int32))  # other int dtypes are fine
    assert buffer.class_seen.tolist() == [2, 2, 1, 0, 1] and buffer.class_counts() == {0: 2, 1: 2, 2: 1, 4: 1}


def level_down_one_unit_at_a_time(values, remove, tie_order, caps=None):
    """The definition: take one unit at a time from the entry with the largest current value
    that can still give; among equals, the first in `tie_order`."""
    current = np.array(values, dtype=np.int64)
    left = current.clip(min=0) if caps is None else np.array(caps, dtype=np.int64)
    rank = {int(entry): k for k, entry in enumerate(tie_order)}
    removal = np.zeros_like(current)
    for _ in range(remove):
        givers = [i for i in range(len(current)) if left[i] > 0]
        top = max(current[i] for i in givers)
        chosen = min((i for i in givers if current[i] == top), key=lambda i: rank[i])
        current[chosen] -= 1
        left[chosen] -= 1
        removal[chosen] += 1
    return removal


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.integers(-15, 40), min_size=1, max_size=10), data=st.data())
def test_level_down_equals_its_unit_at_a_time_definition(values, data):
    values = np.array(values, dtype=np.int64)
    caps = None
    if data.draw(st.booleans()):
        caps = np.array([data.draw(st.integers(0, 25)) for _ in values], dtype=np.int64)
    total = int((values.clip(min=0) if caps is None else caps).sum())
    remove = data.draw(st.integers(0, total))
    order = np.array(data.draw(st.permutations(list(range(len(values))))), dtype=np.int64)
    expected = level_down_one_unit_at_a_time(values, remove, order, caps)
    assert level_down(values, remove, order, caps).tolist() == expected.tolist()


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=1, max_size=60), data=st.data())
def test_random_slots_by_class_draws_distinct_slots_of_each_class(labels, data):
    buffer = ClassBalancedBuffer(60, seed=data.draw(st.integers(0, 5)))
    buffer.add(x=torch.zeros(len(labels), 1), y=torch.tensor(labels))
    held = buffer.stored_per_class()
    counts = np.array([data.draw(st.integers(0, int(n))) for n in held], dtype=np.int64)
    slots = buffer._random_slots_by_class(counts)
    assert len(np.unique(slots)) == len(slots) == int(counts.sum())
    assert np.bincount(buffer.slot_labels[slots], minlength=len(counts)).tolist() == counts.tolist()


@pytest.mark.parametrize("wanted", [3, 20])  # the rejection path and the permutation path
def test_random_slots_by_class_is_uniform_within_a_class(wanted):
    buffer = ClassBalancedBuffer(100, seed=1)
    buffer.add(x=torch.zeros(100, 1), y=torch.arange(100) % 4)  # 25 slots per class
    hits = np.zeros(100, dtype=np.int64)
    for _ in range(4000):
        hits[buffer._random_slots_by_class(np.array([0, wanted, 1, 0]))] += 1
    class_one = hits[buffer.members(1)]
    assert hits[buffer.members(0)].sum() == 0 and hits[buffer.members(2)].sum() == 4000
    assert stats.chisquare(class_one).pvalue > 1e-3
