"""Assumptions both branches of the tree share, as classes a method may target.

A setting of either branch, supervised or reinforcement learning, that provides an assumption
inherits its class first (`class IncrementalRLSetting(TaskBoundaries, ContinualRLSetting)`), so
that a method targeting the assumption (`target_setting = TaskBoundaries`) applies to every
setting, of both branches, that provides it, and only to those: `Method.is_applicable` stays
`issubclass`. An assumption class holds the knowledge flags it turns on and nothing else; it is
not a setting (no fields, no stages), and the tree's parent of a setting stays its setting base.
"""

from __future__ import annotations

from typing import ClassVar


class TaskBoundaries:
    """The method is told when each task starts and ends (`on_task_start`, `on_task_end`):
    class-incremental learning and below, incremental RL and below."""

    assumption_name: ClassVar[str] = "task boundaries"
    task_boundaries_known: ClassVar[bool] = True


class TaskLabels(TaskBoundaries):
    """Task boundaries, and the task's label with every training batch (or observation) and with
    every `predict` call: task-incremental learning and below, in both branches."""

    assumption_name: ClassVar[str] = "task labels"
    task_labels_at_train: ClassVar[bool] = True
    task_labels_at_test: ClassVar[bool] = True


ASSUMPTIONS: tuple[type, ...] = (TaskBoundaries, TaskLabels)

