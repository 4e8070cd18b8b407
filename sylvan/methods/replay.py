"""The base of methods that keep a rehearsal buffer and replay from it with each minibatch
(`rehearsal`, `der`, `derpp`, `er_ace`): the buffer's options and its construction, once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sylvan.buffers import BUFFER_POLICIES, RETRIEVALS, make_buffer, needs_features
from sylvan.errors import ConfigurationError, unknown_name
from sylvan.methods.supervised import SupervisedMethod, evaluating


@dataclass
class ReplayMethod(SupervisedMethod):
    """A method with a rehearsal buffer of any policy (`sylvan.buffers`), replaying r stored
    samples with each minibatch of b new ones."""

    buffer_size: int = 200  # capacity of the rehearsal buffer, in samples
    replay_size: int = 0  # r: samples replayed with each minibatch (0: as many as the batch size)
    # which samples the buffer keeps: reservoir, class_balanced, prs, gdumb, herding or fifo
    buffer_policy: str = "reservoir"
    buffer_retrieval: str = "uniform"  # which stored samples are replayed: uniform or grasp

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "buffer_size", "replay_size")
        if self.buffer_policy not in BUFFER_POLICIES:
            raise unknown_name("buffer policy", self.buffer_policy, list(BUFFER_POLICIES))
        if self.buffer_retrieval not in RETRIEVALS:
            raise unknown_name("buffer retrieval", self.buffer_retrieval, list(RETRIEVALS))

    def configure(self, setting: Any) -> None:
        super().configure(setting)
        self.buffer = make_buffer(
            self.buffer_policy, self.buffer_size, seed=setting.seed, retrieval=self.buffer_retrieval
        )
        self.store_features = needs_features(self.buffer_policy, self.buffer_retrieval)
        if self.store_features and not hasattr(self.model, "features"):
            raise ConfigurationError(
                f"--buffer_policy {self.buffer_policy} / --buffer_retrieval {self.buffer_retrieval} need a "
                "backbone with a `features` module (all built-in backbones have one)"
            )

    def replay_count(self, batch_size: int) -> int:
        return self.replay_size or batch_size

    def draw_replay(self, n: int) -> dict[str, torch.Tensor]:
        """Up to `n` samples drawn from the buffer (every stored field; {} while it is empty), their
        inputs augmented as the setting augments the minibatch: each replay is a fresh view."""
        replay = self.buffer.sample(n)
        if replay and self.augmentation is not None:
            replay["x"] = self.augment_inputs(replay["x"])
        return replay

    def stored_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features of `x` as the buffer keeps them next to the samples: of the
        inputs as they came (not one augmented view), in evaluation mode and without gradients,
        so that they describe the sample rather than one dropout mask or one batch's
        normalization statistics, and the pass leaves batch-norm running statistics alone.
        The distributed replay computes the same features of the same samples."""
        with evaluating(self.model) as model:
            return model.features(x)

    def remember(self, fields: dict[str, torch.Tensor]) -> None:
        """Offer the new samples (`fields` of the minibatch as they came, plus any extras such as
        logits) to the buffer, with their `stored_features` when the buffer policy or retrieval
        needs features (one extra forward pass of the new samples, only then)."""
        if self.store_features:
            fields = {**fields, "features": self.stored_features(fields["x"])}
        self.buffer.add(**fields)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])
