"""`bic`: the two stages of bias correction, each checked against the quantity written out: the
distillation loss weighted by the old classes' share, the validation part held out of training,
and the two-parameter correction learned by Adam on it, then applied to predictions."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from sylvan.errors import ConfigurationError
from sylvan.methods import Batch, BiC
from sylvan.methods.parts.bias_correction import BiasCorrection
from tests.methods.digits_samples import configured, mask, samples


def test_stage_one_weighs_cross_entropy_and_corrected_distillation_by_the_old_classes_share():
    method = configured(BiC(temperature=2.0))
    method.seen_classes.active, method.seen_classes.old = mask(0, 1, 2, 3), mask(0, 1, 2, 3)
    method.teacher.network = copy.deepcopy(method.model)
    with torch.no_grad():
        for p in method.teacher.network.parameters():
            p.add_(0.3 * torch.randn_like(p))
    method.correction = BiasCorrection(0.7, -0.4, mask(2, 3))  # learned for the previous task's classes
    batch = Batch(*samples([4, 5, 4, 5, 4, 5], seed=1), None)
    loss = method.training_step(batch)

    logits = method.model(batch.x)
    teacher = method.teacher.network(batch.x).detach()
    teacher[:, 2:4] = 0.7 * teacher[:, 2:4] - 0.4
    share = 4 / 6  # old classes / classes seen (4 and 5 have joined)
    p_teacher = F.softmax(teacher[:, :4] / 2, 1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(logits[:, :4] / 2, 1))).sum(1).mean()
    expected = (1 - share) * F.cross_entropy(logits[:, :6], batch.y) + share * kl * 4
    torch.testing.assert_close(loss, expected)


def test_the_first_task_trains_on_plain_cross_entropy_over_the_classes_seen():
    method = configured(BiC())
    batch = Batch(*samples([0, 1, 1, 0], seed=2), None)
    loss = method.training_step(batch)
    torch.testing.assert_close(loss, F.cross_entropy(method.model(batch.x)[:, :2], batch.y))


def test_the_validation_part_is_balanced_and_held_out_of_training():
    method = configured(BiC(buffer_size=100, val_fraction=0.2))
    x0, y0 = samples([0] * 30 + [1] * 30, seed=3)
    method.update_exemplars(x0, y0)  # the first task's exemplars: 50 per class
    method.seen_classes.active, method.seen_classes.old = mask(0, 1), mask(0, 1)
    x1, y1 = samples([2] * 30 + [3] * 30, seed=4)
    loaders = []
    method.train_learner = lambda loader, val_data: loaders.append(loader)
    method.fit(DataLoader(TensorDataset(x1, y1), batch_size=8))

    per_class = int(0.2 * (100 // 4))  # 5: the quota once 4 classes share the memory
    val_x, val_y = method._validation
    assert sorted(val_y.tolist()) == sorted([0, 1, 2, 3] * per_class)
    trained = torch.cat([batch[0] for batch in loaders[0]])
    assert len(trained) == 60 + 60 - 4 * per_class  # the task's data and the exemplars, less the validation part
    for sample in val_x:
        assert not (trained == sample).flatten(1).all(1).any(), "a validation sample was trained on"


def test_the_correction_is_the_adam_loop_of_the_reference_code():
    method = configured(BiC(bias_epochs=40, bias_lr=0.01, bias_batch_size=1000))
    method.seen_classes.active = mask(0, 1, 2, 3)
    with torch.no_grad():
        method.model.classifier.bias[2:4] += 2.0  # the new classes' logits favoured
    x, y = samples([0, 1, 2, 3] * 5, seed=5)
    correction = method.learn_correction(x, y, mask(2, 3))

    # the DER authors' code: corr_factors = [beta, alpha], the new classes' logits times alpha plus beta
    with torch.no_grad():
        out = method.model(x)
    factors = torch.tensor([0.0, 1.0], requires_grad=True)
    optimizer = torch.optim.Adam([factors], lr=0.01)
    for _ in range(40):  # one batch per epoch: the whole validation part
        optimizer.zero_grad()
        tout = out + 0
        tout[:, 2:4] *= factors[1].repeat_interleave(2)
        tout[:, 2:4] += factors[0].repeat_interleave(2)
        F.cross_entropy(tout[:, :4], y).backward()
        optimizer.step()
    assert correction.alpha == pytest.approx(factors[1].item(), abs=1e-5)
    assert correction.beta == pytest.approx(factors[0].item(), abs=1e-5)
    assert correction.beta < 0, "the favoured classes' logits are lowered"


def test_predictions_apply_the_last_correction_to_its_classes_only():
    method = configured(BiC())
    method.correction = BiasCorrection(0.5, -1.0, mask(2, 3))
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        logits = method.model(x)
    expected = logits.clone()
    expected[:, 2:4] = 0.5 * logits[:, 2:4] - 1.0
    torch.testing.assert_close(method.predict(x), expected)
    resumed = configured(BiC())
    resumed.load_state_dict(method.state_dict())
    torch.testing.assert_close(resumed.predict(x), expected)


def test_a_memory_too_small_for_a_validation_sample_per_class_is_refused():
    with pytest.raises(ConfigurationError, match="--buffer_size 50"):
        configured(BiC(buffer_size=50))  # 5 exemplars per class, a tenth of which is none


@pytest.mark.parametrize("options", [dict(val_fraction=0.0), dict(val_fraction=1.0), dict(bias_epochs=0),
                                     dict(temperature=0.0), dict(bias_lr=-1.0)])
def test_invalid_hyperparameters_are_refused(options):
    with pytest.raises(ConfigurationError, match=f"--{next(iter(options))}"):
        BiC(**options)
