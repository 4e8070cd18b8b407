"""`--buffer_policy gss` on the replay methods: each new sample reaches the buffer with the score
of its gradient against `gss_compared` stored samples drawn uniformly, and the methods run with it
(GSS itself being `rehearsal --buffer_policy gss`)."""

from __future__ import annotations

import warnings

import pytest
import torch

from sylvan.buffers import GSSOptions
from sylvan.buffers.gss import FIRST_BATCH_SCORE
from sylvan.errors import ConfigurationError
from sylvan.methods import DER, MIR, Batch, Rehearsal
from sylvan.methods.parts.gradient_scores import NO_REFERENCE_SCORE, gradient_scores, gradient_scores_with_batch
from sylvan.settings import ClassIncrementalSetting, OnlineSetting

DIGITS = dict(dataset="digits", nb_tasks=5, batch_size=10, progress_bar=False)


def batch_of(labels: list[int], seed: int) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels)
    return Batch(torch.rand(len(y), 1, 8, 8, generator=generator), y)


class ScoreSpy(Rehearsal):
    """Rehearsal that records the fields each `remember` hands the buffer."""

    def configure(self, run) -> None:
        super().configure(run)
        self.offered: list[dict[str, torch.Tensor]] = []
        add = self.buffer.add

        def recording_add(**fields):
            self.offered.append({name: values.clone() for name, values in fields.items()})
            add(**fields)

        self.buffer.add = recording_add


def test_each_sample_is_offered_with_its_gradient_score_against_uniformly_drawn_stored_samples():
    method = ScoreSpy(buffer_size=6, buffer_policy="gss",
                      buffer_options=GSSOptions(gss_compared=4), buffer_retrieval="grasp")
    method.configure(OnlineSetting(**DIGITS))
    first = batch_of([0, 1, 2, 3, 4, 5, 6], seed=0)
    method.remember(method.stored_fields(first))
    method.after_step()
    assert method.offered[0]["score"].tolist() == [NO_REFERENCE_SCORE] * 7  # nothing stored to compare with

    second = batch_of([7, 8, 9], seed=1)
    state = method.buffer.generator.get_state()
    reference_slots = method.buffer._choose(len(method.buffer), 4)  # the draw `remember` makes next
    reference = method.buffer.gather(reference_slots)
    method.buffer.generator.set_state(state)
    expected = gradient_scores(method.model, second.x, second.y, reference["x"], reference["y"])
    method.remember(method.stored_fields(second))
    method.after_step()
    torch.testing.assert_close(method.offered[1]["score"], expected)
    assert not torch.allclose(expected, torch.full_like(expected, NO_REFERENCE_SCORE))
    assert "score" not in method.buffer.storage  # read by the policy, not stored as a field


def test_with_the_batch_gate_each_batch_is_offered_with_its_own_score_too():
    method = ScoreSpy(buffer_size=6, buffer_policy="gss",
                      buffer_options=GSSOptions(gss_compared=4, gss_batch_gate=True))
    method.configure(OnlineSetting(**DIGITS))
    first = batch_of([0, 1, 2, 3], seed=0)
    method.remember(method.stored_fields(first))
    method.after_step()
    assert float(method.offered[0]["batch_score"]) == FIRST_BATCH_SCORE  # compared with nothing: the code's 0.1
    assert method.buffer.scores[:4].tolist() == [FIRST_BATCH_SCORE] * 4  # filling: the batch's score

    second = batch_of([7, 8, 9], seed=1)
    state = method.buffer.generator.get_state()
    reference = method.buffer.gather(method.buffer._choose(len(method.buffer), 4))
    method.buffer.generator.set_state(state)
    scores, batch_score = gradient_scores_with_batch(method.model, second.x, second.y, reference["x"], reference["y"])
    method.remember(method.stored_fields(second))
    method.after_step()
    torch.testing.assert_close(method.offered[1]["score"], scores)
    assert float(method.offered[1]["batch_score"]) == pytest.approx(batch_score)
    assert method.buffer.scores[4:6].tolist() == pytest.approx([batch_score] * 2)
    assert "batch_score" not in method.buffer.storage


def test_samples_wait_for_the_optimizer_step_and_are_scored_at_the_weights_it_left():
    """As in GSS's published code, a batch is scored after the step that trained on it: scores
    computed in the training step itself would compare gradients the step has not yet followed."""

    class StepWatcher(Rehearsal):
        def training_step(self, batch):
            self.weights_in_step = self.model.classifier.weight.detach().clone()
            return super().training_step(batch)

        def configure(self, run):
            super().configure(run)
            extras = self.admission.extras

            def watched(x, y):
                self.scored_after_step.append(not torch.equal(self.model.classifier.weight, self.weights_in_step))
                return extras(x, y)

            self.admission.extras = watched

    method = StepWatcher(buffer_size=30, buffer_policy="gss", replay_size=5)
    method.scored_after_step = []
    setting = ClassIncrementalSetting(**{**DIGITS, "nb_tasks": 2, "batch_size": 32})
    results = setting.apply(method)
    assert method.scored_after_step and all(method.scored_after_step)
    assert method.buffer.seen == sum(results.samples_seen) and not method._unscored

    held = Rehearsal(buffer_size=6, buffer_policy="gss")
    held.configure(OnlineSetting(**DIGITS))
    held.remember(held.stored_fields(batch_of([0, 1, 2], seed=0)))
    assert len(held.buffer) == 0  # held until the step
    held.on_task_end(0)  # a task's end stores what is still held
    assert len(held.buffer) == 3


