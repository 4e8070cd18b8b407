"""Moving small host arrays (index vectors, random draws) to the device without waiting on it.

A copy from ordinary (pageable) host memory to a GPU makes the host wait until every kernel
queued before it on the stream has run: CUDA stages such copies synchronously. Buffers and
augmentations send a few index vectors per training step, so each of those copies would stall
the training loop on the forward and backward passes it has just queued. Staged through pinned
memory, the copy is queued like a kernel and the host runs on. (PyTorch's pinned-memory cache
keeps the pinned block alive until the copy has run.)
"""

from __future__ import annotations

import numpy as np
import torch


def to_device(values: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`values` (a NumPy array or a CPU tensor) as a tensor on `device`: on the CPU, the same
    memory (no copy); on CUDA, a copy queued on the current stream, the host not waiting."""
    tensor = torch.from_numpy(values) if isinstance(values, np.ndarray) else values
    device = torch.device(device)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
