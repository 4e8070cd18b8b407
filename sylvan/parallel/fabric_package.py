"""The Lightning Fabric sylvan trains on: the standalone `lightning_fabric` package, imported
without what a run does not use.

`lightning.fabric` is the same code inside the `lightning` package, whose `__init__` imports the
Trainer (`lightning.pytorch`) and with it torchmetrics, SciPy and torchvision: seconds of start-up
that a run of sylvan's own loop does not need. `lightning_fabric` alone still asks for
torchmetrics' version when it is imported (for `SpikeDetection`, which sylvan does not use), which
imports torchmetrics whole; `fabric()` imports it with torchmetrics marked absent for that one
import, so the check answers "no torchmetrics" and nothing of it is loaded. torchmetrics stays
importable afterwards, for anyone who uses it."""

from __future__ import annotations

import sys
import threading
from types import ModuleType

_import_lock = threading.Lock()


def fabric() -> ModuleType:
    """The `lightning_fabric` package, imported on first use (see the module's docstring)."""
    loaded = sys.modules.get("lightning_fabric")
    if loaded is not None:
        return loaded
    with _import_lock:
        hide = "torchmetrics" not in sys.modules
        if hide:
            sys.modules["torchmetrics"] = None  # an import of it raises ImportError meanwhile
        try:
            import lightning_fabric
            import lightning_fabric.strategies  # noqa: F401  (the DDP strategies and their registry)
        finally:
            if hide and sys.modules.get("torchmetrics", 0) is None:
                del sys.modules["torchmetrics"]
    return lightning_fabric
