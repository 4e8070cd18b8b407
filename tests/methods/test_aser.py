"""ASER: the memory keeps, and the replay chooses, by KNN Shapley values in the network's
features. Here the features are the inputs themselves, so the geometry is the test's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sylvan.buffers import ASEROptions, GSSOptions
from sylvan.buffers.shapley import knn_shapley_values
from sylvan.errors import ConfigurationError, UnknownNameError
from sylvan.methods import ASER, Batch, Rehearsal
from sylvan.settings import OnlineSetting
from tests.methods.digits_samples import WithoutFeatures

DIGITS = dict(dataset="digits", nb_tasks=5, batch_size=10, progress_bar=False)


def configured(method):
    method.configure(OnlineSetting(**DIGITS))
    method.model.features = nn.Flatten()  # features = inputs: distances are the inputs'
    return method


def points(*values: float) -> torch.Tensor:
    """Digits-shaped inputs (1 x 8 x 8), every pixel of sample i at values[i]."""
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()


def fields(values: list[float], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"x": points(*values), "y": torch.tensor(labels)}


def test_a_new_class_replaces_a_redundant_stored_sample():
    """Three near-identical samples of class 0 and one of class 1 fill a memory of 4. A sample
    of class 2, which the memory lacks, judges with one stored sample of each class: it is its
    own nearest neighbour (value 1), where each redundant class-0 sample is worth 1/2 to the
    class-0 judge; so it takes the slot of one of the two that competed."""
    method = configured(Rehearsal(buffer_policy="aser", buffer_size=4,
                                  buffer_options=ASEROptions(aser_neighbours=1, aser_samples_per_class=1)))
    method.offer_to_buffer(fields([0.0, 0.01, 0.02, 5.0], [0, 0, 0, 1]))
    slots = method.admission.slots(points(9.0), torch.tensor([2]))
    assert slots.item() in (0, 1, 2)
    method.offer_to_buffer(fields([9.0], [2]))
    assert sorted(method.buffer.get_all()["y"].tolist()) == [0, 0, 1, 2]


def test_a_sample_worth_nothing_is_turned_away_and_slots_follow_the_free_ones():
    """A new sample of class 1 far from everything, when class 1 holds a quarter of the memory
    (above any threshold), judges nothing and helps no judge: it stays out. Samples of a batch
    that fit in the free slots take them, whatever the values."""
    method = configured(Rehearsal(buffer_policy="aser", buffer_size=4,
                                  buffer_options=ASEROptions(aser_neighbours=1, aser_samples_per_class=1)))
    assert method.admission.slots(points(0.0, 1.0), torch.tensor([0, 1])).tolist() == [-1, -1]  # room for both
    method.offer_to_buffer(fields([0.0, 0.01, 0.02, 5.0], [0, 0, 0, 1]))
    assert method.admission.slots(points(50.0), torch.tensor([1])).tolist() == [-1]


def test_replay_prefers_the_candidates_the_new_samples_would_be_mistaken_for():
    """New samples of class 1 at 0. Of the candidates, a class-0 sample at 0.1 is their nearest
    neighbour with another label (adversarial value -1/2), a class-1 sample at 1 helps classify
    them (+1/2), a class-0 sample at 2 neither: minus the adversarial values ranks them so."""
    method = configured(ASER(aser_neighbours=1, aser_samples_per_class=2, aser_kind="neg_sv", buffer_size=4))
    method.buffer.seen = 5  # it has turned samples away: the replay is ASER's, not random
    pool = fields([2.0, 0.1, 1.0], [0, 0, 1])
    batch = Batch(points(0.0, 0.0), torch.tensor([1, 1]))
    assert method.replayed_positions(pool, batch, 3).tolist() == [1, 0, 2]
    assert method.replayed_positions(pool, batch, 1).tolist() == [1]


def test_the_cooperative_value_counts_for_asvm():
    """asvm: mean cooperative minus mean adversarial value. The new sample, of a class no
    candidate has, values every candidate at 0; the class-1 candidate at 6 is the nearest
    neighbour of a stored class-1 judge at 6.1 (value 1, the class-0 one 0), so it wins."""
    method = configured(ASER(aser_neighbours=1, aser_samples_per_class=1, buffer_size=8))
    method.buffer.seen = 9
    pool = fields([3.0, 6.0, 6.1], [0, 1, 1])  # competing: the first of each class; judging: the rest
    batch = Batch(points(100.0), torch.tensor([2]))
    cooperative = knn_shapley_values(points(6.1).flatten(1), torch.tensor([1]), points(3.0, 6.0).flatten(1),
                                     torch.tensor([0, 1]), 1)
    assert cooperative.tolist() == [[0.0, 1.0]]
    assert method.replayed_positions(pool, batch, 1).tolist() == [1]


def test_until_the_buffer_turns_a_sample_away_the_replay_is_the_first_of_the_draw():
    method = configured(ASER(buffer_size=8, replay_size=2))
    method.buffer.seen = 8
    pool = fields([0.0, 1.0, 2.0], [0, 1, 2])
    assert method.replayed_positions(pool, Batch(points(0.5), torch.tensor([1])), 2).tolist() == [0, 1]


def test_the_loss_adds_the_replayed_samples_mean_to_the_minibatchs():
    torch.manual_seed(0)
    method = ASER(buffer_size=20, replay_size=3, candidates=10, buffer_policy="reservoir")
    method.configure(OnlineSetting(**DIGITS))
    method.remember(fields([0.1 * i for i in range(6)], [0, 1, 2, 3, 4, 5]))
    batch = Batch(torch.rand(4, 1, 8, 8), torch.tensor([6, 7, 6, 7]))
    loss = method.training_step(batch)
    stored = method.buffer.get_all()
    first = {name: values[:6] for name, values in stored.items()}
    # not yet overflowing: three of the draw, which here is the six stored samples in some order
    expected = [F.cross_entropy(method.learner(batch.x), batch.y) + F.cross_entropy(
        method.learner(first["x"][list(chosen)]), first["y"][list(chosen)])
        for chosen in [(a, b, c) for a in range(6) for b in range(6) for c in range(6) if len({a, b, c}) == 3]]
    assert any(torch.allclose(loss, candidate) for candidate in expected)
    assert len(method.buffer) == 10


@pytest.mark.parametrize(("options", "message"), [
    (dict(candidates=0), "--candidates"),
    (dict(aser_neighbours=0), "--aser_neighbours"),
    (dict(aser_samples_per_class=0), "--aser_samples_per_class"),
])
def test_nonsense_options_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        ASER(**options)


def test_an_unknown_kind_is_refused_with_the_valid_ones():
    with pytest.raises(UnknownNameError, match="unknown ASER kind 'mean'; valid ASER kinds: asv, asvm, neg_sv"):
        ASER(aser_kind="mean")


def test_the_aser_options_are_refused_where_nothing_uses_them():
    with pytest.raises(ConfigurationError, match="--aser_neighbours 3 has no effect: it is the aser policy's"):
        Rehearsal(buffer_options=ASEROptions(aser_neighbours=3))
    assert Rehearsal(buffer_options=ASEROptions()).buffer_options is None  # defaults: nothing was given
    assert Rehearsal(buffer_policy="aser", buffer_options=ASEROptions(aser_neighbours=3)).policy_options() == \
        ASEROptions(aser_neighbours=3)
    assert ASER(buffer_policy="reservoir", aser_neighbours=3).aser_neighbours == 3  # its replay uses them


def test_the_aser_method_sets_the_aser_policys_options_with_its_own():
    method = ASER(aser_neighbours=3, aser_samples_per_class=4)
    assert method.policy_options() == ASEROptions(aser_neighbours=3, aser_samples_per_class=4)
    with pytest.raises(ConfigurationError, match="aser sets the aser policy's options with its own"):
        ASER(buffer_options=ASEROptions(aser_neighbours=3))
    assert ASER(buffer_policy="gss", buffer_options=GSSOptions(gss_compared=4)).policy_options() == \
        GSSOptions(gss_compared=4)


def test_fewer_candidates_than_replayed_samples_are_refused():
    with pytest.raises(ConfigurationError, match="--candidates \\(5\\) must be at least the 10"):
        ASER(candidates=5).validate_for(OnlineSetting(**DIGITS))


@pytest.mark.parametrize(("method", "named"), [
    (lambda: ASER(backbone="no_features", buffer_policy="reservoir"), "aser with --buffer_policy reservoir"),
    (lambda: Rehearsal(backbone="no_features", buffer_policy="aser"), "rehearsal with --buffer_policy aser"),
    (lambda: Rehearsal(backbone="no_features", buffer_policy="herding"), "rehearsal with --buffer_policy herding"),
])
def test_a_backbone_without_features_is_refused_before_the_run_starts(monkeypatch, method, named):
    from sylvan import models

    monkeypatch.setitem(models.BACKBONES, "no_features", WithoutFeatures)
    with pytest.raises(ConfigurationError, match=f"{named} / .* `features` module .*which no_features lacks"):
        method().validate_for(OnlineSetting(**DIGITS))
    Rehearsal(backbone="no_features").validate_for(OnlineSetting(**DIGITS))  # reservoir needs no features


def test_a_checkpoint_continues_the_memory_s_draws():
    """The draws of the judges and competitors are part of the method's state: a restored
    method chooses the same replacements as the one that kept running."""
    generator = torch.Generator().manual_seed(3)
    method = configured(Rehearsal(buffer_policy="aser", buffer_size=30,
                                  buffer_options=ASEROptions(aser_samples_per_class=1)))
    method.offer_to_buffer({"x": torch.rand(30, 1, 8, 8, generator=generator), "y": torch.arange(30) % 10})
    batches = [(torch.rand(10, 1, 8, 8, generator=generator), torch.randint(0, 10, (10,), generator=generator))
               for _ in range(4)]
    for x, y in batches[:2]:
        method.offer_to_buffer({"x": x, "y": y})
    restored = configured(Rehearsal(buffer_policy="aser", buffer_size=30,
                                    buffer_options=ASEROptions(aser_samples_per_class=1)))
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.admission.draws.get_state(), method.admission.draws.get_state())
    for x, y in batches[2:]:
        assert torch.equal(restored.admission.slots(x, y), method.admission.slots(x, y))
    assert "aser_draws" not in configured(Rehearsal()).state_dict()  # other policies keep no such state
