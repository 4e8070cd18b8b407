"""PNG plots of a run's results: the accuracy-matrix heatmap, the accuracy-vs-tasks curve, the
confusion matrix of the last evaluation, a stream's accuracy after its switches, and an RL run's
success (or return) per task along the stream.

The figures are matplotlib `Figure` objects drawn by the Agg canvas directly, not through pyplot:
pyplot would choose a backend for the whole process (a user's notebook included) and keep every
figure in its registry until closed, and importing it costs a run about 0.15 s more."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sylvan.analysis.metrics import Results

MARGINS = (0.85, 0.25, 0.65, 0.45)  # left, right, bottom, top, in inches: room for the labels and the title


def _saved(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG at `path`, with fixed margins: fitting them to the labels
    (`tight_layout`) draws the figure once more, about half of what drawing the plots costs."""
    width, height = fig.get_size_inches()
    left, right, bottom, top = MARGINS
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    fig.savefig(path, dpi=100)
    return path


def _label(results: Results) -> str:
    return "accuracy (%)" if results.measure == "accuracy" else f"mean episode {results.measure}"


def plot_accuracy_matrix(results: Results, path: Path) -> Path:
    """Heatmap of R[i, j] (accuracy on task j after training stage i, in %; or mean return)."""
    matrix = results.display_scale * np.asarray(results.accuracy_matrix, dtype=float)
    stages, tasks = matrix.shape
    fig = Figure(figsize=(1.0 + 0.8 * tasks, 1.0 + 0.7 * stages))
    ax = fig.subplots()
    low, high = (0.0, 100.0) if results.measure == "accuracy" else (float(matrix.min()), float(matrix.max()))
    image = ax.imshow(matrix, vmin=low, vmax=high, cmap="viridis")
    for i in range(stages):
        for j in range(tasks):
            if np.isnan(matrix[i, j]):  # a task still to come, not evaluated
                continue
            light = (matrix[i, j] - low) < 0.6 * (high - low)
            ax.text(j, i, f"{matrix[i, j]:.0f}", ha="center", va="center",
                    color="white" if light else "black", fontsize=8)
    ax.set_xticks(range(tasks), results.column_names)
    ax.set_yticks(range(stages), [str(i) for i in range(stages)] if stages > 1 else ["end"])
    ax.set_xlabel("evaluated task" if results.stream_accuracy is None else "mode (predict-then-train, so far)")
    ax.set_ylabel("after training stage")
    ax.set_title(f"{results.method} on {results.setting}")
    fig.colorbar(image, ax=ax, label=_label(results))
    return _saved(fig, path)


def plot_accuracy_curve(results: Results, path: Path) -> Path:
    """Average accuracy (or return) on the tasks seen so far, and on all tasks, after each stage."""
    matrix = results.display_scale * np.asarray(results.accuracy_matrix, dtype=float)
    stages = matrix.shape[0]
    x = np.arange(1, stages + 1)
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    if stages > 1 and results.stream_accuracy is None:  # a stream's columns are its modes, all met from the start
        ax.plot(x, [matrix[i, : i + 1].mean() for i in range(stages)], marker="o", label="tasks seen")
    if results.stream_accuracy is not None:  # the modes met so far
        ax.plot(x, np.nanmean(matrix, axis=1), marker="s", label="mean over the modes")
    elif not np.isnan(matrix).any():  # every task evaluated after every stage
        ax.plot(x, matrix.mean(axis=1), marker="s", label="all tasks")
    ax.set_xlabel("end of stream" if stages == 1 else "tasks trained on" if results.stream_accuracy is None
                  else "stream stages")
    ax.set_xticks(x)
    ax.set_ylabel(_label(results))
    if results.measure == "accuracy":
        ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{results.method} on {results.setting}")
    return _saved(fig, path)


