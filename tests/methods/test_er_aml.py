"""`er_aml`: which candidates can be an anchor's positive and negative and how uniformly they are
drawn, the contrastive loss against the formula written out anchor by anchor, and a step in
which the incoming samples reach the features but never the classifier."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sylvan.errors import ConfigurationError
from sylvan.methods import ERAML, Batch, er_aml
from sylvan.methods.parts.metric_learning import ContrastPool, asymmetric_contrastive_loss, contrast_pairs
from sylvan.models.cosine import CosineClassifier
from sylvan.settings import OnlineSetting
from tests.methods.digits_samples import samples
from tests.settings.test_augmentation import is_augmented_view

DIGITS = dict(dataset="digits", nb_tasks=5, batch_size=8, progress_bar=False)

# five stored samples, then the minibatch (the anchors): labels 0, 1, 0
CANDIDATE_Y = torch.tensor([0, 1, 2, 0, 1, 0, 1, 0])
ANCHOR_Y = CANDIDATE_Y[5:]


def configured(method: ERAML) -> ERAML:
    torch.manual_seed(0)  # the network's initialization
    method.configure(OnlineSetting(**DIGITS))
    return method


def test_positives_share_the_anchors_label_and_negatives_hold_another_label_of_the_minibatch():
    generator = torch.Generator().manual_seed(0)
    positives, negatives = [Counter() for _ in ANCHOR_Y], [Counter() for _ in ANCHOR_Y]
    draws = 3000
    for _ in range(draws):
        keys = torch.rand(len(CANDIDATE_Y), len(ANCHOR_Y), generator=generator)
        positive, negative, valid = contrast_pairs(ANCHOR_Y, CANDIDATE_Y, keys)
        assert valid.all()
        for anchor in range(len(ANCHOR_Y)):
            positives[anchor][int(positive[anchor])] += 1
            negatives[anchor][int(negative[anchor])] += 1
    # anchor 5 (label 0): its class elsewhere is 0, 3, 7; the other label of the minibatch is 1 (never 2)
    assert set(positives[0]) == {0, 3, 7} and set(negatives[0]) == {1, 4, 6}
    assert set(positives[1]) == {1, 4} and set(negatives[1]) == {0, 3, 5, 7}
    assert set(positives[2]) == {0, 3, 5} and set(negatives[2]) == {1, 4, 6}
    for counts in positives + negatives:  # uniform among the valid candidates
        share = draws / len(counts)
        assert all(abs(count - share) < 0.1 * share for count in counts.values())


def test_an_anchor_without_a_positive_or_a_negative_is_invalid():
    keys = torch.rand(6, 3)
    # label 3 appears once (no positive); pool and minibatch otherwise of label 4 only
    _, _, valid = contrast_pairs(torch.tensor([3, 4, 4]), torch.tensor([4, 4, 5, 3, 4, 4]), keys)
    assert valid.tolist() == [False, True, True]
    _, _, valid = contrast_pairs(torch.tensor([4, 4]), torch.tensor([4, 5, 4, 4]), keys[:4, :2])
    assert valid.tolist() == [False, False]  # one class in the minibatch: no negative (5 is not of it)


def written_out_loss(anchors, contrast, anchor_y, contrast_y, valid, tau, tau_b) -> torch.Tensor:
    """The module's formula, anchor by anchor, over the valid anchors and their own contrast samples."""
    n = len(anchor_y)
    kept = [k for k in range(2 * n) if valid[k % n]]
    terms = []
    for i in range(n):
        if not valid[i]:
            continue
        a = anchors[i] / anchors[i].norm()
        similarity = {k: float(a @ (contrast[k] / contrast[k].norm())) / tau for k in kept}
        denominator = sum(torch.exp(torch.tensor(s)) for s in similarity.values())
        positives = [k for k in kept if contrast_y[k] == anchor_y[i]]
        terms.append(sum(similarity[k] - torch.log(denominator) for k in positives) / len(positives))
    return -(tau / tau_b) * torch.stack(terms).mean()


