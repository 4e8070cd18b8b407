"""The Lightning Fabric sylvan trains on: the standalone `lightning_fabric` package, imported
without what a run does not use.

`lightning.fabric` is the same code inside the `lightning` package, whose `__init__` imports the
Trainer (`lightning.pytorch`) and with it torchmetrics, SciPy and torchvision: seconds of start-up
that a run of sylvan's own loop does not need. `lightning_fabric` alone still asks for
torchmetrics' version when it is imported (for `SpikeDetection`, which sylvan does not use), which
imports torchmetrics whole; `fabric()` imports it with torchmetrics marked absent for that one
import, so the check answers "no torchmetrics" and nothing of it is loaded. torchmetrics stays
importable afterwards, for anyone who uses it.

Importing `lightning_fabric` also sets `PYTORCH_NVML_BASED_CUDA_CHECK=1` for the process, so that
asking whether CUDA is available does not initialize CUDA before a strategy forks its workers.
torch then loads NVML at every `torch.cuda.is_available()` until CUDA is initialized, and each
optimizer step of torch asks: about 150 us a step on a machine without a GPU, more than a small
network's whole update. sylvan forks no worker (it starts them as processes of their own), so
`fabric()` leaves the variable as it found it."""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType

_import_lock = threading.Lock()
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def fabric() -> ModuleType:
    """The `lightning_fabric` package, imported on first use (see the module's docstring)."""
    loaded = sys.modules.get("lightning_fabric")
    if loaded is not None:
        return loaded
    with _import_lock:
        hide = "torchmetrics" not in sys.modules
        nvml_check = os.environ.get(NVML_CHECK)
        if hide:
            sys.modules["torchmetrics"] = None  # an import of it raises ImportError meanwhile
        try:
            import lightning_fabric
            import lightning_fabric.strategies  # noqa: F401  (the DDP strategies and their registry)
        finally:
            if hide and sys.modules.get("torchmetrics", 0) is None:
                del sys.modules["torchmetrics"]
            if nvml_check is None:
                os.environ.pop(NVML_CHECK, None)
            else:
                os.environ[NVML_CHECK] = nvml_check
    return lightning_fabric
