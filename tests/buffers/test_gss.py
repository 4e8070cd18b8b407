"""GSS-Greedy (`sylvan.buffers.gss`): what it keeps, its replacement law, and the gradient scores
the replay methods compute for it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import nn

from sylvan.buffers import GSSBuffer, make_buffer
from sylvan.methods.parts.gradient_scores import NO_REFERENCE_SCORE, gradient_scores, gradient_scores_with_batch
from tests.buffers.labelled_streams import check_storage, feed, label_batches, stream_scores


@settings(max_examples=80, deadline=None)
@given(capacity=st.integers(1, 30), batches=label_batches(5), seed=st.integers(0, 5))
def test_capacity_count_and_the_scores_of_the_stored_samples(capacity, batches, seed):
    """Capacity, exact seen count, no sample twice; while the buffer fills every sample enters;
    each slot's score is the one its sample came with; once full, a sample scored 1 or more
    (aligned with a compared gradient) never enters."""
    buffer = GSSBuffer(capacity, seed=seed)
    total = feed(buffer, batches)
    check_storage(buffer, total)
    assert len(buffer) == min(capacity, total)
    ids = buffer.get_all()["id"] if total else torch.empty(0, dtype=torch.long)
    assert np.allclose(buffer.scores[: len(buffer)], stream_scores(ids).numpy())
    late = ids[ids >= capacity]  # entered after the buffer was full: by replacement
    assert (stream_scores(late) < 1).all()
    if total <= capacity:
        assert sorted(ids.tolist()) == list(range(total))


def replacement_frequencies(held: list[float], offered: float, trials: int) -> np.ndarray:
    """How often a full buffer holding samples scored `held` let one sample scored `offered`
    replace each slot (last entry: not taken), over `trials` seeds."""
    counts = np.zeros(len(held) + 1)
    for seed in range(trials):
        buffer = GSSBuffer(len(held), seed=seed)
        buffer.add(x=torch.arange(len(held)).float().unsqueeze(1), score=torch.tensor(held))
        buffer.add(x=torch.tensor([[-1.0]]), score=torch.tensor([offered]))
        where = np.flatnonzero(buffer.get_all()["x"][:, 0].numpy() == -1)
        counts[where[0] if len(where) else len(held)] += 1
    return counts


def test_a_slot_is_replaced_with_probability_proportional_to_its_score_squared_over_the_sum():
    """Slot i is drawn with probability C_i / sum C and replaced with probability C_i / (C_i + c):
    high-scored (redundant) samples go first. A uniform choice of the victim, or replacement
    without the acceptance test, fails the chi-square test."""
    held, offered, trials = [0.2, 0.6, 1.2], 0.4, 3000
    total = sum(held)
    expected = np.array([c / total * c / (c + offered) for c in held])
    expected = np.append(expected, 1 - expected.sum()) * trials
    counts = replacement_frequencies(held, offered, trials)
    _, p_value = stats.chisquare(counts, expected)
    assert p_value > 1e-3, (counts, expected)


def test_a_sample_aligned_with_the_memory_is_turned_away_once_full():
    counts = replacement_frequencies([0.5, 1.5], 1.0, 50)
    assert counts[-1] == 50


def test_the_first_samples_fill_in_order_and_keep_their_scores():
    buffer = GSSBuffer(4, seed=0)
    buffer.add(x=torch.arange(3.0).unsqueeze(1), score=torch.tensor([1.9, 0.1, 1.0]))
    assert buffer.get_all()["x"][:, 0].tolist() == [0.0, 1.0, 2.0]
    assert buffer.scores[:3].tolist() == pytest.approx([1.9, 0.1, 1.0])


@settings(max_examples=80, deadline=None)
@given(capacity=st.integers(1, 30), sizes=st.lists(st.integers(1, 12), min_size=1, max_size=8),
       gates=st.lists(st.floats(0, 2), min_size=8, max_size=8), seed=st.integers(0, 5))
def test_batch_gated_admission(capacity, sizes, gates, seed):
    """Offered with `batch_score`: while the buffer fills, samples enter with the batch's score;
    once full, a batch scored 1 or more leaves the buffer as it was, and in a batch scored below 1
    any sample may enter, its own score aligned or not, and keeps its own score."""
    buffer, start = GSSBuffer(capacity, seed=seed), 0
    own = {}  # sample id -> the score it entered with
    for size, gate in zip(sizes, gates):
        ids = torch.arange(start, start + size)
        scores = stream_scores(ids)
        before = (buffer.get_all()["x"].clone(), buffer.scores.copy()) if len(buffer) else None
        full_before = len(buffer) == capacity
        filling = min(size, capacity - len(buffer))
        buffer.add(x=ids.float().unsqueeze(1), score=scores, batch_score=torch.tensor(gate))
        for k in range(size):
            own[start + k] = gate if k < filling else float(scores[k])
        if full_before and gate >= 1:
            assert torch.equal(buffer.get_all()["x"], before[0]) and np.array_equal(buffer.scores, before[1])
        start += size
    assert buffer.seen == start and len(buffer) == min(capacity, start)
    held = buffer.get_all()["x"][:, 0].long().tolist()
    assert len(set(held)) == len(held)
    assert buffer.scores[: len(held)] == pytest.approx([own[i] for i in held])


def test_a_gated_batch_scored_below_1_lets_aligned_samples_in():
    """GSS-Greedy turns a sample scored 1.5 away from a full buffer; the batch gate, open, does not."""
    entered = {False: 0, True: 0}
    for seed in range(200):
        for gated in (False, True):
            buffer = GSSBuffer(4, seed=seed)
            buffer.add(x=torch.zeros(4, 1), score=torch.full((4,), 1.5))
            extra = {"batch_score": torch.tensor(0.5)} if gated else {}
            buffer.add(x=torch.ones(2, 1), score=torch.full((2,), 1.5), **extra)
            entered[gated] += int(buffer.get_all()["x"].sum())
    assert entered[False] == 0
    assert 100 < entered[True] < 300  # each of 2 samples replaces with probability 1/2 (some both one slot)


@pytest.mark.parametrize("batch_score", [torch.ones(2), torch.tensor(float("inf")), torch.tensor(-0.1)])
def test_an_invalid_batch_score_is_refused(batch_score):
    buffer = GSSBuffer(5)
    with pytest.raises(ValueError, match="batch score|one value"):
        buffer.add(x=torch.zeros(3, 2), score=torch.ones(3), batch_score=batch_score)
    assert buffer.seen == 0


@pytest.mark.parametrize(
    ("score", "message"),
    [(None, "score="), (torch.ones(2), "one value per sample"), (torch.tensor([1.0, -0.5, 1.0]), "non-negative"),
     (torch.tensor([1.0, float("nan"), 1.0]), "finite")],
)
def test_missing_or_invalid_scores_are_refused(score, message):
    buffer = make_buffer("gss", 5)
    fields = dict(x=torch.zeros(3, 2), y=torch.zeros(3, dtype=torch.long))
    if score is not None:
        fields["score"] = score
    with pytest.raises(ValueError, match=message):
        buffer.add(**fields)
    assert buffer.seen == 0 and len(buffer) == 0


def test_state_restores_scores_and_future_decisions():
    a, b = GSSBuffer(6, seed=1), GSSBuffer(6, seed=5)
    generator = torch.Generator().manual_seed(0)

    def batch(start: int) -> dict[str, torch.Tensor]:
        ids = torch.arange(start, start + 4)
        return dict(x=ids.float().unsqueeze(1), score=torch.rand(4, generator=generator, dtype=torch.float64) * 2)

    for start in range(0, 24, 4):
        a.add(**batch(start))
    b.load_state_dict(a.state_dict())
    for start in range(24, 80, 4):
        fields = batch(start)
        a.add(**fields)
        b.add(**fields)
    assert np.array_equal(a.scores, b.scores)
    assert torch.equal(a.get_all()["x"], b.get_all()["x"])
    assert a.get_all()["x"].max() >= 24  # later samples did replace some


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 4))


def loop_scores(model: nn.Module, x, y, reference_x, reference_y) -> torch.Tensor:
    """GSS's scores as the published code computes them: one backward pass per sample."""
    model.eval()

    def gradient(sample, label):
        model.zero_grad()
        F.cross_entropy(model(sample.unsqueeze(0)), label.unsqueeze(0)).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    reference = torch.stack([gradient(a, b) for a, b in zip(reference_x, reference_y)])
    return torch.stack([F.cosine_similarity(gradient(a, b).unsqueeze(0), reference).max() + 1 for a, b in zip(x, y)])


