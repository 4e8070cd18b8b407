"""Gradient-based sample selection, greedy form (GSS-Greedy: Aljundi, Lin, Goujaud & Bengio,
"Gradient based sample selection for online continual learning", NeurIPS 2019, Algorithm 2).

The memory prefers samples whose gradients point in directions the rest of the memory does
not: each sample carries a score c = 1 + (the largest cosine similarity between its gradient and
the gradients of a few random stored samples), in [0, 2]; low is diverse. The method computes
the scores (it has the model; `sylvan.methods.parts.gradient_scores`), its `GSSAdmission` below
draws the compared samples and reports a memory that stops changing, and `add` gets them as
`score=`, one per sample; the buffer stores them next to the samples and decides:

- while the buffer is not full, every sample enters, with its score;
- once it is full, a sample whose gradient is not aligned with any compared one (c < 1) draws a
  slot i with probability C_i / sum_j C_j and replaces it with probability C_i / (C_i + c),
  taking score c; a sample with c >= 1 is turned away.

So redundant samples (high scores) are the ones replaced, by samples that bring new directions.

A batch offered with `batch_score=` (1 + the largest cosine similarity between the gradient of
the batch's mean loss and the compared gradients) is admitted instead as the code of Buzzega et
al. (NeurIPS 2020) admits it, whose GSS figures are the ones usually cited ("batch-gated"):

- while the buffer fills, the batch's samples enter with the batch's score, not their own;
- once it is full, a batch scored 1 or more is turned away whole; in a batch scored below 1,
  every sample, whatever its own score, draws a slot and replaces it as above, with its own score.

That code stores the first batch, compared with nothing, with score 0.1 (`FIRST_BATCH_SCORE`),
ten to twenty times below the later samples', so those samples are seldom drawn and, when
drawn, seldom replaced: they stay in the buffer for most of the stream.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from sylvan.buffers.base import RehearsalBuffer
from sylvan.buffers.reservoir import last_writer_wins
from sylvan.errors import require_at_least

# (x, y, reference x, reference y, batch) -> (each sample's score, the batch's score or None)
GradientScores = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool], tuple[torch.Tensor, Any]]

FIRST_BATCH_SCORE = 0.1  # batch-gated: the score of a batch compared with nothing (that of the paper's code)


@dataclass
class GSSOptions:
    """The gss policy's options (`--gss_compared`, `--gss_batch_gate`), which a replay method
    takes as its `buffer_options` where `--buffer_policy` is gss."""

    gss_compared: int = 10  # gss policy: stored samples each new sample's gradient is compared with (n)
    # gss policy: admit each batch as the DER paper's code does (turned away whole once the buffer is full unless
    # the gradient of its mean loss opposes every compared one), instead of GSS-Greedy's sample by sample
    gss_batch_gate: bool = False

    def __post_init__(self) -> None:
        require_at_least(self, 1, "gss_compared")


class GSSBuffer(RehearsalBuffer):
    """GSS-Greedy, vectorized over a batch: the samples of one batch that replace stored ones
    draw their slots against the scores the buffer holds once the batch's first samples have
    filled its free slots; where two of them take the same slot, the later one wins, as if they
    arrived one at a time. (One at a time, a replacement would also change the weights the next
    sample of the batch draws with: b of the capacity's scores, a small difference that the
    per-sample reference in `benchmarks/reference_buffers.py` keeps.)"""

    policy = "gss"
    options = GSSOptions
    score_input = "score"
    batch_score_input = "batch_score"

    def __init__(
        self, capacity: int, device: torch.device | str | None = None, seed: int = 0, retrieval: str = "uniform",
        pixel_fields: Sequence[str] = (),
    ) -> None:
        super().__init__(capacity, device=device, seed=seed, retrieval=retrieval, pixel_fields=pixel_fields)
        self.scores = np.zeros(capacity, dtype=np.float64)  # C_i of each occupied slot i
        self._incoming = np.empty(0, dtype=np.float64)
        self._batch_score: float | None = None

    def add(self, **batch: torch.Tensor) -> None:
        """Offer a batch of new samples; `score` (one per sample, 1 + the largest cosine similarity
        of its gradient with the compared stored samples', in [0, 2]) is read, not stored as a field.
        With `batch_score` (one value, the batch's own score), the batch is admitted by the
        batch-gated law (see the module)."""
        if self.score_input not in batch:
            raise ValueError(
                "the gss policy keeps samples by gradient score: add(..., score=...), one per sample "
                "(the replay methods compute them when --buffer_policy is gss)"
            )
        scores = _finite_scores(batch.pop(self.score_input), "gss scores")
        batch_score = batch.pop(self.batch_score_input, None)
        if batch_score is not None:
            batch_score = _finite_scores(batch_score, "a gss batch score")
            if batch_score.size != 1:
                raise ValueError(f"batch_score must be one value, got {batch_score.size}")
            batch_score = float(batch_score.reshape(()))
        count = next(iter(batch.values())).shape[0] if batch else 0
        if scores.shape != (count,):
            raise ValueError(f"score must hold one value per sample ({count}), got shape {scores.shape}")
        self._incoming, self._batch_score = scores, batch_score
        super().add(**batch)

    def _select_slots(self, batch: Mapping[str, torch.Tensor], count: int) -> tuple[np.ndarray, np.ndarray]:
        scores, stored, gate = self._incoming, self.scores, self._batch_score
        filling = min(count, self.capacity - self.size)
        positions = np.arange(filling, dtype=np.int64)
        slots = np.arange(self.size, self.size + filling, dtype=np.int64)
        stored[slots] = scores[:filling] if gate is None else gate
        self.size += filling
        if gate is None:
            candidates = filling + np.flatnonzero(scores[filling:] < 1)
        else:
            candidates = np.arange(filling, count if gate < 1 else filling, dtype=np.int64)
        if len(candidates):
            cumulative = np.cumsum(stored)
            total = cumulative[-1]
            if total > 0:
                draws = self._uniform(2 * len(candidates))
                chosen = np.searchsorted(cumulative, draws[: len(candidates)] * total, side="right")
                chosen = np.minimum(chosen, self.capacity - 1)  # a draw of exactly `total` by rounding
                held, offered = stored[chosen], scores[candidates]
                accept = draws[len(candidates):] * (held + offered) < held
                slots = np.concatenate([slots, chosen[accept]])
                positions = np.concatenate([positions, candidates[accept]])
                slots, positions = last_writer_wins(slots, positions)
        entering = scores[positions]
        if gate is not None:
            entering[positions < filling] = gate
        stored[slots] = entering
        return slots, positions

    def _extra_state(self) -> dict[str, Any]:
        return {"scores": self.scores.copy()}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.scores = np.asarray(state["scores"], dtype=np.float64).copy()


def _finite_scores(values: Any, what: str) -> np.ndarray:
    """`values` (a tensor or array-like) as float64 NumPy, refused unless finite and non-negative."""
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"{what} must be finite and non-negative (1 + a cosine similarity)")
    return array


class GSSAdmission:
    """What the gss policy is handed with new samples: "score", each sample's gradient compared
    with those of `--gss_compared` samples drawn uniformly from `buffer` (whatever the retrieval),
    as it holds them before this batch; with `--gss_batch_gate`, "batch_score" too, the gradient
    of the batch's mean loss compared with the same samples' (`FIRST_BATCH_SCORE` while nothing is
    stored). The gradients are the model's, which the buffer does not have: `scores(x, y,
    reference_x, reference_y, batch)` computes them (the scores, and with `batch` the batch's
    score; `sylvan.methods.parts.gradient_scores`)."""

    def __init__(self, buffer: GSSBuffer, options: GSSOptions, scores: GradientScores) -> None:
        self.buffer, self.options, self.scores = buffer, options, scores
        self.task_start: tuple[int, int] | None = None  # (seen, replaced) when a task began with a full buffer

    def extras(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        reference = self.buffer.uniform_sample(self.options.gss_compared) or {"x": x[:0], "y": y[:0]}
        compared = (x, y, reference["x"].to(x.device), reference["y"].to(y.device))
        if not self.options.gss_batch_gate:
            return {"score": self.scores(*compared, False)[0]}
        scores, batch_score = self.scores(*compared, True)
        if len(reference["x"]) == 0:
            batch_score = FIRST_BATCH_SCORE
        return {"score": scores, "batch_score": torch.tensor(batch_score, dtype=torch.float64)}

    def on_task_start(self) -> None:
        buffer = self.buffer
        full = buffer.capacity > 0 and buffer.is_full
        self.task_start = (buffer.seen, buffer.replaced) if full else None

    def on_task_end(self, task_id: int | None) -> None:
        """Warn when the memory, full from the task's start, took none of the task's samples:
        every new gradient (and, batch-gated, every batch's) was aligned with a compared one, so
        the memory stays as it was, whatever the stream brings (as with many compared samples)."""
        start, self.task_start = self.task_start, None
        buffer, options = self.buffer, self.options
        if start is None or buffer.replaced != start[1]:
            return
        offered = buffer.seen - start[0]
        if offered > 0:
            task = "" if task_id is None else f" {task_id}"
            warnings.warn(
                f"gss: the full buffer took none of the {offered:,} samples of task{task}: every "
                f"{'batch' if options.gss_batch_gate else 'sample'}'s gradient was aligned with one of the "
                f"{options.gss_compared} stored samples' it was compared with, so the memory does not change as the "
                "stream does (a smaller --gss_compared compares with fewer)",
                stacklevel=3,
            )

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
