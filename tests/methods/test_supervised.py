"""Helpers of the supervised method base (sylvan/methods/core/supervised.py)."""

from __future__ import annotations

import pytest
import torch

from sylvan.methods.core.supervised import evaluating


def test_evaluating_restores_each_submodules_own_mode():
    """A network training with one part frozen in evaluation mode gets it back that way."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3), torch.nn.Dropout(0.5))
    net.train()
    net[1].eval()  # frozen batch norm
    with evaluating(net) as inside:
        assert not any(m.training for m in inside.modules())
        assert not torch.is_grad_enabled()
    assert net.training and net[0].training and net[2].training and not net[1].training
    net.eval()
    with evaluating(net):
        pass
    assert not any(m.training for m in net.modules())


def test_a_minibatch_too_small_for_batch_norm_is_a_clear_error():
    """A ResNet on 8x8 digits ends in 1x1 feature maps: a task of 82 samples at batch 81 ends in
    a minibatch of one sample, which batch norm cannot normalize in training."""
    from sylvan.errors import ConfigurationError
    from sylvan.methods import Naive
    from sylvan.minibatches import minibatch_loader
    from sylvan.settings import ClassIncrementalSetting

    setting = ClassIncrementalSetting(dataset="digits", nb_tasks=5, train_samples=405, epochs=1, progress_bar=False)
    first = setting.prepare_tasks()[0]
    assert len(first.y_train) == 82
    method = Naive(backbone="resnet18_reduced")
    method.configure(setting)
    with pytest.raises(ConfigurationError, match=r"a single sample through resnet18_reduced, whose batch norm .* "
                                                 r"\(resnet18_reduced on 8x8 inputs ends in 1x1 feature maps\)"):
        method.fit(minibatch_loader(first.train_dataset(with_task_labels=False), 81, shuffle=False))