class ConvNet(nn.Module):
    """Not a stack of linear layers: its gradients are taken per sample with torch.func."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.norm, self.head = nn.Conv2d(1, 3, 2), nn.BatchNorm2d(3), nn.Linear(3 * 2 * 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.conv(x.unsqueeze(1))).relu().flatten(1))


SCORING_PATHS = ["linear stack: one backward pass", "per-sample gradients, chunked", "convolutions and batch norm"]


def scoring_model(monkeypatch, model_name: str) -> nn.Module:
    """A model in training mode whose scores take the path `model_name` of SCORING_PATHS."""
    model = (ConvNet() if model_name.startswith("conv") else mlp()).train()
    if model_name.startswith("per-sample"):
        monkeypatch.setattr("sylvan.methods.parts.gradient_scores.is_linear_stack", lambda model: False)
        monkeypatch.setattr("sylvan.methods.parts.gradient_scores.GRADIENT_ELEMENTS_AT_ONCE", 300)  # several chunks
    return model


@pytest.mark.parametrize("model_name", SCORING_PATHS)
def test_gradient_scores_match_a_per_sample_backward_loop(monkeypatch, model_name):
    model = scoring_model(monkeypatch, model_name)
    x, y = torch.randn(9, 3, 4), torch.randint(0, 4, (9,))
    reference_x, reference_y = torch.randn(5, 3, 4), torch.randint(0, 4, (5,))
    scores = gradient_scores(model, x, y, reference_x, reference_y)
    assert model.training and all(m.training for m in model.modules())  # its mode is given back
    assert scores.shape == (9,) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, loop_scores(model, x, y, reference_x, reference_y), atol=1e-5, rtol=0)
    assert ((scores >= 0) & (scores <= 2)).all()


def loop_batch_score(model: nn.Module, x, y, reference_x, reference_y) -> float:
    """A batch's score as the paper's code computes it: the gradient of the batch's mean loss,
    compared with each reference sample's, one backward pass each."""
    model.eval()

    def gradient(inputs, labels):
        model.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    reference = torch.stack([gradient(a.unsqueeze(0), b.unsqueeze(0)) for a, b in zip(reference_x, reference_y)])
    return float(F.cosine_similarity(gradient(x, y).unsqueeze(0), reference).max() + 1)


