"""`cope`: the pseudo-prototypical proxy loss against its definition, the prototypes' momentum
update, the method's step and update, nearest-prototype predictions, checkpoints and refusals."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import Batch, CoPE
from sylvan.methods.cope import PROTOTYPES_SEED
from sylvan.methods.parts.prototypes import evolved_prototypes, ppp_loss
from sylvan.settings import ClassIncrementalSetting, OnlineSetting
from tests.methods.digits_samples import DIGITS, WithoutFeatures, configured, samples


def ppp_by_definition(f: torch.Tensor, y: torch.Tensor, p: torch.Tensor, known: list[int], t: float) -> torch.Tensor:
    """The PPP loss written out term by term, as the paper states it (sample by sample, with
    exponentials): the attractor's positives are fixed targets (detached), the repellor's not."""
    total = f.new_zeros(())
    for i in range(len(y)):
        c = int(y[i])

        def prob(u: torch.Tensor, x: torch.Tensor, excluded: int) -> torch.Tensor:
            rest = sum((torch.exp(p[k] @ x / t) for k in known if k != excluded), x.new_zeros(()))
            return torch.exp(u @ x / t) / (torch.exp(u @ x / t) + rest)

        positives = [f[j].detach() for j in range(len(y)) if j != i and int(y[j]) == c] + [p[c]]
        total = total + torch.log(sum(prob(u, f[i], c) for u in positives) / len(positives))
        for j in range(len(y)):
            if int(y[j]) != c:
                expected = (prob(f[i], f[j], c) + prob(p[c], f[j], c)) / 2
                total = total + torch.log(1 - expected)
    return -total / len(y)


def unit_rows(rows: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize(("labels", "known"), [
    ([0, 0, 1, 2, 1, 0], [0, 1, 2]),
    ([3, 3, 3, 1], [0, 1, 3, 4]),  # known classes absent from the batch count among the other prototypes
    ([2, 0, 4, 4, 2], [0, 2, 4]),
])
def test_the_ppp_loss_and_its_gradient_are_those_of_its_definition(labels, known):
    y = torch.tensor(labels)
    prototypes = unit_rows(5, 6, seed=1)
    mask = torch.zeros(5, dtype=torch.bool)
    mask[known] = True
    f = unit_rows(len(labels), 6, seed=2).requires_grad_(True)
    loss = ppp_loss(f, y, prototypes, mask, 0.5)
    (gradient,) = torch.autograd.grad(loss, f)
    g = f.detach().clone().requires_grad_(True)
    expected = ppp_by_definition(g, y, prototypes, known, 0.5)
    (expected_gradient,) = torch.autograd.grad(expected, g)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(gradient, expected_gradient)


def test_a_batch_of_the_only_known_class_has_nothing_to_learn():
    f = unit_rows(4, 3, seed=3).requires_grad_(True)
    known = torch.tensor([False, True, False])
    loss = ppp_loss(f, torch.ones(4, dtype=torch.long), unit_rows(3, 3, seed=4), known, 0.1)
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(f.grad.abs().sum()) == 0.0


def test_a_cold_temperature_stays_finite_where_the_exponentials_overflow():
    f = unit_rows(6, 4, seed=5).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    prototypes = unit_rows(3, 4, seed=6)
    assert not torch.isfinite(torch.exp(f.detach() @ prototypes.T / 0.001)).all()
    loss = ppp_loss(f, y, prototypes, torch.ones(3, dtype=torch.bool), 0.001)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(f.grad).all()


def test_prototypes_move_towards_their_class_mean_by_momentum():
    prototypes = torch.eye(3)
    sums = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    counts = torch.tensor([2.0, 0.0, 3.0])
    moved = evolved_prototypes(prototypes, sums, counts, momentum=0.75)
    torch.testing.assert_close(moved[0], F.normalize(torch.tensor([0.75, 0.25, 0.0]), dim=0))
    torch.testing.assert_close(moved[1], prototypes[1], msg="a class without embeddings keeps its prototype")
    torch.testing.assert_close(moved[2], prototypes[2], msg="already at its mean")


def cope(**options) -> CoPE:
    return configured(CoPE(**options))


def test_the_network_ends_in_an_embedding_and_the_prototypes_start_from_the_runs_seed():
    method = cope(embedding_dim=7)
    assert method.model.classifier.out_features == 7
    assert method.model(samples([0, 1], seed=7)[0]).shape == (2, 7)
    starts = torch.rand(10, 7, generator=torch.Generator().manual_seed(DIGITS.get("seed", 0) + PROTOTYPES_SEED))
    torch.testing.assert_close(method.prototypes, F.normalize(starts, dim=1))
    assert not method.known.any()


def test_the_step_is_the_ppp_loss_of_the_minibatch_and_replay_with_their_classes_known():
    method = cope(buffer_size=20, replay_size=3, temperature=0.2)
    x_old, y_old = samples([0, 1, 0, 1], seed=8)
    method.buffer.add(x=x_old, y=y_old)
    method.known[[0, 1, 5]] = True
    replays, sample = [], method.buffer.sample
    method.buffer.sample = lambda n: replays.append(sample(n)) or replays[-1]
    batch = Batch(*samples([2, 3, 2], seed=9))
    loss = method.training_step(batch)

    x = torch.cat([batch.x, replays[0]["x"]])
    y = torch.cat([batch.y, replays[0]["y"]])
    embeddings = F.normalize(method.model(x), dim=1)
    known = torch.zeros(10, dtype=torch.bool)
    known[[0, 1, 2, 3, 5]] = True
    torch.testing.assert_close(loss, ppp_loss(embeddings, y, method.prototypes, known, 0.2))
    assert len(method.buffer) == 7, "the minibatch is stored"
    assert method.prototypes.grad is None and not method.prototypes.requires_grad


def test_after_the_step_the_prototypes_of_its_classes_follow_their_embeddings():
    method = cope(buffer_size=0, prototype_momentum=0.9)
    before = method.prototypes.clone()
    batch = Batch(*samples([4, 6, 4], seed=10))
    method.training_step(batch)
    embeddings = F.normalize(method.model(batch.x), dim=1).detach()
    method.after_step()
    expected_4 = F.normalize(0.9 * before[4] + 0.1 * embeddings[[0, 2]].mean(0), dim=0)
    torch.testing.assert_close(method.prototypes[4], expected_4)
    torch.testing.assert_close(method.prototypes[6], F.normalize(0.9 * before[6] + 0.1 * embeddings[1], dim=0))
    others = [c for c in range(10) if c not in (4, 6)]
    torch.testing.assert_close(method.prototypes[others], before[others])
    assert method.known.tolist() == [c in (4, 6) for c in range(10)]
    method.after_step()  # a second call without a step (an overflowed one is skipped) moves nothing
    torch.testing.assert_close(method.prototypes[4], expected_4)


def test_predictions_are_the_nearest_known_prototype():
    method = cope(embedding_dim=4)
    method.prototypes = torch.eye(10, 4)[[0, 1, 2, 3, 0, 0, 0, 0, 0, 0]].clone()
    method.known[[1, 3]] = True
    x = samples([0, 1, 2], seed=11)[0]
    with torch.no_grad():
        embeddings = F.normalize(method.model.eval()(x), dim=1)
    scores = method.predict(x)
    torch.testing.assert_close(scores[:, [1, 3]], embeddings[:, [1, 3]])
    assert torch.isinf(scores[:, [0, 2, 4, 5, 6, 7, 8, 9]]).all(), "classes not seen yet are never predicted"


def test_before_any_class_is_known_every_class_scores_alike():
    method = cope()
    assert float(method.predict(samples([0, 1], seed=12)[0]).abs().sum()) == 0.0


def test_cope_learns_the_stream_and_predicts_it_online():
    # digits brings each class in about 29 steps of 10, over which a new prototype moves a quarter of the way
    # (alpha 0.99) from its random start: the online accuracy lags the final one
    results = OnlineSetting(dataset="digits", nb_tasks=5, batch_size=10, progress_bar=False).apply(
        CoPE(buffer_size=200))
    assert results.online_accuracy is not None and results.online_accuracy > 0.4
    assert results.final_average_accuracy > 0.75  # fine-tuning keeps about 0.2


def test_the_prototypes_are_checkpointed():
    method = cope(buffer_size=10)
    method.training_step(Batch(*samples([0, 1, 2], seed=13)))
    method.after_step()
    restored = cope(buffer_size=10)
    restored.load_state_dict(method.state_dict())
    torch.testing.assert_close(restored.prototypes, method.prototypes)
    assert torch.equal(restored.known, method.known) and restored.known.sum() == 3
    x = samples([3, 4], seed=14)[0]
    torch.testing.assert_close(restored.predict(x), method.predict(x))


def test_a_backbone_without_features_is_refused_before_the_run_starts(monkeypatch):
    from sylvan import models

    monkeypatch.setitem(models.BACKBONES, "no_features", WithoutFeatures)
    with pytest.raises(ConfigurationError, match="cope puts an embedding layer .* which no_features lacks"):
        CoPE(backbone="no_features").validate_for(ClassIncrementalSetting(**DIGITS))


@pytest.mark.parametrize(("options", "flag"), [
    (dict(temperature=0), "--temperature"),
    (dict(embedding_dim=0), "--embedding_dim"),
    (dict(prototype_momentum=1.0), "--prototype_momentum"),
    (dict(prototype_momentum=-0.1), "--prototype_momentum"),
])
def test_nonsense_options_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        CoPE(**options)


def test_the_default_memory_is_class_balanced():
    assert cope().buffer.policy == "class_balanced"
    assert math.isclose(CoPE().prototype_momentum, 0.99)


def test_on_an_online_stream_each_step_uses_the_prototypes_of_every_step_before_it():
    """The authors' algorithm (their `observe`, one iteration per batch): the loss of batch t
    uses the prototypes as the embeddings of batches 0 to t-1 moved them, each batch's embeddings
    computed in its own forward pass, before the optimizer step. Replayed here from the
    embeddings sylvan's steps computed: no step uses prototypes a step behind (or ahead)."""

    class Recording(CoPE):
        def training_step(self, batch):
            self.before.append(self.prototypes.clone())
            return super().training_step(batch)

        def after_step(self):
            self.steps.append(tuple(t.clone() for t in self._step_embeddings))
            super().after_step()

    method = Recording()
    method.before, method.steps = [], []
    OnlineSetting(dataset="synthetic", train_samples=60, nb_tasks=3, batch_size=5, progress_bar=False,
                  seed=0).apply(method)
    assert len(method.before) == len(method.steps) == 12
    expected = method.before[0]
    for t, (embeddings, labels) in enumerate(method.steps):
        torch.testing.assert_close(method.before[t], expected)  # what batch t's loss used
        for c in labels.unique():
            mean = embeddings[labels == c].mean(0)
            expected = expected.clone()
            expected[c] = F.normalize(0.99 * expected[c] + 0.01 * mean, dim=0)
    torch.testing.assert_close(method.prototypes, expected)
