"""Data parallelism as a capability: `--devices 2 --accelerator cpu` runs every supervised setting
on two worker processes (gloo), with the replay methods drawing from the union of both workers'
buffers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from sylvan.buffers.channel import LocalReplay
from sylvan.errors import ConfigurationError
from sylvan.methods import Naive, Rehearsal
from sylvan.parallel.data_parallel import DataParallel
from sylvan.parallel.health import planned_workers, worker_rank
from sylvan.run.context import RunContext
from sylvan.run.sharded_evaluation import summed_online_counts
from sylvan.settings import SETTINGS, ClassIncrementalSetting, OnlineSetting
from tests.cli.test_cli import sylvan
from tests.gloo_workers import results_on_two_workers

DIGITS = ["--dataset", "digits", "--progress_bar", "false", "--seed", "0", "--accelerator", "cpu"]


def run_twice(tmp_path, setting: str, *options: str) -> tuple[dict, dict, dict]:
    """Rehearsal on `setting` in one process and on two workers: both results, and the two
    workers' runtime report."""
    for name, devices in (("one", "1"), ("two", "2")):
        out = sylvan("--setting", setting, "--method", "rehearsal", "--devices", devices, *DIGITS, *options,
                     "--results_dir", str(tmp_path), "--run_name", name)
        assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"], "only worker 0 writes"
    one, two = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    runtime = json.loads((tmp_path / "two" / "runtime.json").read_text())
    return one, two, runtime


def check_data_parallel_run(one: dict, two: dict, runtime: dict, minimum: float) -> None:
    assert two["complete"] and len(two["accuracy_matrix"]) == len(one["accuracy_matrix"])
    assert two["samples_seen"] == one["samples_seen"], "the workers together see every sample once per epoch"
    # the evaluation is split across the workers and summed: every test sample counted once
    assert [sum(row) for row in two["confusion_matrix"]] == [sum(row) for row in one["confusion_matrix"]]
    assert two["final_average_accuracy"] > minimum
    assert runtime["method_runtime"]["replay_steps"] > 0, "every step drew from the union of the workers' buffers"
    assert runtime["worker_startup_time"] > 0
    assert "replay_steps" not in json.dumps(one.get("method_runtime", {}))
    # what the run cost: every worker's training FLOPs summed, about one process's (a step replays
    # as many samples whatever the batch's share), and the same network and buffer on each
    one_flops, two_flops = one["cost"]["training_flops"], two["cost"]["training_flops"]
    assert 0.8 < two_flops / one_flops < 1.6
    assert two["cost"]["network_bytes"] == one["cost"]["network_bytes"]


def test_online_runs_on_two_workers_with_global_replay(tmp_path):
    """One pass over the stream, split between the workers in stream order; the predict-then-train
    accuracy counts both workers' shards of it."""
    one, two, runtime = run_twice(tmp_path, "online")
    check_data_parallel_run(one, two, runtime, minimum=0.6)
    assert 0.3 < two["online_accuracy"] < 1  # from half the steps of one process: fewer updates, lower


def counting_worker(rank: int) -> list[int]:
    meter = SimpleNamespace(correct=rank + 1, total=10 * (rank + 1))  # what each worker's shard scored
    summed_online_counts(meter, DataParallel(2, 1, 60.0, "cpu").workers)
    return [meter.correct, meter.total]


def test_the_online_accuracy_counts_every_workers_shard_of_the_stream(tmp_path):
    assert results_on_two_workers(counting_worker, tmp_path) == [[3, 30], [3, 30]]


@pytest.mark.slow
@pytest.mark.parametrize(("setting", "minimum"), [
    ("class_incremental", 0.6),
    ("domain_incremental", 0.6),
    ("task_incremental", 0.9),
    ("multi_task", 0.9),
])
def test_every_supervised_setting_runs_on_two_workers_with_global_replay(tmp_path, setting, minimum):
    """Two workers see every training sample once per epoch, score every test sample once, and
    replay from the union of their buffers (checked against the setting's own tasks, in-process)."""
    out = sylvan("--setting", setting, "--method", "rehearsal", "--devices", "2", "--epochs", "2", *DIGITS,
                 "--results_dir", str(tmp_path), "--run_name", "two")
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    runtime = json.loads((tmp_path / "two" / "runtime.json").read_text())
    options = dict(dataset="digits", epochs=2, seed=0, accelerator="cpu", progress_bar=False)
    tasks = SETTINGS[setting](**options).prepare_tasks()
    sizes = [2 * len(task.y_train) for task in tasks]
    expected = sizes if SETTINGS[setting].nb_stages is not SETTINGS["multi_task"].nb_stages else [sum(sizes)]
    assert results["complete"] and results["samples_seen"] == expected
    task_labels = SETTINGS[setting].task_labels_at_test
    scored = {(id(t.x_test), tuple(t.classes)) if not task_labels else t.task_id: len(t.y_test) for t in tasks}
    assert sum(map(sum, results["confusion_matrix"])) == sum(scored.values())
    assert results["final_average_accuracy"] > minimum
    assert runtime["method_runtime"]["replay_steps"] > 0, "every step drew from the union of the workers' buffers"


def test_one_device_is_one_process_with_the_local_buffer():
    setting = ClassIncrementalSetting(dataset="digits", accelerator="cpu")
    assert planned_workers(setting) == 1 and worker_rank(setting) == 0
    method = Rehearsal()
    method.configure(setting)
    assert isinstance(method.replay, LocalReplay) and method.run.parallel is None


def test_several_devices_make_a_data_parallel_run_whose_replay_is_global():
    setting = OnlineSetting(dataset="digits", accelerator="cpu", devices=2)
    run = RunContext.standalone(setting)
    assert run.world_size == 2 and run.parallel is not None
    method = Rehearsal()
    method.configure(run)
    assert method.replays_globally and run.parallel.channel is method.replay
    strategy = run.parallel.strategy()
    assert type(strategy).__name__ == "RehearsalDDPStrategy" and strategy.replay is method.replay
    local = OnlineSetting(dataset="digits", accelerator="cpu", devices=2, replay_scope="local")
    method = Rehearsal()
    method.configure(local)
    assert not method.replays_globally and type(method.run.parallel.strategy()).__name__ == "DDPStrategy"


def test_replay_options_are_refused_where_nothing_replays():
    with pytest.raises(ConfigurationError, match="--replay_sync has no effect on naive"):
        ClassIncrementalSetting(dataset="digits", accelerator="cpu", devices=2, replay_sync=True).check_method(Naive())
    with pytest.raises(ConfigurationError, match="--devices and --num_nodes must be >= 1"):
        OnlineSetting(devices=0)


def test_a_method_reads_the_settings_configuration_through_the_run_not_its_run_loop():
    setting = ClassIncrementalSetting(dataset="digits", accelerator="cpu")
    run = RunContext.standalone(setting)
    assert (run.num_classes, run.input_shape, run.batch_size) == (10, setting.input_shape, setting.batch_size)
    assert run.stage_count == setting.nb_tasks
    for loop in ("apply", "evaluate", "train_stage", "training_stages"):
        with pytest.raises(AttributeError, match=f"a run has no attribute '{loop}'"):
            getattr(run, loop)