def test_the_batch_gated_gss_runs_and_keeps_the_first_batch():
    """On a stream, most of the first batch's samples (score 0.1) outlast it, as in the paper's code."""
    method = Rehearsal(buffer_size=30, buffer_policy="gss", replay_size=5,
                       buffer_options=GSSOptions(gss_batch_gate=True))
    setting = ClassIncrementalSetting(**{**DIGITS, "nb_tasks": 2, "batch_size": 32})
    results = setting.apply(method)
    assert results.complete and method.buffer.seen == sum(results.samples_seen)
    scores = method.buffer.scores[:30]
    assert (scores == FIRST_BATCH_SCORE).sum() >= 20 and (scores != FIRST_BATCH_SCORE).any()


@pytest.mark.parametrize("method_cls", [Rehearsal, DER, MIR])
def test_replay_methods_run_with_the_gss_policy(method_cls):
    method = method_cls(buffer_size=30, buffer_policy="gss", replay_size=5)
    setting = ClassIncrementalSetting(**{**DIGITS, "nb_tasks": 2, "batch_size": 32})
    results = setting.apply(method)
    buffer = method.buffer
    assert len(buffer) == 30 and buffer.seen == sum(results.samples_seen)
    scores = buffer.scores[:30]
    assert ((scores >= 0) & (scores <= 2)).all() and (scores < 1).any()  # computed, not a constant
    assert len(buffer.class_counts()) > 2  # the second task's samples did replace some of the first's


def test_gss_options_are_checked_and_refused_without_the_gss_policy():
    with pytest.raises(ConfigurationError, match="gss_compared"):
        Rehearsal(buffer_policy="gss", buffer_options=GSSOptions(gss_compared=0))
    with pytest.raises(ConfigurationError, match="--gss_compared 5 has no effect: it is the gss policy's"):
        Rehearsal(buffer_policy="reservoir", buffer_options=GSSOptions(gss_compared=5))
    with pytest.raises(ConfigurationError, match="--gss_batch_gate True has no effect: it is the gss policy's"):
        Rehearsal(buffer_policy="reservoir", buffer_options=GSSOptions(gss_batch_gate=True))
    assert Rehearsal(buffer_policy="reservoir", buffer_options=GSSOptions()).buffer_options is None  # defaults
    assert Rehearsal(buffer_policy="gss").buffer_options == GSSOptions()


def test_on_data_parallel_settings_the_scores_reach_the_local_buffer_through_the_global_replay(monkeypatch):
    from sylvan.buffers.global_replay import GlobalReplay
    from sylvan.settings import DistributedSetting
    from tests.conftest import tiny_options

    offered: list[set[str]] = []
    insert = GlobalReplay.insert

    def recorded_insert(self, fields):
        offered.append(set(fields))
        return insert(self, fields)

    monkeypatch.setattr(GlobalReplay, "insert", recorded_insert)
    setting = DistributedSetting(**tiny_options(DistributedSetting), batch_size=8)
    method = Rehearsal(buffer_size=30, replay_size=4, buffer_policy="gss")
    assert setting.apply(method).complete
    assert offered and all("score" in fields for fields in offered)
    assert method.replays_globally and len(method.buffer) == 30
    assert (method.buffer.scores[:30] != NO_REFERENCE_SCORE).any()


@pytest.mark.parametrize("gated", [False, True])
def test_a_full_memory_that_takes_nothing_for_a_whole_task_is_reported(monkeypatch, gated):
    """Every sample aligned with a compared one (score 2): once full, the memory never changes,
    and the end of each such task says so; a memory that does change says nothing."""
    monkeypatch.setattr("sylvan.methods.parts.admission.gradient_scores",
                        lambda model, x, *rest: torch.full((len(x),), 2.0))
    monkeypatch.setattr("sylvan.methods.parts.admission.gradient_scores_with_batch",
                        lambda model, x, *rest: (torch.full((len(x),), 2.0), 2.0))
    method = Rehearsal(buffer_size=20, buffer_policy="gss", replay_size=5,
                       buffer_options=GSSOptions(gss_batch_gate=gated))
    setting = ClassIncrementalSetting(**{**DIGITS, "nb_tasks": 3, "batch_size": 32})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setting.apply(method)
    reports = [str(w.message) for w in caught if str(w.message).startswith("gss:")]
    assert len(reports) == 2  # task 0 filled the buffer; tasks 1 and 2 brought nothing in
    assert "samples of task 1:" in reports[0] and "samples of task 2:" in reports[1]
    assert f"every {'batch' if gated else 'sample'}'s gradient was aligned" in reports[0]
    assert method.buffer.replaced == 0


def test_a_memory_that_turns_over_is_not_reported(recwarn):
    method = Rehearsal(buffer_size=30, buffer_policy="gss", replay_size=5)
    ClassIncrementalSetting(**{**DIGITS, "nb_tasks": 2, "batch_size": 32}).apply(method)
    assert method.buffer.replaced > 0
    assert not [w for w in recwarn if "gss:" in str(w.message)]
