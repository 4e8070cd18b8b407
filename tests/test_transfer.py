"""`to_device`: index vectors reach the device with their values, without a copy on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sylvan.transfer import to_device


def test_on_the_cpu_the_result_shares_the_array():
    values = np.arange(6, dtype=np.int64)
    moved = to_device(values, "cpu")
    values[0] = 42
    assert moved.device.type == "cpu" and moved.tolist() == [42, 1, 2, 3, 4, 5]
    tensor = torch.arange(3)
    assert to_device(tensor, torch.device("cpu")) is tensor


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_the_values_arrive_after_the_queued_work():
    target = torch.zeros(1 << 20, device="cuda")
    target.add_(1.0)  # queued work before the copy
    index = to_device(np.array([3, 1, 4], dtype=np.int64), "cuda")
    assert index.is_cuda and index.tolist() == [3, 1, 4]
    assert target.index_select(0, index).tolist() == [1.0, 1.0, 1.0]
