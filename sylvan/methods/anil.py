"""`anil`: Almost No Inner Loop (Raghu, Raghu, Bengio, Vinyals, ICLR 2020), OSAKA's baseline
(Caccia et al., NeurIPS 2020): MAML whose inner loop adapts the classifier alone, the feature
layers meta-learned in the outer loop only. As `maml`, frozen in the stream: at each step the
classifier is adapted on the latest batch, from the meta-learned one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sylvan.methods.maml import MAML
from sylvan.methods.parts.fast_weights import FastWeights


@dataclass
class ANIL(MAML):
    """MAML with the inner loop on the classifier's weights."""

    name: ClassVar[str] = "anil"

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        self.check_backbone(setting, lambda model, name: self.require_feature_layers(
            model, name, "adapts the classifier on top of the feature layers"))

    def fast_weights(self) -> FastWeights:
        head = {id(p) for p in self.model.classifier.parameters()}  # checked by `validate_for`
        names = {name for name, p in self.model.named_parameters() if id(p) in head}
        return FastWeights(self.model, self.step_size, self.inner_steps, self.learn_step_size,
                           adapted=names.__contains__)