def plot_confusion_matrix(results: Results, path: Path) -> Path:
    """Heatmap of the latest evaluation's predictions: for each true class (row), the share of
    its test samples predicted as each class (column), in %. In class-incremental learning the
    columns of the latest classes light up where the older classes are forgotten."""
    counts = np.asarray(results.confusion_matrix, dtype=float)
    classes = len(counts)
    shares = 100.0 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    side = min(2.0 + 0.35 * classes, 12.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.subplots()
    image = ax.imshow(shares, vmin=0.0, vmax=100.0, cmap="viridis", interpolation="nearest")
    if classes <= 20:
        for i in range(classes):
            for j in range(classes):
                if counts[i, j]:
                    ax.text(j, i, f"{shares[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if shares[i, j] < 60 else "black")
        ax.set_xticks(range(classes))
        ax.set_yticks(range(classes))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{results.method} on {results.setting}: predictions at the end")
    fig.colorbar(image, ax=ax, label="share of the class's test samples (%)")
    return _saved(fig, path)


def plot_adaptation(results: Results, path: Path) -> Path:
    """A stream's predict-then-train accuracy at each step after a switch (step 0: the switch's
    batch, predicted before anything of the new context is learned), one line per mode."""
    stream = results.stream_accuracy
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for mode, curve in stream["after_switch_per_mode"].items():
        steps = [step for step, value in enumerate(curve) if value is not None]
        ax.plot(steps, [100 * curve[step] for step in steps], marker="o", label=mode)
    ax.set_xticks(range(len(next(iter(stream["after_switch_per_mode"].values())))))
    _accuracy_by_mode_axes(ax, "steps after a switch", f"{results.method} on {results.setting}")
    return _saved(fig, path)


def plot_stream_accuracy(results: Results, path: Path) -> Path:
    """A stream's predict-then-train accuracy along it, one line per mode: each point a stretch of
    the stream's steps (`over_stream`), at the stretch's last step; a mode absent from a stretch
    leaves a gap."""
    stream = results.stream_accuracy
    over = stream["over_stream"]
    ends = over["stretch_ends"]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for mode, curve in over["accuracy_per_mode"].items():
        ax.plot(ends, [np.nan if value is None else 100 * value for value in curve], marker=".", label=mode)
    _accuracy_by_mode_axes(ax, "stream step", f"{results.method} on {results.setting}: predict-then-train accuracy")
    return _saved(fig, path)


def _accuracy_by_mode_axes(ax: Any, xlabel: str, title: str) -> None:
    """The labels, range, grid, legend and title of a plot of accuracies, a line per mode."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)


def plot_evaluation_curve(results: Results, path: Path, reference: float | None = None) -> Path:
    """Each task's success (where the environments report it; else its return) at every point of
    the evaluation curve along the stream, each task's training span shaded (Continual World's
    figure); `reference`, where given, a horizontal line (multi-task training's performance)."""
    curve = results.evaluation_curve or {}
    measured = "success" if curve.get("success") is not None else "return"
    values = np.asarray(curve[measured], dtype=float)
    steps = np.asarray(curve["steps"])
    fig = Figure(figsize=(7.5, 3.8))
    ax = fig.subplots()
    colours = [f"C{j % 10}" for j in range(values.shape[1])]
    for j, span in enumerate(results.task_spans or []):
        ax.axvspan(*span, color=colours[j], alpha=0.08, linewidth=0)
    for j in range(values.shape[1]):
        ax.plot(steps, values[:, j], color=colours[j], linewidth=1.2, label=results.column_names[j])
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=1, label="multi-task")
    ax.set_xlabel("environment steps of the stream")
    ax.set_ylabel("success rate" if measured == "success" else "mean episode return")
    if measured == "success":
        ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{results.method} on {results.setting}")
    ax.legend(fontsize=6, ncol=1 + values.shape[1] // 5, loc="best", framealpha=0.7)
    return _saved(fig, path)


def plots_of(results: Results) -> list[tuple[str, Callable[[Results, Path], Path]]]:
    """The figures that describe a run, by file name (without .png): its accuracy matrix and the
    curve of its average over the stages, the confusion matrix where it was measured; for a
    stream scored batch after batch (`osaka`), the accuracy along the stream per mode and after a
    switch instead, its matrix being one row per checkpointed stretch of modes."""
    if results.stream_accuracy is not None:
        drawn = [("adaptation", plot_adaptation)]
        if "over_stream" in results.stream_accuracy:  # (not in runs recorded before it was counted)
            drawn.insert(0, ("stream_accuracy", plot_stream_accuracy))
        return drawn
    drawn = [("accuracy_matrix", plot_accuracy_matrix), ("accuracy_curve", plot_accuracy_curve)]
    if results.confusion_matrix is not None:
        drawn.append(("confusion_matrix", plot_confusion_matrix))
    if results.evaluation_curve and len(results.evaluation_curve["steps"]) > 1:
        drawn.append(("evaluation_curve", plot_evaluation_curve))
    return drawn
