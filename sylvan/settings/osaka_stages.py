"""The stages of an `osaka` run (`sylvan.run.loop`): the pre-training phase, then the stream cut
into `--stream_stages` stages, each checkpointed; every stream batch scored before the method
trains on it (predict-then-train, `sylvan.run.stream_meter`). The accuracy matrix holds, after each stage, the
predict-then-train accuracy of each mode over the stream so far (its columns are the modes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader

from sylvan.analysis.metrics import Results
from sylvan.minibatches import float_inputs
from sylvan.run.checkpoints import rng_states
from sylvan.run.evaluation import Evaluation
from sylvan.run.flop_count import FlopCount
from sylvan.run.loop import Stages, StageWork
from sylvan.run.stream_meter import StreamMeter, as_gathered
from sylvan.settings.data import osaka_streams
from sylvan.settings.data.osaka_streams import MODES, RowsDataset

if TYPE_CHECKING:
    from sylvan.run.context import RunContext


class OsakaStages(Stages):
    """The pools of `setting` (an `OsakaSetting`) loaded now (seeded), and its plans drawn."""

    whole_fits_counted = False  # meta-learners run many small steps of their own: sampled
    pixel_inputs = True

    def __init__(self, setting: Any) -> None:
        self.setting = setting
        pretraining_inputs, pretraining_pool, stream_inputs, stream_pools = setting.seeded_pools()
        self.generator_states = rng_states()
        n, k = setting.n_ways, setting.k_shots
        rows, labels = osaka_streams.plan_tasks(pretraining_pool, setting.pretraining_tasks, n, 2 * k, setting.seed)
        self.pretraining = RowsDataset(pretraining_inputs, rows, labels)
        self.plan = osaka_streams.plan_stream(stream_pools, setting.stream_steps, setting.stationarity,
                                              setting.resolved_mode_probabilities, n, k, setting.seed)
        self.stream_inputs = stream_inputs
        self.meter = StreamMeter(self.plan, MODES, setting.adaptation_window)
        self.nb_stages, self.nb_tasks = setting.stream_stages, len(MODES)

    def new_results(self, method: Any, initial: list[float] | None) -> Results:
        return Results(self.setting.name, method.name, accuracy_matrix=[], evaluation_split="stream")

    def initial_accuracies(self, method: Any) -> list[float] | None:
        return None  # there is nothing to score before the stream: its labels are the contexts'

    def stage_steps(self, stage: int) -> range:
        """The stream steps of training stage `stage`: an even cut, the remainder to the first."""
        base, extra = divmod(self.plan.steps, self.nb_stages)
        start = stage * base + min(stage, extra)
        return range(start, start + base + (1 if stage < extra else 0))

    def data(self) -> Iterator[range]:
        return (self.stage_steps(stage) for stage in range(self.nb_stages))

    def pretraining_loader(self) -> DataLoader:
        """The pre-training phase's tasks, one n-way 2k-shot batch each (the first k shots of each
        class to adapt on, the other k to evaluate on, for a meta-learner)."""
        size = self.setting.n_ways * 2 * self.setting.k_shots
        return DataLoader(self.pretraining, batch_size=size, shuffle=False, collate_fn=as_gathered,
                          pin_memory=self.setting.pins_batches)

    def fit(self, run: RunContext, method: Any, stage: int, data: range) -> StageWork:
        setting = self.setting
        samples = 0
        if stage == 0 and len(self.pretraining):
            method.pretrain(self.pretraining_loader())
            samples += len(self.pretraining)
        rows = self.plan.rows[data.start:data.stop]
        stream = RowsDataset(self.stream_inputs, rows, self.plan.labels[data.start:data.stop])
        loader = DataLoader(stream, batch_size=setting.n_ways * setting.k_shots, shuffle=False,
                            collate_fn=as_gathered, pin_memory=setting.pins_batches)
        run.online_meter = self.meter.for_stage(method, data)  # scores each batch as a step starts on it
        method.fit(loader, None)
        self.meter.score_rest(loader, data.start)
        if self.meter.next_step != data.stop:
            raise RuntimeError(f"{method.name} was scored on {self.meter.next_step - data.start} of the "
                               f"{len(data)} batches of stage {stage}")
        return StageWork(samples=samples + len(stream))

    def evaluate(self, method: Any, seen: int) -> Evaluation:
        """Each mode's predict-then-train accuracy over the stream so far (None for a mode not
        met yet); what `predict` costs, counted on one stream batch."""
        x = float_inputs(self.stream_inputs[self.plan.rows[0]])
        count = FlopCount()
        try:
            method.predict(x, None)
        finally:
            flops = count.stop()
        return Evaluation(self.meter.mode_accuracies(), None, None, flops / len(x))

    def record(self, results: Results) -> None:
        results.online_accuracy = self.meter.accuracy
        results.stream_accuracy = self.meter.summary()

    def resumed(self, results: Results) -> None:
        self.meter.restore(results.stream_accuracy)

    def skip(self, method: Any, data: Any) -> None:
        method.skip_stage([])
