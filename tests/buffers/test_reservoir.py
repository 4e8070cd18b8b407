import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sylvan.buffers import ReservoirBuffer, make_buffer
from sylvan.errors import ConfigurationError, UnknownNameError


def stream_batches(sizes, width=3):
    start = 0
    for size in sizes:
        ids = torch.arange(start, start + size)
        yield ids.float().unsqueeze(1).repeat(1, width), ids
        start += size


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(0, 40), sizes=st.lists(st.integers(0, 25), max_size=12), seed=st.integers(0, 10))
def test_capacity_and_seen_count(capacity, sizes, seed):
    buffer = ReservoirBuffer(capacity, seed=seed)
    for x, y in stream_batches(sizes):
        buffer.add(x=x, y=y)
    total = sum(sizes)
    assert buffer.seen == total
    assert len(buffer) == min(capacity, total)
    if len(buffer):
        stored = buffer.get_all()
        ids = stored["y"]
        assert len(set(ids.tolist())) == len(ids), "a sample is stored twice"
        assert torch.equal(stored["x"][:, 0].long(), ids), "fields of a slot come from one sample"
        assert ids.max() < total


def test_first_samples_fill_the_buffer_in_order():
    buffer = ReservoirBuffer(5)
    x, y = next(stream_batches([4]))
    buffer.add(x=x, y=y)
    assert buffer.get_all()["y"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("batch_size", [1, 7, 50])
def test_inclusion_is_uniform_over_the_stream(batch_size):
    """Each of n samples ends in a buffer of capacity c with probability c/n. 'Keep the most
    recent' or 'keep the first' would put all mass on one end and fail the chi-square test."""
    n, capacity, trials = 200, 20, 600
    counts = np.zeros(n)
    for seed in range(trials):
        buffer = ReservoirBuffer(capacity, seed=seed)
        for x, y in stream_batches([batch_size] * (n // batch_size) + [n % batch_size]):
            buffer.add(x=x, y=y)
        counts[buffer.get_all()["y"].numpy()] += 1
    expected = trials * capacity / n
    assert counts.sum() == trials * capacity
    # compare the inclusion counts of 10 consecutive blocks of the stream
    blocks = counts.reshape(10, -1).sum(axis=1)
    _, p_value = stats.chisquare(blocks, np.full(10, expected * n / 10))
    assert p_value > 1e-3, f"inclusion is not uniform: {blocks}"


def test_sample_draws_distinct_stored_samples():
    buffer = ReservoirBuffer(30, seed=1)
    for x, y in stream_batches([10] * 10):
        buffer.add(x=x, y=y)
    drawn = buffer.sample(12)
    assert drawn["y"].shape == (12,)
    assert len(set(drawn["y"].tolist())) == 12
    assert set(drawn["y"].tolist()) <= set(buffer.get_all()["y"].tolist())
    assert len(buffer.sample(100)["y"]) == 30
    assert ReservoirBuffer(5).sample(3) == {}


def test_sampling_is_uniform_over_slots():
    buffer = ReservoirBuffer(10, seed=3)
    x, y = next(stream_batches([10]))
    buffer.add(x=x, y=y)
    counts = np.zeros(10)
    for _ in range(3000):
        counts[buffer.sample(3)["y"].numpy()] += 1
    _, p_value = stats.chisquare(counts)
    assert p_value > 1e-3


@pytest.mark.parametrize("batch_sizes", [[1] * 90, [7] * 13, [64, 3, 64, 1, 40, 128, 9]])
def test_batches_decide_as_one_sample_at_a_time(batch_sizes):
    """The vectorized insertion makes the decisions of Algorithm R applied one sample at a
    time with the same random numbers (the buffer's generator draws one uniform per sample and
    batch): sample k takes slot floor(u * (k + 1)) when that is below the capacity, later
    samples overwriting earlier ones. Batches larger than the capacity make in-batch
    collisions certain."""
    capacity, seed = 12, 5
    buffer = ReservoirBuffer(capacity, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    expected, seen = [None] * capacity, 0
    for x, y in stream_batches(batch_sizes):
        buffer.add(x=x, y=y)
        draws = torch.rand(len(y), generator=generator, dtype=torch.float64).tolist()
        for label, u in zip(y.tolist(), draws):
            slot = seen if seen < capacity else int(u * (seen + 1))
            if slot < capacity:
                expected[slot] = label
            seen += 1
    assert buffer.get_all()["y"].tolist() == expected


def test_state_dict_restores_future_draws():
    a = ReservoirBuffer(15, seed=4)
    batches = list(stream_batches([6] * 10))
    for x, y in batches[:5]:
        a.add(x=x, y=y)
    b = ReservoirBuffer(15, seed=99)
    b.load_state_dict(a.state_dict())
    for x, y in batches[5:]:
        a.add(x=x, y=y)
        b.add(x=x, y=y)
    assert torch.equal(a.get_all()["y"], b.get_all()["y"])
    assert torch.equal(a.sample(5)["y"], b.sample(5)["y"])
    assert a.seen == b.seen == 60


def test_class_counts_and_errors():
    buffer = ReservoirBuffer(6)
    buffer.add(x=torch.zeros(6, 2), y=torch.tensor([0, 0, 1, 2, 2, 2]))
    assert buffer.class_counts() == {0: 2, 1: 1, 2: 3}
    with pytest.raises(ValueError):
        buffer.add(x=torch.zeros(2, 2))
    with pytest.raises(ConfigurationError):
        ReservoirBuffer(-1)
    with pytest.raises(UnknownNameError,
                       match="valid buffer policies: aser, class_balanced, fifo, gdumb, gss, herding, prs, reservoir"):
        make_buffer("nope", 10)


def test_sampling_from_a_large_buffer_is_uniform():
    """Few draws from many slots take the rejection path of `_choose`; it must stay uniform."""
    buffer = ReservoirBuffer(1000, seed=5)
    ids = torch.arange(1000)
    buffer.add(x=ids.float().unsqueeze(1), y=ids)
    counts = np.zeros(1000)
    for _ in range(2000):
        drawn = buffer.sample(10)["y"].numpy()
        assert len(set(drawn.tolist())) == 10
        counts[drawn] += 1
    _, p_value = stats.chisquare(counts.reshape(20, -1).sum(1))
    assert p_value > 1e-3


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced", "gdumb", "prs", "herding", "fifo", "ring"])
def test_torch_write_path_stores_what_the_numpy_path_stores(policy):
    """CPU storage is written through NumPy views; a field NumPy cannot view (bfloat16) sends the
    whole buffer through torch's index_copy_, the CUDA path, where every sample of a batch is
    scattered and the ones turned away land in a spare row. Both must store the same samples,
    also after a save and restore."""
    buffers = {dtype: make_buffer(policy, 30, seed=3) for dtype in (torch.float32, torch.bfloat16)}
    generator = torch.Generator().manual_seed(0)
    for step in range(12):  # new classes keep arriving, so class-aware policies also compact
        if step == 6:  # resume each buffer from its saved state halfway
            for dtype, buffer in list(buffers.items()):
                buffers[dtype] = make_buffer(policy, 30, seed=3)
                buffers[dtype].load_state_dict(buffer.state_dict())
        y = torch.randint(0, 2 + step // 2, (17,), generator=generator)
        ids = torch.arange(17 * step, 17 * (step + 1))
        features = torch.rand(17, 3, generator=generator)
        for dtype, buffer in buffers.items():
            fields = dict(x=ids.to(dtype), y=y, id=ids)
            if policy == "herding":
                fields["features"] = features
            buffer.add(**fields)
    fast, torch_path = buffers[torch.float32], buffers[torch.bfloat16]
    assert fast._host_views is not None and torch_path._host_views is None
    assert len(fast) == len(torch_path) == 30
    assert all(len(values) == 30 for values in torch_path.storage.values())  # the spare row stays hidden
    for name in ("id", "y"):
        assert torch.equal(fast.get_all()[name], torch_path.get_all()[name])
    stored_ids = torch_path.get_all()["id"]
    assert torch.equal(torch_path.get_all()["x"], stored_ids.to(torch.bfloat16))


def test_saved_device_falls_back_where_the_machine_lacks_it():
    """A checkpoint of a GPU buffer resumes on a machine without CUDA: its storage stays on the
    CPU it was loaded on instead of failing."""
    from sylvan.buffers.base import saved_device

    assert saved_device({"device": "cpu"}) == torch.device("cpu")
    assert saved_device({"device": None}) is None and saved_device({}) is None
    expected = torch.device("cuda:0") if torch.cuda.is_available() else None
    assert saved_device({"device": "cuda:0"}) == expected
    buffer = ReservoirBuffer(8, seed=0)
    buffer.add(x=torch.ones(4, 3), y=torch.zeros(4, dtype=torch.long))
    state = buffer.state_dict()
    assert state["device"] == "cpu"
    if not torch.cuda.is_available():  # as a GPU run's checkpoint read here
        state["device"] = "cuda:0"
        restored = ReservoirBuffer(8, seed=0)
        restored.load_state_dict(state)
        assert restored.device == torch.device("cpu") and len(restored) == 4


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced", "gdumb", "prs", "herding", "fifo", "ring"])
@pytest.mark.parametrize("pixels", [False, True])
def test_every_stored_row_is_the_row_of_its_sample(policy, pixels):
    """Rows of several elements are copied as whole records (`record_rows`) when a batch's rows
    are contiguous and of the stored dtype, element by element otherwise (a transposed view,
    float64 given to float32 storage, floats given to pixel storage); policies that free slots
    move rows as records too. Whatever the path, each stored row is its own sample's."""
    from sylvan.buffers.base import record_rows

    def rows_of(ids: torch.Tensor) -> torch.Tensor:  # (n, 2, 3): a row that tells its sample apart
        values = (ids.view(-1, 1, 1) * 7 + torch.arange(6).view(1, 2, 3)) % 251
        return values.to(torch.uint8) if pixels else values.float()

    buffer = make_buffer(policy, 30, seed=1, pixel_fields=("x",) if pixels else ())
    generator = torch.Generator().manual_seed(0)
    for step in range(14):
        ids = torch.arange(17 * step, 17 * (step + 1))
        x = rows_of(ids)
        if step % 3 == 1:  # the same values through a view whose rows are not contiguous
            x = x.transpose(1, 2).contiguous().transpose(1, 2)
        elif step % 3 == 2:  # another dtype: float64, or floats k / 255 for pixels
            x = x.double() if not pixels else x.float() / 255
        fields = dict(x=x, y=torch.randint(0, 2 + step // 2, (17,), generator=generator), id=ids)
        if policy == "herding":
            fields["features"] = torch.rand(17, 3, generator=generator)
        buffer.add(**fields)
    assert "x" in buffer._host_records and record_rows(buffer._host_views["id"]) is None
    stored = buffer.get_all(pixels=True)
    assert len(stored["id"]) == len(buffer) > 20
    assert torch.equal(stored["x"], rows_of(stored["id"]))


@pytest.mark.parametrize("policy", ["reservoir", "fifo", "class_balanced", "ring"])
@pytest.mark.parametrize("pixels", [False, True])
def test_a_row_is_stored_as_a_batch_of_one(policy, pixels):
    """`add_row` (an agent's transition: NumPy values without a batch axis, written in place
    where the policy picks a slot without reading the sample) leaves the buffer as `add` of the
    same sample as a batch of one: the stored rows, size, seen and replaced counts, and the
    generator's next draws, past the capacity and after a save and restore; policies that read
    the sample, pixel fields and the first sample (which sets the dtypes) go through `add`."""
    by_row, by_batch = (make_buffer(policy, 12, seed=5, pixel_fields=("x",) if pixels else ()) for _ in range(2))
    generator = np.random.default_rng(0)
    for k in range(40):
        if k == 20:
            restored = make_buffer(policy, 12, seed=5, pixel_fields=("x",) if pixels else ())
            restored.load_state_dict(by_row.state_dict())
            by_row = restored
        x = generator.integers(0, 256, (2, 3)).astype(np.float32) / (255 if pixels else 1)
        row = {"x": x if k % 2 else x.astype(np.float64), "y": np.asarray(k % 3), "reward": np.float32(k / 7)}
        by_row.add_row(**row)
        by_batch.add(**{name: torch.from_numpy(np.asarray(value)[None]) for name, value in row.items()})
    in_place = policy in ("reservoir", "fifo") and not pixels
    assert (by_row._one_slot and not pixels) == in_place
    assert (len(by_row), by_row.seen, by_row.replaced) == (len(by_batch), by_batch.seen, by_batch.replaced)
    assert by_row.replaced > 0
    for name, values in by_batch.get_all(pixels=True).items():
        assert torch.equal(by_row.get_all(pixels=True)[name], values)
    assert torch.equal(by_row.sample(5)["y"], by_batch.sample(5)["y"])
    with pytest.raises(ValueError, match="differ"):
        by_row.add_row(x=x, y=np.asarray(0))


def test_a_policy_that_chooses_batches_anew_chooses_one_sample_anew():
    """A subclass that overrides `_select_slots` without `_slot_of_one` stores rows through it."""
    from sylvan.buffers.fifo import FIFOBuffer

    class Newest(FIFOBuffer):
        def _select_slots(self, batch, count):  # always the first slot
            self.size = max(self.size, 1)
            return np.zeros(1, dtype=np.int64), np.array([count - 1], dtype=np.int64)

    buffer = Newest(4)
    assert not Newest._one_slot and FIFOBuffer._one_slot
    for k in range(3):
        buffer.add_row(x=np.full(2, k, dtype=np.float32))
    assert len(buffer) == 1 and buffer.get_all()["x"].tolist() == [[2.0, 2.0]]
