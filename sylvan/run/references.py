"""Reference runs of reinforcement-learning tasks (`--reference_dir`): the evaluation curve of an
agent trained on one task alone (`traditional_rl --task k`), stored once per task, seed and
configuration, and read by the runs of any RL setting on the same tasks for each task's forward
transfer (Continual World's, `sylvan.analysis.continual_world`).

A reference matches a task of another run where everything that makes its curve is the same: the
task's environment and attribute values, the seed, the steps per task, the evaluation's interval,
episodes and episode limit, and the agent with its options (for a continual-learning method on an
agent, `ewc` on `sac`, the agent alone: the reference is the agent fine-tuning on the task), but
those that act across tasks (`ACROSS_TASKS`: the heads per task, the resets at a task's start, the
replay memory's policy and size, which Continual World sets per method while its reference is one
single-task SAC).
Its file is named after the task and seed and holds that description beside the curve, so that a
folder of references can be read and shared as it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from sylvan.analysis.continual_world import training_auc
from sylvan.analysis.metrics import Results
from sylvan.errors import ConfigurationError

# agent options a run of one task alone does not need to share with the runs it is the reference of
ACROSS_TASKS = frozenset({"multihead", "reset_on_task", "buffer_policy", "buffer_size"})


def learning_agent(method: Any) -> Any:
    """The agent that learns in `method`: the agent of a method applied to one, else the method."""
    components = getattr(method, "components", None)
    return components[1] if components is not None else method


def reference_description(setting: Any, method: Any, task: int) -> dict[str, Any]:
    """What makes the reference curve of task `task` (an index of the sequence) for this run."""
    agent = learning_agent(method)
    options = ({option.name: getattr(agent, option.name) for option in fields(agent) if option.name not in ACROSS_TASKS}
               if is_dataclass(agent) else {})
    return {
        "env": setting.sequence_envs()[task],
        "attributes": setting.sequence_values()[task],
        "seed": setting.seed,
        "steps_per_task": setting.steps_per_task,
        "eval_every": setting.eval_every,
        "eval_episodes": setting.eval_episodes,
        "max_episode_steps": setting.max_episode_steps,
        "agent": agent.name,
        "agent_options": json.loads(json.dumps(options, sort_keys=True, default=str)),
    }


def reference_path(setting: Any, method: Any, task: int) -> Path:
    """The file of task `task`'s reference for this run in `--reference_dir`."""
    description = reference_description(setting, method, task)
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:12]
    name = description["env"].replace("/", "-")
    return Path(setting.reference_dir).expanduser() / f"{name}-task{task}-seed{setting.seed}-{digest}.json"


def store_reference(setting: Any, method: Any, results: Results) -> Path:
    """Write a `traditional_rl` run's curve as the reference of its task; the path."""
    task = setting.stream_task_ids()[0]
    curve = results.evaluation_curve or {}
    if curve.get("success") is None:
        raise ConfigurationError(
            f"--reference_dir: the environment of task {task} ({setting.sequence_envs()[task]}) reports no success; "
            "Continual World's forward transfer is measured on success rates"
        )
    path = reference_path(setting, method, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    auc = training_auc(curve["steps"], curve["success"], [[0, setting.steps_per_task]])[0]
    record = {"description": reference_description(setting, method, task), "training_auc": auc, "curve": curve}
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=1))
    partial.replace(path)  # whole or absent: a reader never sees half a file
    return path


def reference_auc(setting: Any, method: Any) -> list[float | None]:
    """Each task of the stream's reference AUC from `--reference_dir`; refused, naming the files,
    where one is missing."""
    paths = [reference_path(setting, method, task) for task in setting.stream_task_ids()]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise ConfigurationError(
            f"--reference_dir {setting.reference_dir}: no reference run for {len(missing)} of the tasks "
            f"({', '.join(path.name for path in missing)}); make each with a traditional_rl run of "
            f"{learning_agent(method).name} with the same options and seed and --task k (benchmarks/continual_world.py "
            "makes them), or leave --reference_dir out"
        )
    return [float(json.loads(path.read_text())["training_auc"]) for path in paths]
