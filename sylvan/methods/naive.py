"""`naive`: plain fine-tuning on each new batch, the lower bound of continual learning
("incremental" / "SGD" in the rehearsal papers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sylvan.methods.core.supervised import SupervisedMethod
from sylvan.settings.base import Setting
from sylvan.settings.online import OnlineSetting


@dataclass
class Naive(SupervisedMethod):
    """Cross-entropy on the current minibatch only; nothing protects old knowledge."""

    name: ClassVar[str] = "naive"
    target_setting: ClassVar[type[Setting]] = OnlineSetting
