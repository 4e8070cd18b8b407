"""The contrastive views, each operation checked against torchvision's functional form or the
geometry written out, their draws against the recipe's probabilities and ranges; and the
contrastive losses (SupCon, PCR's, Co2L's asymmetric SupCon and relation distillation) against
their formulas written out anchor by anchor."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from sylvan.methods.parts.contrastive import (
    ContrastiveViews,
    asymmetric_supervised_contrastive_loss,
    greyscale,
    hsv_to_rgb,
    proxy_contrastive_loss,
    relation_distillation_loss,
    rgb_to_hsv,
    supervised_contrastive_loss,
)


def drawn(count: int, **overrides) -> dict[str, torch.Tensor]:
    """Draws that leave an image as it is, with `overrides` (scalars for every sample)."""
    values = dict(width=1.0, height=1.0, centre_x=0.5, centre_y=0.5, flip=False, brightness=1.0, contrast=1.0,
                  saturation=1.0, hue=0.0, grey=False)
    values.update(overrides)
    return {name: torch.full((count,), value, dtype=torch.bool if isinstance(value, bool) else torch.float64)
            for name, value in values.items()}


def images(count: int = 4, channels: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_the_whole_image_crop_is_the_image_and_the_flip_its_mirror():
    x = images()
    torch.testing.assert_close(ContrastiveViews.resized_crops(x, drawn(4)), x)
    torch.testing.assert_close(ContrastiveViews.resized_crops(x, drawn(4, flip=True)), x.flip(3))


def test_a_crop_samples_its_box_at_the_images_resolution():
    # on a ramp, bilinear sampling gives the sampled position itself: output pixel j of a crop of
    # width w (a fraction) starting at `left` (pixels) reads position left + (j + 0.5) * w - 0.5,
    # clamped to the image
    columns = torch.arange(8.0).expand(2, 1, 8, 8)
    left_half = ContrastiveViews.resized_crops(columns, drawn(2, width=0.5, centre_x=0.25))
    expected = (0.5 * torch.arange(8.0) - 0.25).clamp(min=0)
    torch.testing.assert_close(left_half, expected.expand(2, 1, 8, 8))
    rows = columns.transpose(2, 3)
    bottom_quarter = ContrastiveViews.resized_crops(rows, drawn(2, height=0.25, centre_y=0.875))
    expected = (6 + 0.25 * torch.arange(8.0) - 0.375).clamp(max=7)
    torch.testing.assert_close(bottom_quarter, expected[:, None].expand(2, 1, 8, 8))
    mirrored = ContrastiveViews.resized_crops(columns, drawn(2, width=0.5, centre_x=0.25, flip=True))
    torch.testing.assert_close(mirrored, left_half.flip(3))


@pytest.mark.parametrize(("name", "value", "reference"), [
    ("brightness", 1.3, lambda x: TF.adjust_brightness(x, 1.3)),
    ("contrast", 0.7, lambda x: TF.adjust_contrast(x, 0.7)),
    ("saturation", 1.4, lambda x: TF.adjust_saturation(x, 1.4)),
    ("hue", -0.08, lambda x: TF.adjust_hue(x, -0.08)),
    ("grey", True, lambda x: TF.rgb_to_grayscale(x, num_output_channels=3)),
])
def test_each_colour_operation_is_torchvisions(name, value, reference):
    x = images(seed=1)
    torch.testing.assert_close(ContrastiveViews.jittered(x, drawn(4, **{name: value})), reference(x), atol=2e-6,
                               rtol=0)


def test_the_jitter_applies_brightness_contrast_saturation_hue_then_greyscale_in_that_order():
    x = images(seed=2)
    expected = TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x, 0.8), 1.2), 0.6), 0.05)
    torch.testing.assert_close(
        ContrastiveViews.jittered(x, drawn(4, brightness=0.8, contrast=1.2, saturation=0.6, hue=0.05)), expected,
        atol=2e-6, rtol=0,
    )


def test_hsv_round_trips_and_one_channel_images_keep_their_colour():
    x = images(16, seed=3)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-6, rtol=0)
    grey = images(channels=1, seed=4)
    assert torch.equal(greyscale(grey), grey)
    out = ContrastiveViews.jittered(grey, drawn(4, saturation=0.6, hue=0.1, grey=True))
    torch.testing.assert_close(out, grey)


def test_the_draws_follow_the_recipe():
    views = ContrastiveViews(seed=0)
    draws = views.draw(20_000)
    area, ratio = draws["width"] * draws["height"], draws["width"] / draws["height"]
    assert float(area.min()) >= 0.2 - 1e-9 and float(area.max()) <= 1.0
    assert float(ratio.min()) >= 3 / 4 - 1e-9 and float(ratio.max()) <= 4 / 3 + 1e-9
    for size, centre in (("width", "centre_x"), ("height", "centre_y")):  # every crop inside the image
        assert float((draws[centre] - draws[size] / 2).min()) >= 0
        assert float((draws[centre] + draws[size] / 2).max()) <= 1
    assert abs(float(draws["flip"].double().mean()) - 0.5) < 0.02
    jittered = draws["brightness"] != 1.0
    assert abs(float(jittered.double().mean()) - 0.8) < 0.02
    assert torch.equal(jittered, draws["hue"] != 0.0)
    for name in ("brightness", "contrast", "saturation"):
        assert float(draws[name].min()) >= 0.6 and float(draws[name].max()) <= 1.4
    assert float(draws["hue"].abs().max()) <= 0.1
    assert abs(float(draws["grey"].double().mean()) - 0.2) < 0.02
    # sqrt(area * ratio) exceeds 1 for some draws: those are clipped to the image's width
    assert float(draws["width"].max()) == 1.0 and math.isclose(float(draws["width"].min()), 0.2 ** 0.5 * 0.75 ** 0.5,
                                                               rel_tol=0.2)


def test_views_are_fresh_per_sample_and_repeatable_from_the_seed_and_a_checkpoint():
    x = images(8, seed=5)
    first = ContrastiveViews(seed=7)
    a = first(x)
    assert not torch.equal(a[0], a[1]) and a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    state = first.state_dict()
    b = first(x)
    assert not torch.equal(a, b), "each call draws afresh"
    again = ContrastiveViews(seed=7)
    torch.testing.assert_close(again(x), a)
    resumed = ContrastiveViews(seed=7)
    resumed.load_state_dict(state)
    torch.testing.assert_close(resumed(x), b)
    with pytest.raises(ValueError, match="image batches"):
        first(x.flatten(1))


@pytest.mark.parametrize(("option", "value"), [("crop_scale", 0.0), ("crop_scale", 1.5), ("flip_probability", 2.0),
                                               ("hue_shift", 0.6)])
def test_nonsense_view_options_are_refused(option, value):
    with pytest.raises(ValueError, match=option):
        ContrastiveViews(**{option: value})


def test_the_supervised_contrastive_loss_is_the_formula_written_out():
    generator = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(7, 5, generator=generator), dim=1)
    y = torch.tensor([0, 1, 0, 2, 1, 0, 3])  # the last sample's class has no other sample
    temperature, base = 0.2, 0.07
    losses = []
    for i in range(7):
        positives = [p for p in range(7) if p != i and y[p] == y[i]]
        if not positives:
            continue
        denominator = torch.logsumexp(torch.stack([z[i] @ z[k] / temperature for k in range(7) if k != i]), 0)
        mean_log = torch.stack([z[i] @ z[p] / temperature - denominator for p in positives]).mean()
        losses.append(-(temperature / base) * mean_log)
    expected = torch.stack(losses).mean()
    torch.testing.assert_close(supervised_contrastive_loss(z, y, temperature, base), expected)
    torch.testing.assert_close(supervised_contrastive_loss(z, y, temperature), expected * base / temperature)


def test_the_loss_is_zero_without_positives_and_its_gradient_finite():
    z = F.normalize(torch.randn(3, 4), dim=1).requires_grad_()
    loss = supervised_contrastive_loss(z, torch.tensor([0, 1, 2]), 0.07)
    loss.backward()
    assert float(loss.detach()) == 0.0 and bool(torch.isfinite(z.grad).all())


def test_the_proxy_loss_is_pcrs_anchor_to_proxy_contrast_written_out():
    """Each anchor i against the proxy of every sample k of the batch (its own included), the
    positives those of its class: -mean_i mean_{k: y_k = y_i} log(exp(s_ik) / sum_k exp(s_ik))."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, generator=generator) * 3  # cosines over T, 5 classes, 2 of them absent
    y = torch.tensor([0, 2, 0, 0, 3, 2])
    losses = []
    for i in range(6):
        s = torch.stack([logits[i, y[k]] for k in range(6)])
        log_probability = s - torch.logsumexp(s, 0)
        losses.append(-log_probability[y == y[i]].mean())
    torch.testing.assert_close(proxy_contrastive_loss(logits, y), torch.stack(losses).mean())


