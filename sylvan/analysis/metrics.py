"""Continual-learning metrics derived from the accuracy matrix, and the `Results` of a run.

`R[i, j]` is the accuracy on task j's test set after training on task i (rows: training
stages, columns: tasks). Settings that evaluate once (online, multi-task) have a single row.
Settings that evaluate the tasks seen so far only (the stream of datasets) leave the entries of
the tasks still to come None (NaN here): the metrics are over the entries measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Continual World's metrics of a success curve, in results.json and `--summarize`
CONTINUAL_WORLD_METRICS = ("cw_performance", "cw_forgetting", "cw_forward_transfer")


def _matrix(accuracy_matrix: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    matrix = np.asarray(accuracy_matrix, dtype=float)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(f"an accuracy matrix is 2-D and non-empty, got shape {matrix.shape}")
    return matrix


def final_average_accuracy(accuracy_matrix: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Mean accuracy over all tasks after the last training stage: mean_j R[T-1, j] (over the
    tasks measured then)."""
    last = _matrix(accuracy_matrix)[-1]
    return float(last[~np.isnan(last)].mean())


def average_incremental_accuracy(accuracy_matrix: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Mean over stages i of the mean accuracy on the tasks seen so far, R[i, :i+1] (iCaRL)."""
    matrix = _matrix(accuracy_matrix)
    if matrix.shape[0] == 1:
        return float(matrix[0].mean())
    return float(np.mean([matrix[i, : i + 1].mean() for i in range(matrix.shape[0])]))


def forgetting(accuracy_matrix: Sequence[Sequence[float]] | np.ndarray) -> float | None:
    """Average forgetting (Chaudhry et al. 2018): for each task but the last, the drop from its
    best accuracy at an earlier stage to its final accuracy. None with fewer than two stages."""
    matrix = _matrix(accuracy_matrix)
    stages = matrix.shape[0]
    if stages < 2:
        return None
    drops = [np.nanmax(matrix[: stages - 1, j]) - matrix[-1, j] for j in range(stages - 1)]
    return float(np.mean(drops))


def backward_transfer(accuracy_matrix: Sequence[Sequence[float]] | np.ndarray) -> float | None:
    """BWT (Lopez-Paz & Ranzato 2017): mean over j < T-1 of R[T-1, j] - R[j, j]."""
    matrix = _matrix(accuracy_matrix)
    stages = matrix.shape[0]
    if stages < 2:
        return None
    return float(np.mean([matrix[-1, j] - matrix[j, j] for j in range(stages - 1)]))


def forward_transfer(
    accuracy_matrix: Sequence[Sequence[float]] | np.ndarray, initial_accuracies: Sequence[float]
) -> float | None:
    """FWT (Lopez-Paz & Ranzato 2017): mean over j > 0 of R[j-1, j] - b_j, where b_j is the
    accuracy on task j of the model before any training."""
    matrix = _matrix(accuracy_matrix)
    stages = matrix.shape[0]
    if stages < 2:
        return None
    base = np.asarray(initial_accuracies, dtype=float)
    return float(np.mean([matrix[j - 1, j] - base[j] for j in range(1, stages)]))


def transfer_per_task(accuracy_matrix: Sequence[Sequence[float]] | np.ndarray,
                      independent_accuracies: Sequence[float]) -> list[float]:
    """Each task's forward transfer against an independent reference (CTrL, Veniat et al. 2021):
    R[j, j], the accuracy on task j after training on it at its place in the stream, minus the
    accuracy on task j of the same method trained on task j alone."""
    matrix = _matrix(accuracy_matrix)
    return [float(matrix[j, j] - reference) for j, reference in enumerate(independent_accuracies)]


@dataclass
class Results:
    """What a setting reports after running a method.

    `accuracy_matrix` is measured with exactly the information the setting allows (no task
    labels at test where they are hidden). Its entries are what `measure` names: a fraction of
    correct predictions ("accuracy", supervised settings), or a mean episode return ("return",
    reinforcement-learning settings); `results.json` names its keys after it.
    `task_aware_matrix`, where present, is the same evaluation with the scores restricted by the
    setting to the classes of the evaluated task ("task-IL" accuracy in the rehearsal papers);
    the method never sees the task label for it.
    """

    setting: str
    method: str
    accuracy_matrix: list[list[float]]
    initial_accuracies: list[float] | None = None
    task_aware_matrix: list[list[float]] | None = None
    # supervised settings: counts[true class][predicted class] over the test sets of every task at
    # the latest evaluation (predictions as the accuracy matrix scores them; a test set that
    # several tasks share counted once)
    confusion_matrix: list[list[int]] | None = None
    online_accuracy: float | None = None
    samples_seen: list[int] = field(default_factory=list)
    task_wall_time: list[float] = field(default_factory=list)
    task_train_time: list[float] = field(default_factory=list)
    total_wall_time: float = 0.0
    # seconds the first task waited for the workers to start and connect (distributed setting):
    # counted in its wall time, not in its training time
    worker_startup_time: float = 0.0
    peak_memory_mb: float | None = None
    method_runtime: dict[str, float] = field(default_factory=dict)  # the method's runtime_stats()
    # what each training stage cost (`sylvan.run.accounting`): its training FLOPs, the method's
    # inference FLOPs per sample after it, and what the method held after it
    training_flops: list[float] = field(default_factory=list)
    inference_flops_per_sample: list[float] = field(default_factory=list)
    network_bytes: list[int] = field(default_factory=list)
    kept_bytes: list[int] = field(default_factory=list)
    parameters: list[int] = field(default_factory=list)
    trained_parameters: list[int | None] = field(default_factory=list)
    complete: bool = True
    episodes_seen: list[int] = field(default_factory=list)  # RL: training episodes finished, per stage
    task_attributes: list[dict[str, float]] = field(default_factory=list)  # RL: each task's dynamics
    # RL, where the environments report success (Meta-World): S[i][j] the share of task j's evaluation
    # episodes that succeeded after stage i, beside the return matrix
    success_matrix: list[list[float]] | None = None
    # RL: the evaluations along the stream (every `--eval_every` steps and after every stage):
    # {"steps": [...], "return": [[each task's] per point], "success": the same, or None}; each task's
    # training span (start, end] in the stream's steps (None: all trained at once); and each task's
    # reference AUC (`sylvan.run.references`), for Continual World's metrics (`continual_world`)
    evaluation_curve: dict[str, Any] | None = None
    task_spans: list[list[int]] | None = None
    reference_auc: list[float | None] | None = None
    measure: str = "accuracy"  # what the matrix holds: "accuracy" (a fraction) or "return"
    # supervised settings: the split the matrix is measured on, "test" or "validation"
    evaluation_split: str = "test"
    # the method trained once, after the last stage, on every task's data (`Method.joint_training`):
    # the rows before the last are the untrained network's, so the metrics across stages are None
    joint_training: bool = False
    # the stream of datasets: each task's accuracy when the method is trained on it alone, the
    # reference of each task's forward transfer (`transfer_per_task`)
    independent_accuracies: list[float] | None = None
    # a stream with modes and switches (osaka): its predict-then-train accuracy per mode and over
    # the first steps after each switch, with the counts they are made of (`sylvan.run.stream_meter`)
    stream_accuracy: dict[str, Any] | None = None

    @property
    def has_cost(self) -> bool:
        """Whether the run recorded what its stages cost (`cost`): runs of an older sylvan did not."""
        return bool(self.network_bytes)

    @property
    def display_scale(self) -> float:
        """Factor from a matrix entry to how it is shown: accuracies in percent, returns as they are."""
        return 100.0 if self.measure == "accuracy" else 1.0

    @property
    def unit(self) -> str:
        return "%" if self.measure == "accuracy" else ""

    @property
    def nb_tasks(self) -> int:
        return len(self.accuracy_matrix[0]) if self.accuracy_matrix else 0

    @property
    def column_names(self) -> list[str]:
        """What the matrix's columns are: tasks T0, T1, ...; a stream's modes (`stream_accuracy`)."""
        if self.stream_accuracy is not None:
            return list(self.stream_accuracy["modes"])
        return [f"T{j}" for j in range(self.nb_tasks)]

    @property
    def final_average_accuracy(self) -> float:
        return final_average_accuracy(self.accuracy_matrix)

    def _across_stages(self, metric: Callable[..., float | None], *args: Any) -> float | None:
        """`metric` of the accuracy matrix, a metric across stages: None after joint training, and
        where the columns are a stream's modes rather than tasks learned one after the other."""
        if self.joint_training or self.stream_accuracy is not None:
            return None
        return metric(self.accuracy_matrix, *args)

    @property
    def average_incremental_accuracy(self) -> float | None:
        return self._across_stages(average_incremental_accuracy)

    @property
    def forgetting(self) -> float | None:
        return self._across_stages(forgetting)

    @property
    def backward_transfer(self) -> float | None:
        return self._across_stages(backward_transfer)

    @property
    def forward_transfer(self) -> float | None:
        """FWT against the untrained network; or, where each task has an independent reference
        (the stream of datasets), the mean of every task's transfer after the first."""
        if self.independent_accuracies is not None:
            per_task = self.forward_transfer_per_task or []
            return float(np.mean(per_task[1:])) if len(per_task) > 1 else None
        if self.initial_accuracies is None:
            return None
        return self._across_stages(forward_transfer, self.initial_accuracies)

    @property
    def forward_transfer_per_task(self) -> list[float] | None:
        if self.independent_accuracies is None or self.joint_training:
            return None
        return transfer_per_task(self.accuracy_matrix, self.independent_accuracies)

    @property
    def class_accuracies(self) -> list[float | None] | None:
        """Accuracy on each class's test samples at the latest evaluation (None for a class
        without any): in class-incremental learning, how far the latest classes are favoured."""
        if self.confusion_matrix is None:
            return None
        counts = np.asarray(self.confusion_matrix, dtype=np.int64)
        totals = counts.sum(axis=1)
        return [float(counts[c, c] / totals[c]) if totals[c] else None for c in range(len(counts))]

    @property
    def task_aware_accuracy(self) -> float | None:
        if self.task_aware_matrix is None:
            return None
        return final_average_accuracy(self.task_aware_matrix)

    def continual_world(self) -> dict[str, Any]:
        """Continual World's performance, forgetting and forward transfer of the success curve
        (`sylvan.analysis.continual_world`), with their values per task; {} where the
        environments report no success."""
        from sylvan.analysis.continual_world import continual_world_metrics

        curve = self.evaluation_curve
        if not curve or curve.get("success") is None or not curve["steps"]:
            return {}
        return continual_world_metrics(curve["steps"], curve["success"], self.task_spans, self.reference_auc)

    def summary(self) -> dict[str, float | None]:
        """The scalar metrics, in the order the console table prints them, named after the
        measure ("final_average_return", "online_return", ... for returns)."""
        return {key.replace("accuracy", self.measure): value for key, value in self._summary().items()
                if self.measure == "accuracy" or key != "task_aware_accuracy"}

    def _summary(self) -> dict[str, float | None]:
        return {
            "final_average_accuracy": self.final_average_accuracy,
            "average_incremental_accuracy": self.average_incremental_accuracy,
            "forgetting": self.forgetting,
            "backward_transfer": self.backward_transfer,
            "forward_transfer": self.forward_transfer,
            "task_aware_accuracy": self.task_aware_accuracy,
            "online_accuracy": self.online_accuracy,
        }

    def metrics_dict(self) -> dict[str, Any]:
        """Everything that depends only on the configuration and seed (no timings): the
        content of `results.json`, identical for two runs with the same seed."""
        if self.measure == "accuracy":
            matrices = {
                "accuracy_matrix": self.accuracy_matrix,
                "task_aware_matrix": self.task_aware_matrix,
                "initial_accuracies": self.initial_accuracies,
                "class_accuracies": self.class_accuracies,
                "confusion_matrix": self.confusion_matrix,
                **({} if self.independent_accuracies is None else {
                    "independent_accuracies": self.independent_accuracies,
                    "forward_transfer_per_task": self.forward_transfer_per_task,
                }),
            }
        else:  # "return_matrix", "initial_returns"; there is no task-aware figure
            matrices = {
                f"{self.measure}_matrix": self.accuracy_matrix,
                f"initial_{self.measure}s": self.initial_accuracies,
            }
        return {
            "setting": self.setting,
            "method": self.method,
            "measure": self.measure,
            **({"evaluation_split": self.evaluation_split} if self.measure == "accuracy" else {}),
            "complete": self.complete,
            "joint_training": self.joint_training,
            "nb_tasks": self.nb_tasks,
            **self.summary(),
            **matrices,
            "samples_seen": self.samples_seen,
            **({} if self.measure == "accuracy" else
               {"episodes_seen": self.episodes_seen, "task_attributes": self.task_attributes}),
            **({} if self.success_matrix is None else {
                "final_average_success": float(np.mean(self.success_matrix[-1])),
                "success_matrix": self.success_matrix}),
            **self.continual_world(),
            **({} if self.evaluation_curve is None else {
                "evaluation_curve": self.evaluation_curve, "task_spans": self.task_spans}),
            **({} if self.stream_accuracy is None else {"stream_accuracy": self.stream_accuracy}),
            **({"cost": self.cost()} if self.has_cost else {}),
        }

    def cost(self) -> dict[str, Any]:
        """What the run cost (`sylvan.run.accounting`): training FLOPs in all and per stage,
        inference FLOPs per sample after the last stage (and each), and, in bytes, what the
        method held after the last stage: its network, what it keeps beyond it, and both."""
        return {
            "training_flops": sum(self.training_flops),
            "inference_flops_per_sample": self.inference_flops_per_sample[-1],
            "memory_bytes": self.network_bytes[-1] + self.kept_bytes[-1],
            "network_bytes": self.network_bytes[-1],
            "kept_bytes": self.kept_bytes[-1],
            "parameters": self.parameters[-1],
            "per_stage": {
                "training_flops": self.training_flops,
                "inference_flops_per_sample": self.inference_flops_per_sample,
                "network_bytes": self.network_bytes,
                "kept_bytes": self.kept_bytes,
                "parameters": self.parameters,
                "trained_parameters": self.trained_parameters,
            },
        }

    def runtime_dict(self) -> dict[str, Any]:
        """Timings and memory, which vary from run to run: the content of `runtime.json`."""
        return {
            "task_wall_time": self.task_wall_time,
            "task_train_time": self.task_train_time,
            "total_wall_time": self.total_wall_time,
            "worker_startup_time": self.worker_startup_time,
            "peak_memory_mb": self.peak_memory_mb,
            "method_runtime": self.method_runtime,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.metrics_dict(), **self.runtime_dict()}

    def table(self) -> str:
        """A readable per-task table and the summary metrics, for the console."""
        matrix = self.display_scale * np.asarray(self.accuracy_matrix, dtype=float)
        stages, tasks = matrix.shape
        widths = [max(7, len(name)) for name in self.column_names]
        header = ("after task | " + " ".join(f"{name:<{width}}" for name, width in zip(self.column_names, widths))
                  + " |    mean | time (s)")
        split = " (on the validation split)" if self.evaluation_split == "validation" else ""
        lines = [f"{self.method} on {self.setting}{split}", header, "-" * len(header)]
        for i in range(stages):
            label = "end" if stages == 1 else str(i)
            # the tasks seen so far; a stream's modes met so far
            seen = matrix[i] if stages == 1 or self.stream_accuracy is not None else matrix[i, : i + 1]
            cells = " ".join(f"{'-':>{width}}" if np.isnan(a) else f"{a:{width}.2f}"
                             for a, width in zip(matrix[i], widths))
            time_cell = f"{self.task_wall_time[i]:8.1f}" if i < len(self.task_wall_time) else ""
            lines.append(f"{label:>10} | {cells} | {np.nanmean(seen):7.2f} | {time_cell}")
        lines.append("")
        if self.joint_training:
            lines.append("joint training: nothing was trained before the last stage, so the metrics across "
                         "stages (average incremental accuracy, forgetting, transfer) are left out")
        if self.stream_accuracy is not None:
            lines += stream_lines(self.stream_accuracy)
        for key, value in self.summary().items():
            if value is not None:
                lines.append(f"{key.replace('_', ' '):>30}: {self.display_scale * value:7.2f}")
        for key, value in self.continual_world().items():
            if key in CONTINUAL_WORLD_METRICS and value is not None:  # success rates, as Continual World shows them
                lines.append(f"{key.replace('cw_', 'CW ').replace('_', ' '):>30}: {value:7.2f}")
        lines.append(f"{'samples seen' if self.measure == 'accuracy' else 'environment steps':>30}: "
                     f"{sum(self.samples_seen)}")
        lines.append(f"{'wall time':>30}: {self.total_wall_time:.1f} s")
        if self.peak_memory_mb is not None:
            lines.append(f"{'peak memory':>30}: {self.peak_memory_mb:.0f} MB")
        if self.has_cost:
            cost = self.cost()
            lines.append(f"{'training compute':>30}: {cost['training_flops'] / 1e9:.3g} GFLOP")
            lines.append(f"{'inference compute':>30}: {cost['inference_flops_per_sample'] / 1e6:.3g} MFLOP per sample")
            lines.append(f"{'memory kept':>30}: {cost['memory_bytes'] / 2**20:.3g} MiB "
                         f"(network {cost['network_bytes'] / 2**20:.3g}, beyond it {cost['kept_bytes'] / 2**20:.3g})")
        return "\n".join(lines)


def stream_lines(stream: dict[str, Any]) -> list[str]:
    """The console lines of a stream's predict-then-train accuracy (`Results.stream_accuracy`):
    per mode, the columns above; here, over the steps that follow a switch's first batch."""
    window = len(next(iter(stream["after_switch_per_mode"].values())))
    cells = ", ".join(f"{mode} {'-' if value is None else f'{100 * value:.2f}'}"
                      for mode, value in stream["adaptation_per_mode"].items())
    return [f"predict-then-train accuracy on steps 1 to {window - 1} after a switch: {cells}"]
