"""Buffers in GPU memory: a CUDA buffer must keep, replay and restore exactly what a CPU buffer
with the same seed does, and the one-worker global replay (side-stream insertion, device-side
gathers) must give the batches the CPU one gives. The decisions are made on the host in both
cases; only the storage and the copies move. Skipped where there is no CUDA device."""

from __future__ import annotations

import pytest
import torch

from sylvan.buffers import BUFFER_POLICIES, make_buffer, needs_features
from sylvan.buffers.global_replay import GlobalReplay
from tests.buffers.labelled_streams import supplied_inputs

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def labelled_stream(steps: int, batch: int, seed: int = 0):
    """Batches whose x encodes the sample id, so stored rows can be traced back to the stream;
    new classes keep arriving, so class-aware policies also shrink their quotas and compact."""
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        ids = torch.arange(batch * step, batch * (step + 1))
        y = torch.randint(0, 2 + step // 2, (batch,), generator=generator)
        # features in steps of 1/8: exact in float32 whatever the order of a sum, so herding's
        # and GRASP's distances, and with them their choices, are the same on every device
        features = torch.randint(0, 64, (batch, 4), generator=generator).float() / 8
        yield ids.float().unsqueeze(1).repeat(1, 5), y, ids, features


def fill(buffer, device: str, policy: str, retrieval: str, steps: range, stream: list) -> None:
    for step in steps:
        x, y, ids, features = stream[step]
        fields = dict(x=x.to(device), y=y.to(device), id=ids.to(device))
        if needs_features(policy, retrieval):
            fields["features"] = features.to(device)
        fields.update({name: values.to(device) for name, values in supplied_inputs(buffer, ids).items()})
        buffer.add(**fields)


@CUDA
@pytest.mark.parametrize("retrieval", ["uniform", "grasp"])
@pytest.mark.parametrize("policy", sorted(BUFFER_POLICIES))
def test_cuda_buffer_decides_and_replays_as_the_cpu_buffer(policy, retrieval):
    stream = list(labelled_stream(14, 17))
    buffers = {
        device: make_buffer(policy, 30, device=device, seed=3, retrieval=retrieval) for device in ("cpu", "cuda")
    }
    for device, buffer in buffers.items():
        fill(buffer, device, policy, retrieval, range(10), stream)
    cpu, cuda = buffers["cpu"], buffers["cuda"]
    assert all(values.is_cuda for values in cuda.storage.values())
    assert len(cpu) == len(cuda) == 30 and cpu.seen == cuda.seen
    assert cpu.class_counts() == cuda.class_counts()
    for name, values in cpu.get_all().items():
        assert torch.equal(values, cuda.get_all()[name].cpu()), name
    replayed = cuda.sample(12)
    assert all(values.is_cuda for values in replayed.values())
    expected = cpu.sample(12)
    for name in ("x", "y", "id"):
        assert torch.equal(expected[name], replayed[name].cpu()), name
    assert torch.equal(replayed["x"][:, 0].long(), replayed["id"])  # rows travel whole

    # a CUDA buffer's state restores into a fresh CUDA buffer, which then decides as the CPU one
    restored = make_buffer(policy, 30, device="cuda", seed=99, retrieval=retrieval)
    restored.load_state_dict(cuda.state_dict())
    for buffer, device in ((cpu, "cpu"), (restored, "cuda")):
        fill(buffer, device, policy, retrieval, range(10, 14), stream)
    assert torch.equal(cpu.get_all()["id"], restored.get_all()["id"].cpu())
    assert torch.equal(cpu.sample(9)["id"], restored.sample(9)["id"].cpu())


@CUDA
@pytest.mark.parametrize("synchronous", [False, True])
def test_one_worker_replay_on_cuda_gives_the_cpu_batches(synchronous):
    """One worker on a GPU: insertion runs on a side stream and the representatives are gathered
    on the device; every augmented batch must equal the CPU replay's, step after step."""
    replays = {
        device: GlobalReplay(make_buffer("reservoir", 40, device=device, seed=1), 8, synchronous, seed=2)
        for device in ("cpu", "cuda")
    }
    for x, y, _ids, _features in labelled_stream(25, 6, seed=4):
        outputs = {device: replay.augment((x.to(device), y.to(device))) for device, replay in replays.items()}
        (cpu_x, cpu_y), (cuda_x, cuda_y) = outputs["cpu"], outputs["cuda"]
        assert cuda_x.is_cuda and cuda_y.is_cuda
        assert torch.equal(cpu_x, cuda_x.cpu()) and torch.equal(cpu_y, cuda_y.cpu())
        if replays["cuda"].steps > 2:  # the buffer held >= r samples when this step's draw left
            assert len(cuda_y) == 6 + 8
    assert replays["cuda"].side_stream is not None


@CUDA
def test_one_worker_draws_for_a_method_on_cuda_are_the_cpu_draws():
    """The draws a replay method takes (two per step, one cut to fewer samples) and the extra
    fields it stores (logits) are the same on a GPU as on the CPU, step after step."""
    replays = {
        device: GlobalReplay(make_buffer("reservoir", 40, device=device, seed=1), (8, 5), seed=2, join_batch=False)
        for device in ("cpu", "cuda")
    }
    for x, y, _ids, _features in labelled_stream(25, 6, seed=4):
        taken = {}
        for device, replay in replays.items():
            batch = (x.to(device), y.to(device))
            replay.training_batch(batch)
            taken[device] = [replay.take(8), replay.take(3)]
            replay.insert({"x": batch[0], "y": batch[1], "logits": batch[0][:, :2].clone()})
        for cpu_draw, cuda_draw in zip(taken["cpu"], taken["cuda"]):
            assert cpu_draw.keys() == cuda_draw.keys()
            for name in cpu_draw:
                assert cuda_draw[name].is_cuda and torch.equal(cpu_draw[name], cuda_draw[name].cpu())
    assert replays["cuda"].side_stream is not None


@CUDA
def test_checkpoint_loaded_on_the_cpu_puts_a_gpu_buffer_back_on_the_gpu(tmp_path):
    """A run's checkpoint is read with map_location="cpu"; a buffer that took its device from
    CUDA batches must come back on CUDA, or a resumed run would join CPU replays to GPU batches."""
    stream = list(labelled_stream(6, 17))
    buffer = make_buffer("reservoir", 30, seed=3)  # no device given: it follows its batches
    fill(buffer, "cuda", "reservoir", "uniform", range(6), stream)
    torch.save(buffer.state_dict(), tmp_path / "buffer.pt")
    restored = make_buffer("reservoir", 30, seed=3)
    restored.load_state_dict(torch.load(tmp_path / "buffer.pt", map_location="cpu", weights_only=False))
    assert restored.device.type == "cuda" and all(v.is_cuda for v in restored.storage.values())
    assert torch.equal(restored.sample(9)["id"].cpu(), buffer.sample(9)["id"].cpu())


@CUDA
@pytest.mark.parametrize("policy", ["reservoir", "class_balanced", "prs"])
def test_cuda_buffer_stores_cpu_batches_as_it_stores_cuda_batches(policy):
    """Batches already on the buffer's GPU are scattered whole (turned-away samples into the spare
    row); CPU batches send only their accepted samples. Both must leave the same contents."""
    stream = list(labelled_stream(12, 17))
    buffers = {batches: make_buffer(policy, 30, device="cuda", seed=3) for batches in ("cpu", "cuda")}
    for batches, buffer in buffers.items():
        for step in range(12):
            x, y, ids, _ = stream[step]
            buffer.add(x=x.to(batches), y=y.to(batches), id=ids.to(batches))
    assert all(len(values) == 30 for values in buffers["cuda"].storage.values())
    for name in ("x", "y", "id"):
        assert torch.equal(buffers["cpu"].get_all()[name], buffers["cuda"].get_all()[name]), name


@CUDA
@pytest.mark.parametrize("policy", ["reservoir", "class_balanced", "prs"])
def test_cuda_buffer_keeps_pixels_as_the_cpu_buffer_does(policy):
    """Encoded on the device (torch) and on the host (NumPy), the same uint8 pixels; decoded, the
    same float32 values."""
    from tests.buffers.test_pixel_storage import pixel_stream

    cpu = make_buffer(policy, 40, seed=2, pixel_fields=("x",))
    gpu = make_buffer(policy, 40, device="cuda", seed=2, pixel_fields=("x",))
    for fields in pixel_stream(10):
        fields.pop("features")
        cpu.add(**fields)
        gpu.add(**{name: values.cuda() for name, values in fields.items()})
    assert gpu.storage["x"].dtype == torch.uint8 and gpu.storage["x"].is_cuda
    stored = gpu.get_all()
    for name, values in cpu.get_all().items():
        assert torch.equal(stored[name].cpu(), values), name
