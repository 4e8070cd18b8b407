"""The replay channel (sylvan/buffers/channel.py): what a method reaches its memory through."""

from __future__ import annotations

import numpy as np
import torch

from sylvan.buffers import make_buffer
from sylvan.buffers.channel import LocalReplay, ReplayChannel
from sylvan.buffers.global_replay import GlobalReplay


def filled(policy: str = "reservoir", count: int = 30) -> tuple[LocalReplay, dict[str, torch.Tensor]]:
    channel = LocalReplay(make_buffer(policy, 20, seed=3))
    fields = {"x": torch.arange(count * 4, dtype=torch.float32).view(count, 4), "y": torch.arange(count) % 5}
    channel.insert(fields)
    return channel, fields


def test_a_local_channel_draws_and_stores_as_its_buffer_does():
    channel, fields = filled()
    twin = make_buffer("reservoir", 20, seed=3)
    twin.add(**fields)
    assert len(channel) == 20 and channel.seen == 30 and channel.capacity == 20
    for name, values in channel.stored().items():
        assert torch.equal(values, twin.get_all()[name])
    drawn, expected = channel.take(7), twin.sample(7)
    assert all(torch.equal(drawn[name], expected[name]) for name in expected)
    uniform, expected = channel.uniform(5), twin.uniform_sample(5)
    assert all(torch.equal(uniform[name], expected[name]) for name in expected)
    assert channel.class_counts() == twin.class_counts()


def test_a_channel_gathers_chosen_fields_of_uniformly_drawn_slots():
    channel, _ = filled()
    slots = channel.uniform_slots(6)
    assert len(slots) == 6 and len(np.unique(slots)) == 6
    labels = channel.gather(slots, names=("y",))
    assert set(labels) == {"y"} and torch.equal(labels["y"], channel.stored()["y"][torch.as_tensor(slots)])


def test_an_empty_channel_draws_nothing_and_is_still_a_channel():
    channel = LocalReplay(make_buffer("reservoir", 10))
    assert len(channel) == 0 and channel.take(4) == {} and channel.uniform(4) == {}
    assert channel  # the channel is there, though its memory is empty


def test_the_global_replay_is_a_replay_channel_that_says_it_is_global():
    buffer = make_buffer("reservoir", 10)
    channel = GlobalReplay(buffer, 4)
    assert isinstance(channel, ReplayChannel) and channel.is_global and not LocalReplay(buffer).is_global
    buffer.add(x=torch.zeros(3, 2), y=torch.tensor([0, 1, 2]))
    assert len(channel) == 3 and channel.stored()["y"].tolist() == [0, 1, 2]  # this worker's memory