def test_the_proxy_loss_leaves_absent_classes_alone():
    logits = torch.randn(4, 5, requires_grad=True)
    proxy_contrastive_loss(logits, torch.tensor([1, 1, 3, 1])).backward()
    assert float(logits.grad[:, [0, 2, 4]].abs().sum()) == 0.0
    assert float(logits.grad[:, [1, 3]].abs().sum()) > 0


def test_the_asymmetric_loss_sums_the_anchors_terms_over_every_sample():
    generator = torch.Generator().manual_seed(1)
    z = F.normalize(torch.randn(8, 5, generator=generator), dim=1)
    y = torch.tensor([0, 1, 0, 2, 1, 0, 2, 3])
    anchors = torch.tensor([True, True, False, False, True, False, False, True])  # the last has no positive
    temperature, base = 0.5, 0.07
    terms = []
    for i in range(8):
        positives = [p for p in range(8) if p != i and y[p] == y[i]]
        if not anchors[i] or not positives:
            continue
        denominator = torch.logsumexp(torch.stack([z[i] @ z[k] / temperature for k in range(8) if k != i]), 0)
        terms.append(-(temperature / base) * torch.stack([z[i] @ z[p] / temperature - denominator
                                                          for p in positives]).mean())
    expected = torch.stack(terms).sum() / 8  # divided by every sample, anchors or not
    torch.testing.assert_close(asymmetric_supervised_contrastive_loss(z, y, anchors, temperature, base), expected)
    every = torch.ones(8, dtype=torch.bool)
    torch.testing.assert_close(asymmetric_supervised_contrastive_loss(z[:7], y[:7], every[:7], temperature, base),
                               supervised_contrastive_loss(z[:7], y[:7], temperature, base),
                               msg="with every sample an anchor, each with a positive, it is SupCon")


