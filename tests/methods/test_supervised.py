"""Helpers of the supervised method base (sylvan/methods/supervised.py)."""

from __future__ import annotations

import torch

from sylvan.methods.supervised import evaluating


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