def test_the_loss_matches_the_formula_written_out_and_leaves_invalid_anchors_out():
    generator = torch.Generator().manual_seed(1)
    anchors, contrast = torch.randn(4, 6, generator=generator), torch.randn(8, 6, generator=generator)
    anchor_y = torch.tensor([0, 1, 0, 2])
    contrast_y = torch.tensor([0, 1, 0, 2, 1, 0, 1, 0])  # positives, then negatives (one of them of class 0)
    valid = torch.tensor([True, True, True, False])
    loss = asymmetric_contrastive_loss(anchors, contrast, anchor_y, contrast_y, valid, 0.2, 0.07)
    expected = written_out_loss(anchors, contrast, anchor_y, contrast_y, valid, 0.2, 0.07)
    torch.testing.assert_close(loss, expected.float(), rtol=1e-5, atol=1e-5)
    changed = contrast.clone()
    changed[3] = changed[7] = torch.randn(6)  # the invalid anchor's positive and negative
    assert float(asymmetric_contrastive_loss(anchors, changed, anchor_y, contrast_y, valid, 0.2, 0.07)) == float(loss)


def test_without_a_valid_anchor_the_loss_is_zero_with_finite_gradients():
    anchors = torch.randn(3, 4, requires_grad=True)
    loss = asymmetric_contrastive_loss(anchors, torch.randn(6, 4), torch.zeros(3, dtype=torch.long),
                                       torch.zeros(6, dtype=torch.long), torch.zeros(3, dtype=torch.bool), 0.2, 0.07)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(anchors.grad, torch.zeros(3, 4))


def test_the_first_step_learns_by_cross_entropy():
    method = configured(ERAML(buffer_size=50))
    step = Batch(*samples([0, 1, 0, 1], 0), None)
    torch.testing.assert_close(method.training_step(step), F.cross_entropy(method.learner(step.x), step.y))
    assert len(method.buffer) == 4


def test_the_incoming_samples_shape_the_features_and_never_reach_the_classifier():
    method = configured(ERAML(buffer_size=50, replay_size=4))
    method.training_step(Batch(*samples([2, 3, 2, 3, 2, 3], 1), None))  # fills the buffer
    replays = []
    draw = method.draw_replay

    def recorded(n, augment=True):
        replays.append(draw(n, augment))
        return replays[-1]

    method.draw_replay = recorded
    step = Batch(*samples([0, 1, 0, 1], 2), None)
    method.model.zero_grad()
    method.training_step(step).backward()
    total = {name: p.grad.clone() for name, p in method.model.named_parameters()}
    replay = replays[0]
    assert len(replays) == 1 and len(replay["y"]) == 4  # the pool is drawn from the buffer's slots
    method.model.zero_grad()
    F.cross_entropy(method.learner(replay["x"]), replay["y"]).backward()
    for name, p in method.model.named_parameters():
        if name.startswith("classifier"):
            torch.testing.assert_close(total[name], p.grad, msg=name)
        else:
            assert not torch.allclose(total[name], p.grad), f"{name}: the contrastive loss has a gradient"


def test_the_chosen_positives_and_negatives_are_augmented_and_the_rest_of_the_pool_is_not():
    torch.manual_seed(0)
    method = ERAML(buffer_size=50, replay_size=4)
    method.configure(OnlineSetting(**DIGITS, augmentation="crop_flip", crop_padding=2))
    method.training_step(Batch(*samples([2, 3, 2, 3, 2, 3], 1), None))  # fills the buffer (as it came)
    calls, network_inputs = [], []
    augment, features = method.augment_inputs, method.model.features.forward

    def recorded_augment(x):
        calls.append((x, augment(x)))
        return calls[-1][1]

    def recorded_features(x):
        network_inputs.append(x)
        return features(x)

    method.augment_inputs = recorded_augment
    method.model.features.forward = recorded_features
    raw, y = samples([0, 1, 0, 1], 2)
    view = augment(raw)
    method.training_step(Batch(view, y, None, stored_x=raw))
    assert [len(x) for x, _ in calls] == [4, 8]  # the replay, then each anchor's positive and negative
    candidates = {row.numpy().tobytes() for row in torch.cat([method.buffer.get_all()["x"], raw])}
    for x, out in calls:
        assert {row.numpy().tobytes() for row in x} <= candidates  # drawn as stored
        assert all(is_augmented_view(o, s, 2) for o, s in zip(out, x))
    torch.testing.assert_close(network_inputs[0], torch.cat([view, calls[1][1], calls[0][1]]))


def test_the_pool_is_the_whole_buffer_of_which_only_the_chosen_inputs_are_gathered():
    method = configured(ERAML(buffer_size=50, replay_size=4))
    method.training_step(Batch(*samples([2, 3] * 10, 1), None))  # 20 stored
    gathered = []
    gather = method.buffer.gather

    def recorded(slots, names=None):
        gathered.append((len(slots), None if names is None else tuple(names)))
        return gather(slots, names)

    method.buffer.gather = recorded
    method.training_step(Batch(*samples([0, 1, 0, 1], 2), None))
    assert gathered == [(4, None), (20, ("y",)), (8, ("x",))]  # the replay, the pool's labels, 2 x 4 inputs