def test_samples_that_are_not_anchors_pull_only_through_the_anchors():
    z = F.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(2)), dim=1).requires_grad_()
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    anchors = torch.tensor([True, True, False, False, False, False])
    asymmetric_supervised_contrastive_loss(z, y, anchors, 0.5, 0.07).backward()
    assert float(z.grad[2:].abs().sum()) > 0, "the other samples are negatives of the anchors"
    nothing = torch.zeros(6, dtype=torch.bool)
    assert float(asymmetric_supervised_contrastive_loss(z.detach(), y, nothing, 0.5, 0.07)) == 0.0


def test_relation_distillation_is_the_cross_entropy_of_the_similarity_distributions_written_out():
    generator = torch.Generator().manual_seed(3)
    student = F.normalize(torch.randn(5, 4, generator=generator), dim=1)
    teacher = F.normalize(torch.randn(5, 4, generator=generator), dim=1)
    kappa, kappa_past = 0.2, 0.01
    rows = []
    for i in range(5):
        others = [j for j in range(5) if j != i]
        target = torch.softmax(torch.stack([teacher[i] @ teacher[j] / kappa_past for j in others]), 0)
        log_student = torch.log_softmax(torch.stack([student[i] @ student[j] / kappa for j in others]), 0)
        rows.append(-(target * log_student).sum())
    expected = torch.stack(rows).mean()
    torch.testing.assert_close(relation_distillation_loss(student, teacher, kappa, kappa_past), expected)


def test_relation_distillation_is_still_where_the_student_relates_the_samples_as_the_teacher():
    teacher = F.normalize(torch.randn(6, 3, generator=torch.Generator().manual_seed(4)), dim=1).requires_grad_()
    student = teacher.detach().clone().requires_grad_()
    relation_distillation_loss(student, teacher, 0.2, 0.2).backward()
    assert teacher.grad is None, "no gradient reaches the teacher"
    torch.testing.assert_close(student.grad, torch.zeros_like(student.grad), atol=1e-6, rtol=0)
    moved = F.normalize(student.detach() + 0.3 * torch.randn(6, 3, generator=torch.Generator().manual_seed(5)), dim=1)
    assert float(relation_distillation_loss(moved, teacher.detach(), 0.2, 0.2)) > float(
        relation_distillation_loss(student.detach(), teacher.detach(), 0.2, 0.2))