@pytest.mark.parametrize("model_name", SCORING_PATHS)
def test_batch_scores_match_the_gradient_of_the_batch_loss(monkeypatch, model_name):
    model = scoring_model(monkeypatch, model_name)
    torch.manual_seed(3)
    x, y = torch.randn(9, 3, 4), torch.randint(0, 4, (9,))
    reference_x, reference_y = torch.randn(5, 3, 4), torch.randint(0, 4, (5,))
    scores, batch_score = gradient_scores_with_batch(model, x, y, reference_x, reference_y)
    assert model.training
    torch.testing.assert_close(scores, gradient_scores(model, x, y, reference_x, reference_y))
    assert batch_score == pytest.approx(loop_batch_score(model, x, y, reference_x, reference_y), abs=1e-5)
    # a batch of one is its sample
    _, single = gradient_scores_with_batch(model, x[:1], y[:1], reference_x, reference_y)
    assert single == pytest.approx(float(scores[0]), abs=1e-5)


def test_a_sample_compared_with_nothing_scores_neither_aligned_nor_opposed():
    scores = gradient_scores(mlp(), torch.randn(3, 12), torch.zeros(3, dtype=torch.long), torch.empty(0, 12),
                             torch.empty(0, dtype=torch.long))
    assert scores.tolist() == [NO_REFERENCE_SCORE] * 3


def test_a_sample_scores_2_against_itself():
    x, y = torch.randn(4, 12), torch.tensor([0, 1, 2, 3])
    torch.testing.assert_close(gradient_scores(mlp(), x, y, x, y), torch.full((4,), 2.0))


def test_scores_are_computed_in_float32_under_a_mixed_precision_step():
    """Under bf16 / float16 autocast (a mixed-precision training step) the cosines would be
    those of rounded gradients; they are taken in float32, as outside it."""
    model, x, y = mlp(), torch.randn(6, 12), torch.randint(0, 4, (6,))
    outside = gradient_scores(model, x, y, x[:3], y[:3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = gradient_scores(model, x, y, x[:3], y[:3])
    assert torch.equal(inside, outside)
