"""The base of methods that keep a rehearsal buffer and replay from it with each minibatch
(`rehearsal`, `der`, `derpp`, `er_ace`, `er_aml`, `scr`, `pcr`, `co2l`, `lode`, `lode_derpp`, `mir`,
`aser`, `mer`, `clser`): the buffer's options and its construction, and where a step's replay comes
from: the method's own buffer in one process, the union of every worker's buffer on
data-parallel settings (the distributed asynchronous rehearsal buffer,
`sylvan.buffers.global_replay`). A method draws with `draw_replay` and stores with `remember`
either way, so each is written once for both."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from sylvan.buffers import BUFFER_POLICIES, RETRIEVALS, make_buffer, needs_features, needs_scores, needs_slots
from sylvan.buffers.global_replay import GlobalReplay
from sylvan.buffers.gss import FIRST_BATCH_SCORE
from sylvan.errors import ConfigurationError, refuse_if_given, unknown_name
from sylvan.methods.core.supervised import SupervisedMethod, evaluating
from sylvan.methods.parts.gradient_scores import gradient_scores, gradient_scores_with_batch
from sylvan.methods.parts.shapley import knn_shapley_values, replacement_slots, update_sets
from sylvan.minibatches import float_inputs

ASER_DRAWS_SEED = 50_021  # seed offset of the aser policy's draws (`Setting.worker_seed`)


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
    gss_compared: int = 10  # gss policy: stored samples each new sample's gradient is compared with (n)
    # gss policy: admit each batch as the DER paper's code does (turned away whole once the buffer is full unless
    # the gradient of its mean loss opposes every compared one), instead of GSS-Greedy's sample by sample
    gss_batch_gate: bool = False
    aser_neighbours: int = 5  # aser policy (and method): K, the neighbours of the KNN Shapley values
    # aser policy (and method): stored samples of each class that judge (their number x the classes compete)
    aser_samples_per_class: int = 2

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "buffer_size", "replay_size")
        self.require_at_least(1, "gss_compared", "aser_neighbours", "aser_samples_per_class")
        if self.buffer_policy not in BUFFER_POLICIES:
            raise unknown_name("buffer policy", self.buffer_policy, list(BUFFER_POLICIES))
        if self.buffer_retrieval not in RETRIEVALS:
            raise unknown_name("buffer retrieval", self.buffer_retrieval, list(RETRIEVALS))
        if not needs_scores(self.buffer_policy):
            why = f"it is the gss policy's, and --buffer_policy is {self.buffer_policy}"
            refuse_if_given(self, "gss_compared", why)
            refuse_if_given(self, "gss_batch_gate", why)
        if not self.uses_aser_options():
            why = f"it is the aser policy's, and --buffer_policy is {self.buffer_policy}"
            refuse_if_given(self, "aser_neighbours", why)
            refuse_if_given(self, "aser_samples_per_class", why)

    def uses_aser_options(self) -> bool:
        """Whether `aser_neighbours` and `aser_samples_per_class` take effect: with the aser
        policy, and in methods that choose their replay by ASER's values too."""
        return needs_slots(self.buffer_policy)

    def validate_for(self, setting: Any) -> None:
        super().validate_for(setting)
        if needs_features(self.buffer_policy, self.buffer_retrieval) or self.uses_aser_options():
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

    def configure(self, setting: Any) -> None:
        super().configure(setting)
        self.buffer = make_buffer(
            self.buffer_policy, self.buffer_size, seed=setting.worker_seed(), retrieval=self.buffer_retrieval,
            pixel_fields=self.pixel_fields,
        )
        self.store_features = needs_features(self.buffer_policy, self.buffer_retrieval)
        self.store_scores = needs_scores(self.buffer_policy)
        self.store_slots = needs_slots(self.buffer_policy)
        if self.store_features or self.uses_aser_options():
            self.check_features(self.model, self.backbone_name(setting))
        # the aser policy's draws of the stored samples that judge and compete (state only with that policy)
        self.aser_draws = torch.Generator().manual_seed(setting.worker_seed(ASER_DRAWS_SEED))
        # where a step's replay comes from and its samples go: the buffer in one process, the union
        # of every worker's buffer on several (`RunContext.replay_channel`)
        self.replay = self.run.replay_channel(self.buffer, self.replay_draws(setting.batch_size))
        self._task_start: tuple[int, int] | None = None  # (seen, replaced) when a task began with a full gss buffer
        self._unscored: list[dict[str, torch.Tensor]] = []  # gss, aser: this step's samples, stored after the step

    def on_task_start(self, task_id: int | None) -> None:
        super().on_task_start(task_id)
        full = self.store_scores and self.buffer.capacity > 0 and self.buffer.is_full
        self._task_start = (self.buffer.seen, self.buffer.replaced) if full else None

    def on_task_end(self, task_id: int | None) -> None:
        """Warn when a gss memory, full from the task's start, took none of the task's samples:
        every new gradient (and, batch-gated, every batch's) was aligned with a compared one, so
        the memory stays as it was, whatever the stream brings (as with many compared samples)."""
        self.store_unscored()
        super().on_task_end(task_id)
        start, self._task_start = self._task_start, None
        if start is None or self.buffer.replaced != start[1]:
            return
        offered = self.buffer.seen - start[0]
        if offered > 0:
            task = "" if task_id is None else f" {task_id}"
            warnings.warn(
                f"gss: the full buffer took none of the {offered:,} samples of task{task}: every "
                f"{'batch' if self.gss_batch_gate else 'sample'}'s gradient was aligned with one of the "
                f"{self.gss_compared} stored samples' it was compared with, so the memory does not change as the "
                "stream does (a smaller --gss_compared compares with fewer)",
                stacklevel=2,
            )

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
        """Whether the replay channel draws from every worker's buffer (`GlobalReplay`)."""
        return isinstance(self.replay, GlobalReplay)

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

    def sample_scores(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the gss policy admits new samples by (`sylvan.methods.parts.gradient_scores`): "score",
        each sample's gradient compared with those of `gss_compared` samples drawn uniformly
        from the local buffer (whatever the retrieval), as the buffer holds them before this
        batch; with `gss_batch_gate`, "batch_score" too, the gradient of the batch's mean loss
        compared with the same samples' (`FIRST_BATCH_SCORE` while nothing is stored)."""
        reference = self.buffer.uniform_sample(self.gss_compared) or {"x": x[:0], "y": y[:0]}
        compared = (self.model, x, y, reference["x"].to(x.device), reference["y"].to(y.device))
        if not self.gss_batch_gate:
            return {"score": gradient_scores(*compared)}
        scores, batch_score = gradient_scores_with_batch(*compared)
        if len(reference["x"]) == 0:
            batch_score = FIRST_BATCH_SCORE
        return {"score": scores, "batch_score": torch.tensor(batch_score, dtype=torch.float64)}

    def replacement_slots(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What the aser policy stores new samples by (`sylvan.methods.parts.shapley`): the stored
        sample each of (x, y) replaces, or -1. The first samples fill the free slots; each later
        one competes, with `aser_samples_per_class` x the classes stored samples drawn at random,
        by the sum of its KNN Shapley values (K = `aser_neighbours`, in the features of the
        network in evaluation mode) for `aser_samples_per_class` stored samples of each class
        and the new samples of classes the memory nearly lacks; the best of them stay. Samples
        beyond the free slots of the batch that fills the buffer compete with the samples
        stored before it."""
        buffer, count = self.buffer, len(y)
        held = len(buffer)
        filling = min(count, buffer.capacity - held)
        slots = torch.full((count,), -1, dtype=torch.long)
        if filling == count or held == 0:
            return slots
        stored_labels = buffer.gather(np.arange(held), names=("y",))["y"].cpu()
        new_labels = y[filling:].cpu()
        judges, competing, new_judges = update_sets(
            stored_labels, new_labels, buffer.capacity, self.run.num_classes, self.aser_samples_per_class,
            self.aser_draws,
        )
        stored_x = buffer.gather(torch.cat([judges, competing]).numpy(), names=("x",))["x"].to(x.device)
        features = self.stored_features(torch.cat([stored_x, x[filling:]]))
        judged, competed = len(judges), len(competing)
        values = knn_shapley_values(
            torch.cat([features[:judged], features[judged + competed:][new_judges.to(x.device)]]),
            torch.cat([stored_labels[judges], new_labels[new_judges]]).to(x.device),
            features[judged:],
            torch.cat([stored_labels[competing], new_labels]).to(x.device),
            self.aser_neighbours,
        ).sum(0)
        slots[filling:] = replacement_slots(values, competing, count - filling)
        return slots

    def remember(self, fields: dict[str, torch.Tensor]) -> None:
        """Offer the new samples (`fields` of the minibatch as they came, plus any extras such as
        logits) to the buffer, with their `stored_features` when the buffer policy or retrieval
        needs features (one extra forward pass of the new samples, only then), their
        `sample_scores` when the policy is gss, and their `replacement_slots` when it is aser.
        With those two policies the samples wait for the optimizer's step on them
        (`after_step`): their gradients are compared (their Shapley values computed) at the
        weights that learned from them, as GSS's and ASER's published code and the DER paper's
        code do. Other policies store at once, so that on data-parallel settings the next
        step's candidates travel during this step's passes."""
        if self.store_scores or self.store_slots:
            self._unscored.append(fields)
        else:
            self.offer_to_buffer(fields)

    def after_step(self) -> None:
        super().after_step()
        self.store_unscored()

    def store_unscored(self) -> None:
        """Store the samples the gss or aser policy held back for the optimizer's step (`remember`)."""
        unscored, self._unscored = self._unscored, []
        for fields in unscored:
            self.offer_to_buffer(fields)

    def offer_to_buffer(self, fields: dict[str, torch.Tensor]) -> None:
        """Offer `fields` to the buffer now (the body of `remember`)."""
        if self.store_features:
            fields = {**fields, "features": self.stored_features(float_inputs(fields["x"]))}  # x: maybe pixels
        if self.store_scores:
            fields = {**fields, **self.sample_scores(float_inputs(fields["x"]), fields["y"])}
        if self.store_slots:
            fields = {**fields, "slot": self.replacement_slots(float_inputs(fields["x"]), fields["y"])}
        self.replay.insert(fields)  # globally, and asynchronous: sends the next step's candidates too

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "buffer": self.buffer.state_dict()}
        if self.store_slots:
            state["aser_draws"] = self.aser_draws.get_state()
        if self.replays_globally:
            state["global_replay"] = self.replay.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])  # first: the global replay's blocks take its shapes
        if self.store_slots:
            self.aser_draws.set_state(state["aser_draws"])
        if "global_replay" in state:
            self.replay.load_state_dict(state["global_replay"])

    def runtime_stats(self) -> dict[str, float]:
        """On data-parallel settings, what the distributed replay costs the training loop."""
        replay = getattr(self, "replay", None)
        return {} if replay is None else replay.timings()
