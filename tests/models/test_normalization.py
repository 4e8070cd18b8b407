"""Input normalization inside the network: the arithmetic, where it goes in a backbone, which
datasets get it by default, and a run that trains through it."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from sylvan.errors import ConfigurationError
from sylvan.methods import Rehearsal
from sylvan.models import MLP, InputNormalization, ResNet18, with_input_normalization
from sylvan.settings import DATASETS, ClassIncrementalSetting
from tests.conftest import tiny_options

MEAN, STD = (0.5, 0.25, 0.125), (0.5, 0.25, 2.0)


def test_each_channel_is_centred_and_scaled():
    normalize = InputNormalization(MEAN, STD)
    x = torch.rand(4, 3, 5, 5)
    out = normalize(x)
    for c in range(3):
        assert torch.allclose(out[:, c], (x[:, c] - MEAN[c]) / STD[c])
    flat = torch.rand(4, 3)  # (batch, channels) works too
    assert torch.allclose(normalize(flat), (flat - torch.tensor(MEAN)) / torch.tensor(STD))
    assert set(normalize.state_dict()) == {"mean", "std"}  # saved with the network, moved with it
    with pytest.raises(ValueError, match="per channel"):
        InputNormalization((0.5,), (0.2, 0.3))
    with pytest.raises(ValueError, match="positive"):
        InputNormalization((0.5,), (0.0,))


@pytest.mark.parametrize("make", [lambda: MLP((3, 4, 4), 5), lambda: ResNet18((3, 8, 8), 5, width=4)])
def test_a_backbone_normalizes_first_on_every_path(make):
    """`model(x)` and `model.features(x)` (which methods call directly: herding, iCaRL's class
    means, stored features) both see normalized inputs."""
    torch.manual_seed(0)
    plain = make().eval()
    normalized = with_input_normalization(copy.deepcopy(plain), MEAN, STD).eval()
    assert isinstance(normalized.features[0], InputNormalization)
    x = torch.rand(6, 3, *((4, 4) if isinstance(plain, MLP) else (8, 8)))
    scaled = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(normalized(x), plain(scaled), atol=1e-6)
    assert torch.allclose(normalized.features(x), plain.features(scaled), atol=1e-6)


def test_a_network_without_features_is_wrapped_whole():
    net = nn.Linear(3, 2)
    wrapped = with_input_normalization(net, MEAN, STD)
    x = torch.rand(4, 3)
    assert torch.allclose(wrapped(x), net((x - torch.tensor(MEAN)) / torch.tensor(STD)))


def test_the_default_follows_each_datasets_benchmarks():
    def stats(**options):
        return ClassIncrementalSetting(progress_bar=False, **options).input_normalization()

    assert stats(dataset="cifar10") == DATASETS["cifar10"].channel_stats
    assert stats(dataset="cifar100") == DATASETS["cifar100"].channel_stats
    assert stats(dataset="mnist") is None and stats(dataset="digits") is None
    assert stats(dataset="mnist", normalize_inputs=True) == ((0.1307,), (0.3081,))
    assert stats(dataset="cifar10", normalize_inputs=False) is None
    with pytest.raises(ConfigurationError, match="no per-channel statistics are known for digits"):
        ClassIncrementalSetting(dataset="digits", normalize_inputs=True)


def test_a_run_trains_through_the_normalization_and_buffers_keep_pixels(monkeypatch):
    """A dataset normalized by default (synthetic data under CIFAR's convention): the network
    starts with the normalization, it learns as well as without, and the buffer holds the inputs
    as they came, in [0, 1]."""
    spec = dataclasses.replace(DATASETS["synthetic"], name="synthetic_normalized",
                               channel_stats=((0.5,), (0.25,)), normalized=True)
    monkeypatch.setitem(DATASETS, spec.name, spec)
    options = {**tiny_options(ClassIncrementalSetting), "dataset": spec.name, "train_samples": 400}
    accuracy = {}
    for normalize in (None, False):
        method = Rehearsal(buffer_size=30)
        results = ClassIncrementalSetting(**options, normalize_inputs=normalize).apply(method)
        assert results.complete
        accuracy[normalize] = results.final_average_accuracy
        normalizations = [m for m in method.model.modules() if isinstance(m, InputNormalization)]
        if normalize is None:
            assert normalizations == [method.model.features[0]]
            assert normalizations[0].mean.tolist() == [0.5] and normalizations[0].std.tolist() == [0.25]
            stored = method.buffer.get_all()["x"]
            assert 0.0 <= float(stored.min()) and float(stored.max()) <= 1.0 and float(stored.max()) > 0.5
        else:
            assert normalizations == []
    assert accuracy[None] > 0.4 and accuracy[False] > 0.4, accuracy
