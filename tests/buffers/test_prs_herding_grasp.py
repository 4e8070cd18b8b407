"""Property tests of PRS, herding and GRASP retrieval."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sylvan.buffers import HerdingBuffer, PRSBuffer, make_buffer
from sylvan.buffers.balancing import level_down
from sylvan.buffers.retrieval import DISTANCE_CHUNK_ROWS, distances_to_means, grasp_order
from sylvan.errors import ConfigurationError
from tests.buffers.labelled_streams import check_storage, feed, feed_from, label_batches

LABEL_BATCHES = label_batches(5)


@settings(max_examples=80, deadline=None)
@given(capacity=st.integers(1, 30), batches=LABEL_BATCHES, seed=st.integers(0, 5))
def test_prs_keeps_rare_classes_whole(capacity, batches, seed):
    buffer = PRSBuffer(capacity, seed=seed)
    total = feed(buffer, batches)
    check_storage(buffer, total)
    labels = [y for b in batches for y in b]
    seen = np.bincount(labels, minlength=6) if labels else np.zeros(6, dtype=int)
    counts = buffer.class_counts()
    classes = int((seen > 0).sum())
    for label in np.flatnonzero(seen):
        held = counts.get(int(label), 0)
        assert held <= seen[label]
        if seen[label] <= capacity // classes:  # never more than its equal share: all kept
            assert held == seen[label]


def test_prs_balances_an_imbalanced_stream():
    buffer = PRSBuffer(100, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(100):  # class 0 is 90% of the stream
        labels = np.where(rng.random(32) < 0.9, 0, rng.integers(1, 4, 32))
        y = torch.from_numpy(labels)
        buffer.add(x=torch.zeros(32, 1), y=y)
    counts = buffer.class_counts()
    assert len(buffer) == 100
    assert max(counts.values()) - min(counts.values()) <= 2, counts  # reservoir would keep ~90 of class 0


@settings(max_examples=80, deadline=None)
@given(capacity=st.integers(1, 30), batches=LABEL_BATCHES, seed=st.integers(0, 5), rho=st.sampled_from([0.0, 0.5]))
def test_prs_class_index_agrees_with_the_labels_after_every_batch(capacity, batches, seed, rho):
    # the index is built after every batch, so the next batch may keep it (when its writes
    # change no slot's label) or must drop it: either way it must list each label's slots
    buffer = PRSBuffer(capacity, seed=seed, rho=rho)
    start = 0
    for labels in batches:
        start = feed_from(buffer, [labels], start, features=False)
        check_storage(buffer, start)
        if not len(buffer):
            continue
        slot_labels = buffer.get_all()["y"].numpy()
        assert buffer.slot_labels[: len(buffer)].tolist() == slot_labels.tolist()
        for label in range(len(buffer.class_stored)):
            assert buffer.members(label).tolist() == np.flatnonzero(slot_labels == label).tolist()


def test_prs_steady_state_replaces_samples_by_samples_of_their_own_label():
    # a full, leveled memory fed balanced batches evicts, per class, as many as it admits: each
    # admitted sample takes the slot of an evicted one of its label, so no slot changes label
    buffer = PRSBuffer(100, seed=0)
    labels = torch.arange(10).repeat(4)
    start = feed_from(buffer, [labels.tolist()] * 3, 0, features=False)
    before_labels, before_ids = buffer.slot_labels.copy(), buffer.get_all()["id"].clone()
    for _ in range(5):
        start = feed_from(buffer, [labels.tolist()], start, features=False)
    assert buffer.slot_labels.tolist() == before_labels.tolist()
    assert not torch.equal(buffer.get_all()["id"], before_ids)  # samples were replaced
    assert buffer.class_counts() == {label: 10 for label in range(10)}


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 20), batches=LABEL_BATCHES, seed=st.integers(0, 3))
def test_herding_is_class_balanced(capacity, batches, seed):
    buffer = HerdingBuffer(capacity, seed=seed)
    total = feed(buffer, batches, features=True)
    check_storage(buffer, total)
    labels = [y for b in batches for y in b]
    if not labels:
        return
    seen = np.bincount(labels)
    classes = np.flatnonzero(seen)
    base, extra = divmod(capacity, len(classes))
    counts = buffer.class_counts()
    for index, label in enumerate(classes):
        assert counts.get(int(label), 0) == min(int(seen[label]), base + (1 if index < extra else 0))


def test_herding_keeps_the_exemplars_closest_to_the_mean():
    buffer = HerdingBuffer(2, seed=0)
    points = torch.tensor([[0.0], [10.0], [4.0], [6.0], [-3.0]])
    buffer.add(x=torch.arange(5.0).unsqueeze(1), y=torch.zeros(5, dtype=torch.long), features=points)
    # class mean 3.4: the pair whose mean is nearest is (0, 6) or (4, ...): herding keeps mean 3 or 5
    kept = buffer.get_all()["features"].flatten()
    assert abs(float(kept.mean()) - 3.4) <= 1.6
    with pytest.raises(ValueError, match="features"):
        HerdingBuffer(2).add(x=torch.zeros(1, 1), y=torch.zeros(1, dtype=torch.long))


def icarl_herding(features: torch.Tensor, mean: torch.Tensor, keep: int) -> list[int]:
    """iCaRL's exemplar selection as its reference code writes it: one pick per step."""
    chosen, running = [], torch.zeros_like(mean)
    for k in range(1, keep + 1):
        distance = ((mean - (running + features) / k) ** 2).sum(1)
        distance[chosen] = float("inf")
        chosen.append(int(distance.argmin()))
        running += features[chosen[-1]]
    return sorted(chosen)


