"""sylvan's FLOP count against torch's `FlopCounterMode`: the same totals on every kind of work
a method's step runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sylvan.models import build_backbone
from sylvan.run.flop_count import FlopCount


def mlp_step() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    loss = F.cross_entropy(net(torch.rand(20, 1, 28, 28)), torch.randint(0, 10, (20,)))
    loss.backward()
    optimizer.step()


def resnet_step() -> None:
    net = build_backbone("resnet18", (3, 32, 32), 10)
    loss = F.cross_entropy(net(torch.rand(4, 3, 32, 32)), torch.randint(0, 10, (4,)))
    loss.backward()


def attention_and_composites() -> None:
    query, key, value = (torch.rand(2, 4, 16, 8, requires_grad=True) for _ in range(3))
    F.scaled_dot_product_attention(query, key, value).sum().backward()
    weights = torch.rand(8, 8, requires_grad=True)
    torch.einsum("bij,jk->bik", torch.rand(3, 5, 8), weights).sum().backward()
    torch.linalg.vector_norm(torch.rand(5, 5) @ torch.rand(5, 5))
    torch.nn.functional.conv_transpose2d(torch.rand(1, 2, 6, 6), torch.rand(2, 3, 3, 3))


def second_order() -> None:
    weights = torch.rand(10, 10, requires_grad=True)
    inputs = torch.rand(4, 10)
    (gradient,) = torch.autograd.grad((inputs @ weights).tanh().sum(), weights, create_graph=True)
    (gradient @ weights).sum().backward()


def without_autograd() -> None:
    """Composite operators reach the count undecomposed where autograd is off (an evaluation)."""
    with torch.no_grad():
        F.linear(torch.rand(3, 4), torch.rand(5, 4))
    with torch.inference_mode():
        F.linear(torch.rand(3, 4), torch.rand(5, 4), torch.rand(5))
        torch.einsum("ij,jk->ik", torch.rand(3, 4), torch.rand(4, 5))
        F.scaled_dot_product_attention(*(torch.rand(1, 2, 4, 8) for _ in range(3)))
    # an overload with a formula for its packet and a decomposition of its own: decomposed
    torch.ops.aten._convolution.deprecated(torch.rand(1, 2, 6, 6), torch.rand(3, 2, 3, 3), None, [1, 1], [0, 0],
                                           [1, 1], False, [0, 0], 1, False, False, False)


def higher_order_operator() -> None:
    inputs = torch.rand(6, 6)
    torch.cond(inputs.sum() > 0, lambda x: x @ x, lambda x: x + 1, (inputs,))


WORK = {"mlp_step": mlp_step, "resnet_step": resnet_step, "attention_and_composites": attention_and_composites,
        "second_order": second_order, "without_autograd": without_autograd,
        "higher_order_operator": higher_order_operator}


@pytest.mark.parametrize("name", sorted(WORK))
def test_the_count_is_torchs(name):
    torch.manual_seed(0)
    reference = FlopCounterMode(display=False)
    with reference:
        WORK[name]()
    torch.manual_seed(0)
    count = FlopCount()
    try:
        WORK[name]()
    finally:
        counted = count.stop()
    assert counted == reference.get_total_flops() > 0


def test_nested_counts_each_count_what_ran_inside_them():
    outer = FlopCount()
    torch.rand(4, 5) @ torch.rand(5, 6)  # 2 * 4 * 5 * 6 = 240
    inner = FlopCount()
    torch.rand(2, 3) @ torch.rand(3, 4)  # 48
    assert inner.stop() == 48
    assert outer.stop() == 240 + 48
