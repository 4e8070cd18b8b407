"""Images kept as uint8 pixels: a buffer given float32 inputs k / 255 (how settings hand uint8
images to methods) stores the pixels k, a quarter of the memory, and gives back the very same
float32 values, bit for bit, through every path a stored sample leaves by: `sample`, `get_all`,
a checkpoint, and the exchange of the global replay."""

from __future__ import annotations

import pytest
import torch

from sylvan.buffers import BUFFER_POLICIES, make_buffer, needs_features
from sylvan.buffers.global_replay import GlobalReplay
from sylvan.minibatches import float_inputs
from tests.buffers.labelled_streams import supplied_inputs


def pixel_stream(steps: int, batch: int = 16, seed: int = 0):
    """Batches of 3x4x4 images as settings give them (every pixel value 0..255 occurs), an id
    per sample, labels of classes that keep arriving, and features for the policies that need them."""
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        pixels = torch.randint(0, 256, (batch, 3, 4, 4), dtype=torch.uint8, generator=generator)
        pixels[0].view(-1)[:48] = torch.arange(step * 48, step * 48 + 48) % 256
        ids = torch.arange(batch * step, batch * (step + 1))
        y = torch.randint(0, 2 + step // 2, (batch,), generator=generator)
        features = torch.randint(0, 64, (batch, 4), generator=generator).float() / 8
        yield dict(x=float_inputs(pixels), y=y, id=ids, features=features)


def filled(policy: str, pixel_fields: tuple[str, ...], steps: int = 12, retrieval: str = "uniform"):
    buffer = make_buffer(policy, 40, seed=2, retrieval=retrieval, pixel_fields=pixel_fields)
    originals = {}
    for fields in pixel_stream(steps):
        if not needs_features(policy, retrieval):
            fields.pop("features")
        fields.update(supplied_inputs(buffer, fields["id"]))
        originals.update(zip(fields["id"].tolist(), fields["x"]))
        buffer.add(**fields)
    return buffer, originals


@pytest.mark.parametrize("policy", sorted(BUFFER_POLICIES))
def test_pixels_are_stored_as_uint8_and_come_back_as_the_same_floats(policy):
    pixels, originals = filled(policy, ("x",))
    floats, _ = filled(policy, ())
    assert pixels.storage["x"].dtype == torch.uint8 and floats.storage["x"].dtype == torch.float32
    assert pixels.storage["x"].nbytes * 4 == floats.storage["x"].nbytes
    stored = pixels.get_all()
    assert stored["x"].dtype == torch.float32
    for sample_id, x in zip(stored["id"].tolist(), stored["x"]):
        assert torch.equal(x, originals[sample_id])  # bit for bit, not approximately
    for name, values in floats.get_all().items():  # the same decisions as a float buffer
        assert torch.equal(values, stored[name]), name
    drawn, drawn_floats = pixels.sample(25), floats.sample(25)
    assert all(torch.equal(drawn[name], drawn_floats[name]) for name in drawn)


def test_gather_decodes_only_the_slots_asked_for_and_get_all_hands_pixels_to_another_buffer():
    """`gather` (GEM reads each task's memory with it at every step) gives the rows of the given
    slots, from host or tensor slot numbers, as `get_all` gives them; `get_all(pixels=True)`
    gives the stored pixels themselves, which another pixel buffer takes as they are."""
    buffer, _ = filled("reservoir", ("x",))
    stored = buffer.get_all()
    slots = torch.tensor([7, 0, 39, 7])
    for chosen in (slots, slots.numpy()):
        rows = buffer.gather(chosen)
        assert rows.keys() == stored.keys() and rows["x"].dtype == torch.float32
        assert all(torch.equal(rows[name], stored[name][slots]) for name in stored)
    raw = buffer.get_all(pixels=True)
    assert raw["x"].dtype == torch.uint8 and raw["x"].data_ptr() == buffer.storage["x"].data_ptr()
    copy = make_buffer("reservoir", 40, pixel_fields=("x",))
    copy.add(**raw)
    assert all(torch.equal(copy.get_all()[name], stored[name]) for name in stored)


@pytest.mark.parametrize("numpy_below", [0, 10**9])
def test_host_gathers_decode_pixels_by_numpy_or_torch_to_the_same_bits(monkeypatch, numpy_below):
    """A gather from CPU storage takes the rows with NumPy and decodes pixels with NumPy (few
    rows) or torch (many, from `NUMPY_DECODE_ELEMENTS`): either way the rows are the slots' and
    the values those the buffer was given, as torch's index_select gives them."""
    import numpy as np

    from sylvan.buffers import base

    monkeypatch.setattr(base, "NUMPY_DECODE_ELEMENTS", numpy_below)
    buffer, originals = filled("reservoir", ("x",))
    slots = np.array([39, 3, 17, 0, 3, 22])
    rows, indexed = buffer.gather(slots), buffer.gather(torch.from_numpy(slots))  # NumPy, then torch's path
    assert rows.keys() == indexed.keys() and rows["x"].dtype == torch.float32
    assert all(torch.equal(rows[name], indexed[name]) for name in rows)
    assert all(torch.equal(x, originals[i]) for i, x in zip(rows["id"].tolist(), rows["x"]))


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced", "herding"])
def test_a_checkpoint_keeps_the_pixels_and_a_float_one_is_converted(policy):
    """A buffer restored from its state (uint8) or from the state of a buffer that kept floats
    (a checkpoint written before pixels were kept as uint8) stores and draws as the original."""
    pixels, _ = filled(policy, ("x",), steps=6)
    floats, _ = filled(policy, (), steps=6)
    state = pixels.state_dict()
    assert state["storage"]["x"].dtype == torch.uint8
    for saved in (state, floats.state_dict()):
        restored = make_buffer(policy, 40, seed=2, pixel_fields=("x",))
        restored.load_state_dict(saved)
        assert restored.storage["x"].dtype == torch.uint8 and len(restored) == len(pixels)
        assert torch.equal(restored.storage["x"][: len(pixels)], pixels.storage["x"][: len(pixels)])
        assert torch.equal(restored.sample(10)["x"], make_copy(pixels).sample(10)["x"])


def make_copy(buffer):
    copy = make_buffer(buffer.policy, buffer.capacity, seed=2, pixel_fields=tuple(buffer.pixel_fields))
    copy.load_state_dict(buffer.state_dict())
    return copy


def test_the_torch_write_path_encodes_as_the_numpy_path():
    """A batch that is not on the buffer's host storage path (here, bfloat16 labels send every
    field through torch's scatter, the path CUDA buffers take) is encoded in torch, the same pixels."""
    numpy_path = make_buffer("reservoir", 40, seed=2, pixel_fields=("x",))
    torch_path = make_buffer("reservoir", 40, seed=2, pixel_fields=("x",))
    for fields in pixel_stream(8):
        numpy_path.add(x=fields["x"], y=fields["y"])
        torch_path.add(x=fields["x"], y=fields["y"].to(torch.bfloat16))
    assert numpy_path._host_views is not None and torch_path._host_views is None
    assert torch.equal(numpy_path.storage["x"], torch_path.storage["x"])


def test_the_global_replay_exchanges_pixels_and_hands_out_floats():
    """The candidates travel as stored (uint8 rows: a quarter of the bytes) and a method takes
    the float values it inserted."""
    replay = GlobalReplay(make_buffer("reservoir", 50, seed=1, pixel_fields=("x",)), 6, seed=3, join_batch=False)
    inserted = {}
    for step, fields in enumerate(pixel_stream(10, batch=4)):
        replay.training_batch((fields["x"], fields["y"]))
        draw = replay.take(6)
        if step:
            assert replay.blocks.send_fields["x"].dtype == torch.uint8
            assert draw["x"].dtype == torch.float32
            for values in draw["x"]:
                assert any(torch.equal(values, x) for x in inserted.values())
        replay.insert({"x": fields["x"], "y": fields["y"]})
        inserted.update(zip(range(4 * step, 4 * step + 4), fields["x"]))


@pytest.mark.parametrize("method_name", ["rehearsal", "derpp", "gem", "icarl", "gdumb"])
def test_a_method_learns_the_same_from_pixels_as_from_floats(monkeypatch, method_name):
    """On a setting of uint8 images the methods' buffers keep pixels, and the run's accuracies
    are those of buffers that keep floats, to the last bit, rotated domains included."""
    from sylvan.methods import METHODS, Method
    from sylvan.settings import ClassIncrementalSetting, DomainIncrementalSetting
    from tests.conftest import tiny_method, tiny_options

    def run(setting_cls, **options):
        setting = setting_cls(**{**tiny_options(setting_cls), "nb_tasks": 2, **options})
        method = tiny_method(METHODS[method_name])
        results = setting.apply(method)
        buffer = getattr(method, "buffer", None) or method.memory
        return results.accuracy_matrix, buffer.storage["x"].dtype, method.run.pixel_inputs

    # rotated domains sample the nearest pixel: rotated digits are pixels too
    rotated = {"domain_shift": "rotation"}
    for setting_cls, options in ((ClassIncrementalSetting, {}), (DomainIncrementalSetting, rotated)):
        kept_as_pixels, dtype, pixel_inputs = run(setting_cls, **options)
        assert dtype == torch.uint8 and pixel_inputs
        with monkeypatch.context() as patched:
            patched.setattr(Method, "pixel_fields", property(lambda self: ()))
            kept_as_floats, dtype, _ = run(setting_cls, **options)
        assert dtype == torch.float32 and kept_as_pixels == kept_as_floats


@pytest.mark.parametrize("method_name", ["rehearsal", "der", "er_ace", "gem"])
def test_methods_see_float_batches_and_their_buffers_keep_pixels(monkeypatch, method_name):
    """Pixels are decoded by the data loading and encoded by the buffers: a method's steps see
    float inputs only, and what it hands its buffer (float values k / 255) is kept as uint8 k."""
    from sylvan.buffers.base import RehearsalBuffer
    from sylvan.methods import METHODS
    from sylvan.methods.core.supervised import SupervisedMethod
    from sylvan.settings import ClassIncrementalSetting
    from tests.conftest import tiny_method, tiny_options

    offered, seen, buffers = [], [], []
    add, step = RehearsalBuffer.add, METHODS[method_name].training_step

    def recording_add(self, **fields):
        offered.append(fields["x"].dtype)
        buffers.append(self)
        return add(self, **fields)

    def recording_step(self, batch):
        seen.extend(inputs.dtype for inputs in (batch.x, batch.stored_x) if inputs is not None)
        return step(self, batch)

    monkeypatch.setattr(RehearsalBuffer, "add", recording_add)
    monkeypatch.setattr(METHODS[method_name], "training_step", recording_step)
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "nb_tasks": 2})
    method = tiny_method(METHODS[method_name])
    assert isinstance(method, SupervisedMethod)
    setting.apply(method)
    assert seen and set(seen) == {torch.float32}
    assert offered and offered[0] == torch.float32  # (gem moves a task's samples between its buffers as pixels)
    assert {buffer.storage["x"].dtype for buffer in buffers} == {torch.uint8}
