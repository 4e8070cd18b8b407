"""The tree of settings. Importing this package registers every built-in setting."""

from __future__ import annotations

from sylvan.settings.base import SETTINGS, Setting, get_setting
from sylvan.settings.class_incremental import ClassIncrementalSetting
from sylvan.settings.continual_rl import ContinualRLSetting
from sylvan.settings.data.datasets import DATASETS, DatasetSpec, get_dataset, register_dataset
from sylvan.settings.data.image_folders import image_folder_dataset
from sylvan.settings.dataset_stream import DatasetStreamSetting
from sylvan.settings.distributed import DistributedSetting
from sylvan.settings.domain_incremental import DomainIncrementalSetting
from sylvan.settings.incremental_rl import IncrementalRLSetting
from sylvan.settings.multi_task import MultiTaskSetting
from sylvan.settings.multi_task_rl import MultiTaskRLSetting
from sylvan.settings.online import OnlineSetting
from sylvan.settings.osaka import OsakaSetting
from sylvan.settings.task_incremental import TaskIncrementalSetting
from sylvan.settings.task_incremental_rl import TaskIncrementalRLSetting
from sylvan.settings.traditional_rl import TraditionalRLSetting

__all__ = [
    "DATASETS",
    "SETTINGS",
    "ClassIncrementalSetting",
    "ContinualRLSetting",
    "DatasetSpec",
    "DatasetStreamSetting",
    "DistributedSetting",
    "DomainIncrementalSetting",
    "IncrementalRLSetting",
    "MultiTaskRLSetting",
    "MultiTaskSetting",
    "OnlineSetting",
    "OsakaSetting",
    "Setting",
    "TaskIncrementalRLSetting",
    "TaskIncrementalSetting",
    "TraditionalRLSetting",
    "get_dataset",
    "get_setting",
    "image_folder_dataset",
    "register_dataset",
]