def test_the_contrast_inputs_are_the_chosen_candidates_when_the_step_replaces_stored_samples(monkeypatch):
    method = configured(ERAML(buffer_size=6, replay_size=2))
    method.training_step(Batch(*samples([0, 1] * 3, 1), None))  # the buffer full, of the next batch's classes
    before = method.buffer.get_all()["x"].clone()  # in slot order (a view of the storage otherwise)
    recorded = {}
    uniform_slots, pairs = method.buffer.uniform_slots, er_aml.contrast_pairs

    def recorded_slots(n):
        recorded["slots"] = uniform_slots(n)
        return recorded["slots"]

    def recorded_pairs(*args):
        recorded["pairs"] = pairs(*args)
        return recorded["pairs"]

    method.buffer.uniform_slots = recorded_slots
    monkeypatch.setattr(er_aml, "contrast_pairs", recorded_pairs)
    inputs = []
    features = method.model.features.forward
    method.model.features.forward = lambda batch: inputs.append(batch) or features(batch)
    x, y = samples([0, 1] * 4, 2)
    replaced = method.buffer.replaced
    method.training_step(Batch(x, y, None))
    assert method.buffer.replaced > replaced, "the step's samples took some of the pool's slots"
    candidates = torch.cat([before[torch.from_numpy(recorded["slots"])], x])
    positive, negative, _ = recorded["pairs"]
    assert int((torch.cat([positive, negative]) < 6).sum()) > 0, "some were chosen from the pool"
    torch.testing.assert_close(inputs[0][len(y) : 3 * len(y)], candidates[torch.cat([positive, negative])])


def test_a_step_whose_pool_comes_back_empty_pairs_within_the_minibatch():
    method = configured(ERAML(buffer_size=50, replay_size=4))
    method.training_step(Batch(*samples([2, 3, 2, 3], 1), None))
    method.buffer.uniform_slots = lambda n: np.empty(0, dtype=np.int64)
    loss = method.training_step(Batch(*samples([0, 1, 0, 1], 2), None))
    assert torch.isfinite(loss) and float(loss.detach()) > 0


def test_pool_inputs_come_from_the_pool_or_the_minibatch_as_chosen():
    method = configured(ERAML(buffer_size=50))
    method.training_step(Batch(*samples([2, 3, 2, 3], 1), None))
    stored = method.buffer.get_all()
    slots = torch.tensor([3, 0, 2])
    pool = ContrastPool(stored["y"][slots], slots=slots)
    incoming, _ = samples([0, 1], 5)
    chosen = torch.tensor([0, 4, 2, 3, 1])  # pool, minibatch, pool, minibatch, pool
    expected = torch.stack([stored["x"][3], incoming[1], stored["x"][2], incoming[0], stored["x"][0]])
    torch.testing.assert_close(method.chosen_inputs(pool, incoming, chosen), expected)
    whole = ContrastPool(stored["y"][slots], x=stored["x"][slots])  # as the global replay brings it
    torch.testing.assert_close(method.chosen_inputs(whole, incoming, chosen), expected)


def test_the_classifier_is_a_cosine_of_fixed_scale_unless_turned_off():
    method = configured(ERAML())
    classifier = method.model.classifier
    assert isinstance(classifier, CosineClassifier) and float(classifier.sigma) == 10.0
    assert "classifier.sigma" not in dict(method.model.named_parameters())
    x = torch.rand(3, 1, 8, 8)
    features = method.model.features(x)
    expected = 10 * F.normalize(features, dim=1) @ F.normalize(classifier.weight, dim=1).T
    torch.testing.assert_close(method.model(x), expected)
    assert isinstance(configured(ERAML(cosine_classifier=False)).model.classifier, torch.nn.Linear)


@pytest.mark.parametrize(("options", "flag"), [
    (dict(temperature=0), "--temperature"),
    (dict(base_temperature=-1), "--base_temperature"),
    (dict(contrast_pool=-1), "--contrast_pool"),
    (dict(classifier_scale=0), "--classifier_scale"),
    (dict(cosine_classifier=False, classifier_scale=5), "--classifier_scale 5"),
    (dict(buffer_size=0), "--buffer_size"),
])
def test_nonsense_options_are_refused(options, flag):
    with pytest.raises(ConfigurationError, match=flag):
        ERAML(**options)
