"""The base of methods that keep a rehearsal buffer and replay from it with each minibatch
(`rehearsal`, `der`, `derpp`, `er_ace`, `er_aml`, `scr`, `pcr`, `co2l`, `lode`, `lode_derpp`, `mir`,
`aser`, `mer`, `clser`): the buffer's options and its construction, and where a step's replay comes
from: the method's own buffer in one process, the union of every worker's buffer on
data-parallel settings (the distributed asynchronous rehearsal buffer,
`sylvan.buffers.global_replay`). A method draws with `draw_replay` and stores with `remember`
either way, so each is written once for both."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn

from sylvan.buffers import (
    BUFFER_POLICIES,
    POLICY_OPTIONS,
    RETRIEVALS,
    make_buffer,
    needs_features,
    needs_slots,
    policy_option_defaults,
)
from sylvan.errors import ConfigurationError, refuse_if_given, unknown_name
from sylvan.methods.core.base import joined_state
from sylvan.methods.core.supervised import SupervisedMethod, evaluating
from sylvan.methods.parts.admission import admission_for
from sylvan.minibatches import float_inputs


@dataclass
class ReplayMethod(SupervisedMethod):
    """A method with a rehearsal buffer of any policy (`sylvan.buffers`), replaying r stored
    samples with each minibatch of b new ones."""

    replays: ClassVar[bool] = True

    buffer_size: int = 200  # capacity of the rehearsal buffer, in samples
    replay_size: int = 0  # r: samples replayed with each minibatch (0: as many as the batch size)
    # which samples the buffer keeps: reservoir, class_balanced, prs, gdumb, herding, fifo, gss, ring or aser
    buffer_policy: str = "reservoir"
    buffer_retrieval: str = "uniform"  # which stored samples are replayed: uniform or grasp
    buffer_options: Any = field(default=None, metadata={"cmd": False})  # the policy's options (`policy_options`)

    # the method's replay works on the backbone's features itself (`aser`), whatever the policy
    replay_uses_features: ClassVar[bool] = False

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "buffer_size", "replay_size")
        if self.buffer_policy not in BUFFER_POLICIES:
            raise unknown_name("buffer policy", self.buffer_policy, list(BUFFER_POLICIES))
        if self.buffer_retrieval not in RETRIEVALS:
            raise unknown_name("buffer retrieval", self.buffer_retrieval, list(RETRIEVALS))
        self.buffer_options = self.checked_buffer_options()

    def checked_buffer_options(self) -> Any:
        """`buffer_options` as the run takes them: the chosen policy's own options dataclass
        (`POLICY_OPTIONS`), at its defaults where none were given; None for a policy without
        options, or one whose options the method sets with fields of its own. Options of
        another policy are refused unless they are all at their defaults (a run's config.yaml
        records every policy's), since they would have no effect."""
        kind, given = POLICY_OPTIONS.get(self.buffer_policy), self.buffer_options
        if given is not None and not (kind is not None and isinstance(given, kind)):
            owner = next((policy for policy, options in POLICY_OPTIONS.items() if isinstance(given, options)), None)
            if owner is None:
                raise ConfigurationError(
                    f"buffer_options must be the options of a buffer policy ({', '.join(POLICY_OPTIONS)}), "
                    f"not {type(given).__name__}"
                )
            for name in (option.name for option in fields(given)):
                refuse_if_given(given, name, f"it is the {owner} policy's, and --buffer_policy is {self.buffer_policy}")
            given = None
        if kind is None:
            return None
        if self.sets_policy_options(kind):
            if given is not None and given != kind():
                raise ConfigurationError(
                    f"{self.name or type(self).__name__} sets the {self.buffer_policy} policy's options with its own "
                    f"{', '.join('--' + option.name for option in fields(kind))}: give those instead of buffer_options"
                )
            return None
        return given if given is not None else kind()

    def sets_policy_options(self, kind: type) -> bool:
        """Whether this method has fields of its own for every option of the policy options
        `kind` (the `aser` method's replay takes K and the samples per class too): the policy
        then takes the method's values."""
        own = {option.name for option in fields(self)}
        return all(option.name in own for option in fields(kind))

    def policy_options(self) -> Any:
        """The options of the chosen buffer policy in effect (a `POLICY_OPTIONS` dataclass), or
        None for a policy without options."""
        kind = POLICY_OPTIONS.get(self.buffer_policy)
        if kind is None or self.buffer_options is not None:
            return self.buffer_options
        return kind(**{option.name: getattr(self, option.name) for option in fields(kind)})

    def hparams(self) -> dict[str, Any]:
        """The method's options, with every buffer policy's options by flag name: the chosen
        policy's in effect, the others' at their defaults (as a run's config.yaml records them)."""
        options = {name: value for name, value in super().hparams().items() if name != "buffer_options"}
        in_effect = self.policy_options()
        policies = {**policy_option_defaults(), **(asdict(in_effect) if in_effect is not None else {})}
        return {**options, **{name: value for name, value in policies.items() if name not in options}}

    def works_on_features(self) -> bool:
        """Whether the buffer, its retrieval, its admission or the method's replay uses the
        backbone's features (herding, grasp, aser)."""
        return (needs_features(self.buffer_policy, self.buffer_retrieval) or needs_slots(self.buffer_policy)
                or self.replay_uses_features)

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        if self.works_on_features():
            self.check_backbone(setting, self.check_features)

    def check_features(self, model: nn.Module, name: str) -> None:
        """Refuse a backbone without a `features` module where the buffer or the replay works on
        features (herding, grasp, aser)."""
        if not isinstance(getattr(model, "features", None), nn.Module):
            raise ConfigurationError(
                f"{self.name or type(self).__name__} with --buffer_policy {self.buffer_policy} / --buffer_retrieval "
                f"{self.buffer_retrieval} works on the backbone's `features` module (every built-in backbone has "
                f"one), which {name} lacks"
            )

    def configure(self, run: Any) -> None:
        super().configure(run)
        self.buffer = make_buffer(
            self.buffer_policy, self.buffer_size, seed=self.run.workers.seed(), retrieval=self.buffer_retrieval,
            pixel_fields=self.pixel_fields,
        )
        self.store_features = needs_features(self.buffer_policy, self.buffer_retrieval)
        if self.works_on_features():
            self.check_features(self.model, self.backbone_name(run))
        # what the policy needs from the model to judge new samples (gss: scores, aser: slots), if anything
        self.admission = admission_for(self.buffer_policy, self.policy_options(), self.buffer, lambda: self.model,
                                       self.stored_features, self.run.num_classes, self.run.workers)
        # where a step's replay comes from and its samples go: the buffer in one process, the union
        # of every worker's buffer on several (`RunContext.replay_channel`)
        self.replay = self.run.replay_channel(self.buffer, self.replay_draws(run.batch_size))
        self._unscored: list[dict[str, torch.Tensor]] = []  # samples the admission judges after the step

    def on_task_start(self, task_id: int | None) -> None:
        super().on_task_start(task_id)
        if self.admission is not None:
            self.admission.on_task_start()

    def on_task_end(self, task_id: int | None) -> None:
        self.store_unscored()
        super().on_task_end(task_id)
        if self.admission is not None:
            self.admission.on_task_end(task_id)

    def require_candidates_for_replay(self, setting: Any, candidates: int) -> None:
        """Refuse fewer `--candidates` than the samples a step replays, for methods that choose
        their replay among that many drawn samples (`mir`, `aser`)."""
        replayed = self.replay_count(setting.batch_size)
        if candidates < replayed:
            raise ConfigurationError(
                f"--candidates ({candidates}) must be at least the {replayed} samples replayed per step "
                "(--replay_size, or the batch size when it is 0)"
            )

    def replay_count(self, batch_size: int) -> int:
        return self.replay_size or batch_size

    def replay_draws(self, batch_size: int) -> tuple[int, ...]:
        """How many samples each `draw_replay` of a training step asks for at most, in the order
        the step makes them (the distributed replay fetches exactly these ahead of the step).
        Default: one draw of r. Override when a step draws more, or more often."""
        return (self.replay_count(batch_size),)

    @property
    def replays_globally(self) -> bool:
        """Whether the replay channel draws from every worker's buffer (as the channel says)."""
        return self.replay.is_global

    def draw_replay(self, n: int, augment: bool = True) -> dict[str, torch.Tensor]:
        """Up to `n` samples drawn uniformly from the buffer (every stored field; {} while it is
        empty), their inputs augmented as the setting augments the minibatch: each replay is a
        fresh view. On data-parallel settings, the step's next draw from the global buffer.
        Without `augment`, the inputs as stored: for a draw of which the method trains on a
        few samples only, which it then augments itself (`augment_inputs`)."""
        replay = self.replay.take(n)
        if replay and augment and self.augmentation is not None:
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
        needs features (one extra forward pass of the new samples, only then), and what the
        policy's admission computes from the model, if it has one (`sylvan.methods.parts.admission`).
        Samples an admission judges wait for the optimizer's step on them (`after_step`), as the
        policies' published code judges them at the weights that learned from them; others are
        stored at once, so that on data-parallel settings the next step's candidates travel
        during this step's passes."""
        if self.admission is not None:
            self._unscored.append(fields)
        else:
            self.offer_to_buffer(fields)

    def after_step(self) -> None:
        super().after_step()
        self.store_unscored()

    def store_unscored(self) -> None:
        """Store the samples held back for the optimizer's step (`remember`)."""
        unscored, self._unscored = self._unscored, []
        for samples in unscored:
            self.offer_to_buffer(samples)

    def offer_to_buffer(self, fields: dict[str, torch.Tensor]) -> None:
        """Offer `fields` to the buffer now (the body of `remember`)."""
        if self.store_features:
            fields = {**fields, "features": self.stored_features(float_inputs(fields["x"]))}  # x: maybe pixels
        if self.admission is not None:
            fields = {**fields, **self.admission.extras(float_inputs(fields["x"]), fields["y"])}
        self.replay.insert(fields)  # globally, and asynchronous: sends the next step's candidates too

    def state_dict(self) -> dict[str, Any]:
        state = joined_state(super().state_dict(), buffer=self.buffer.state_dict())
        if self.admission is not None:
            state = joined_state(state, admission=self.admission.state_dict())
        if self.replays_globally:
            state = joined_state(state, global_replay=self.replay.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])  # first: the global replay's blocks take its shapes
        if self.admission is not None:  # (at the top in checkpoints written before it had a key of its own)
            self.admission.load_state_dict(state.get("admission", state))
        if "global_replay" in state:
            self.replay.load_state_dict(state["global_replay"])

    def runtime_stats(self) -> dict[str, float]:
        """On data-parallel settings, what the distributed replay costs the training loop."""
        replay = getattr(self, "replay", None)
        return {} if replay is None else replay.timings()