@pytest.mark.parametrize("keep", [1, 4, 9])  # fewer kept than dropped: iCaRL's forward selection
def test_herding_a_bulk_add_selects_what_icarl_selects(keep):
    generator = torch.Generator().manual_seed(keep)
    features = torch.randn(30, 8, generator=generator).abs()
    buffer = HerdingBuffer(keep, seed=0)
    buffer.add(x=torch.arange(30.0).unsqueeze(1), y=torch.zeros(30, dtype=torch.long), features=features)
    kept = sorted(int(i) for i in buffer.get_all()["x"].flatten())
    assert kept == icarl_herding(features, features.mean(0), keep)


def test_herding_directions_agree_with_their_definitions():
    generator = torch.Generator().manual_seed(0)
    pool = torch.randn(12, 5, generator=generator)
    mean = pool.mean(0) + 0.1
    assert HerdingBuffer._herd_in(pool, mean, 3).tolist() == icarl_herding(pool, mean, 3)
    # backward: each step removes the candidate whose removal leaves the mean nearest to `mean`
    alive = list(range(12))
    for _ in range(4):
        distance = [float(((pool[[j for j in alive if j != i]].mean(0) - mean) ** 2).sum()) for i in alive]
        alive.pop(int(np.argmin(distance)))
    assert HerdingBuffer._herd_out(pool, mean, 4).tolist() == alive
    assert HerdingBuffer._herd(pool, mean, 3).tolist() == icarl_herding(pool, mean, 3)  # 3 kept < 9 dropped
    assert HerdingBuffer._herd(pool, mean, 8).tolist() == alive  # 4 dropped < 8 kept


@pytest.mark.parametrize("rows", [1, DISTANCE_CHUNK_ROWS - 1, DISTANCE_CHUNK_ROWS, 2 * DISTANCE_CHUNK_ROWS + 5])
def test_grasp_distances_by_chunks_are_those_of_one_pass(rows):
    generator = torch.Generator().manual_seed(rows)
    features, means = torch.randn(rows, 37, generator=generator), torch.randn(6, 37, generator=generator)
    group = torch.randint(0, 6, (rows,), generator=generator)
    assert torch.equal(distances_to_means(features, means, group), (features - means[group]).pow(2).sum(1))


@pytest.mark.parametrize("most_replays", [3, 40_000])  # a 16-bit key, and one too large for it
def test_grasp_order_is_the_stable_order_by_class_replays_and_distance(most_replays):
    rng = np.random.default_rng(most_replays)
    distance = rng.random(3000).astype(np.float32)
    distance[::5] = distance[0]  # ties, kept in slot order
    replays = rng.integers(0, most_replays + 1, 3000)
    group = rng.integers(0, 7, 3000)
    assert (grasp_order(distance, replays, group) == np.lexsort((distance, replays, group))).all()


def test_grasp_replays_prototypes_first_then_everyone():
    buffer = make_buffer("reservoir", 12, retrieval="grasp")
    labels = torch.tensor([0] * 6 + [1] * 6)
    distance = torch.tensor([5.0, 1.0, 3.0, 0.0, 2.0, 4.0] * 2)
    buffer.add(x=torch.arange(12.0).unsqueeze(1), y=labels, features=distance.unsqueeze(1))
    first = buffer.sample(4)
    assert sorted(first["y"].tolist()) == [0, 0, 1, 1], "class-balanced"
    # class mean is 2.5: the nearest are the samples with features 2 and 3
    assert sorted(first["features"].flatten().tolist()) == [2.0, 2.0, 3.0, 3.0]
    counts = buffer.retrieval.draw_counts.copy()
    assert len(buffer.uniform_sample(5)["x"]) == 5  # not a replay: GRASP's record stays as it was
    assert (buffer.retrieval.draw_counts == counts).all()
    seen = set(first["x"].flatten().tolist())
    for _ in range(2):
        seen |= set(buffer.sample(4)["x"].flatten().tolist())
    assert seen == set(range(12)), "every sample is replayed before any is replayed twice"
    with pytest.raises(ValueError, match="features"):
        plain = make_buffer("reservoir", 4, retrieval="grasp")
        plain.add(x=torch.zeros(2, 1), y=torch.zeros(2, dtype=torch.long))
        plain.sample(1)
    with pytest.raises(ConfigurationError):
        make_buffer("reservoir", 4, retrieval="nope")


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(-10, 20), min_size=1, max_size=8), data=st.data())
def test_level_down_with_caps(values, data):
    values = np.array(values)
    caps = np.array([data.draw(st.integers(0, 10)) for _ in values])
    remove = data.draw(st.integers(0, int(caps.sum())))
    removal = level_down(values, remove, np.arange(len(values)), caps=caps)
    assert removal.sum() == remove and (removal >= 0).all() and (removal <= caps).all()
    after = values - removal
    cut = removal > 0
    if cut.any():  # a cut entry ends within one of every entry that could still give
        could_give = removal < caps
        if could_give.any():
            assert after[cut].min() >= after[could_give].max() - 1
