"""`--memory_budget` (`sylvan.run.budget`): a run whose method would hold more at the end of the
stream than the budget is refused before anything is written where that is known in advance,
and stopped after the first stage that ends above it otherwise, its results kept."""

from __future__ import annotations

import json

import pytest

from sylvan.cli import main
from sylvan.cli import run as cli_run
from sylvan.errors import ConfigurationError
from sylvan.methods import METHODS
from sylvan.run.budget import MemoryBudgetExceeded, planned_memory
from sylvan.run.context import RunContext
from sylvan.run.experiment import RunOptions, run_experiment
from sylvan.settings import ClassIncrementalSetting, TaskIncrementalSetting

MLP_PARAMETERS = 64 * 100 + 100 * 100 + 100 * 10 + 100 + 100 + 10
TASK_CLASSES = 5 * 10  # the learner's table of the classes each task has shown (bool)


def digits(setting_cls=ClassIncrementalSetting, **options):
    return setting_cls(dataset="digits", nb_tasks=5, epochs=1, progress_bar=False, **options)


def memory_at_end(method_name: str, setting_cls=ClassIncrementalSetting, **options) -> int:
    results = digits(setting_cls).apply(METHODS[method_name](**options))
    return results.cost()["memory_bytes"]


def configured(method_name: str, setting_cls=ClassIncrementalSetting, **options):
    method = METHODS[method_name](**options)
    run = RunContext.standalone(digits(setting_cls))
    run.pixel_inputs = True
    method.configure(run)
    return method, run


def test_a_buffer_of_fixed_size_is_known_before_the_first_sample():
    """rehearsal's end of stream, known when it is configured: the network, the learner's
    table, and 50 + 1 rows of uint8 8x8 pixels, an int64 label and an int64 task label."""
    method, run = configured("rehearsal", buffer_size=50)
    planned = planned_memory(method, run)
    assert planned == {"held": 4 * MLP_PARAMETERS + TASK_CLASSES, "buffers": 51 * (64 + 8 + 8)}
    assert planned["held"] + planned["buffers"] == memory_at_end("rehearsal", buffer_size=50)


def test_networks_allocated_up_front_are_known_before_training():
    """clser's stable and plastic copies of its network exist once it is configured."""
    method, run = configured("clser")
    planned = planned_memory(method, run)
    assert planned["held"] + planned["buffers"] == memory_at_end("clser")


def test_a_network_that_grows_is_planned_as_it_starts():
    """pnn adds a column per task as the task begins: before training it holds the first alone."""
    method, run = configured("pnn", TaskIncrementalSetting)
    planned = planned_memory(method, run)
    assert planned["buffers"] == 0 and method.model.nb_columns == 1
    one_column = 4 * sum(p.numel() for p in method.model.parameters())
    assert planned["held"] == one_column + 5 * 10  # and the table of each task's classes (5 x 10, bool)
    assert planned["held"] < memory_at_end("pnn", TaskIncrementalSetting)


def test_the_planned_memory_is_a_lower_bound_where_extras_come_with_the_samples():
    method, run = configured("der", buffer_size=50)
    planned = planned_memory(method, run)
    assert planned["held"] + planned["buffers"] + 51 * 4 * 10 == memory_at_end("der", buffer_size=50)  # + logits


def test_a_run_over_budget_is_refused_before_its_folder_is_written(tmp_path):
    end = memory_at_end("rehearsal", buffer_size=50)
    with pytest.raises(ConfigurationError, match=f"at least {end:,} bytes"):
        run_experiment(digits(memory_budget=end - 1), METHODS["rehearsal"](buffer_size=50),
                       RunOptions(results_dir=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists()
    results = digits(memory_budget=end).apply(METHODS["rehearsal"](buffer_size=50))  # exactly the budget: runs
    assert results.complete and results.cost()["memory_bytes"] == end


def test_a_run_that_ends_a_task_over_budget_stops_and_keeps_its_results(tmp_path):
    """der's logits are only known once it has stored samples: its refusal comes after task 0,
    whose results are on disk."""
    method, run = configured("der", buffer_size=50)
    planned = planned_memory(method, run)
    budget = planned["held"] + planned["buffers"]  # not refused up front; exceeded by the logits
    with pytest.raises(MemoryBudgetExceeded, match="after stage 1 of 5") as stop:
        run_experiment(digits(memory_budget=budget), METHODS["der"](buffer_size=50),
                       RunOptions(results_dir=str(tmp_path), run_name="der"))
    assert str(tmp_path / "der") in str(stop.value)
    saved = json.loads((tmp_path / "der" / "results.json").read_text())
    assert len(saved["accuracy_matrix"]) == 1 and saved["complete"] is False


def test_the_command_line_exits_with_a_message(tmp_path, capsys):
    common = ["--setting", "class_incremental", "--method", "der", "--dataset", "digits", "--epochs", "1",
              "--buffer_size", "50", "--results_dir", str(tmp_path)]
    for budget, message in (("1000", "--memory_budget 1,000: der would hold at least"),
                            ("0", "--memory_budget must be a number of bytes >= 1")):
        with pytest.raises(SystemExit) as exit_status:
            main([*common, "--memory_budget", budget])
        assert exit_status.value.code == 2 and message in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_the_budget_does_not_change_a_run():
    free = digits().apply(METHODS["rehearsal"](buffer_size=50))
    budgeted = digits(memory_budget=10**9).apply(METHODS["rehearsal"](buffer_size=50))
    assert budgeted.accuracy_matrix == free.accuracy_matrix


def test_a_replay_memory_of_transitions_is_planned_and_bounded_on_rl_settings(tmp_path):
    """dqn's replay memory: 200 + 1 rows of a CartPole transition (observations float32, the
    action int64, reward and terminal float32), known before the first step; a budget below
    what it holds is refused before the run's folder is written."""
    from sylvan.settings import SETTINGS
    from tests.conftest import tiny_method, tiny_options

    setting_cls = SETTINGS["incremental_rl"]
    options = tiny_options(setting_cls, METHODS["dqn"])
    method = tiny_method(METHODS["dqn"])
    run = RunContext.standalone(setting_cls(**options))
    method.configure(run)
    planned = planned_memory(method, run)
    assert planned["buffers"] == (method.buffer_size + 1) * (4 * 4 + 8 + 4 + 4 * 4 + 4)
    end = setting_cls(**options).apply(tiny_method(METHODS["dqn"])).cost()["memory_bytes"]
    assert planned["held"] + planned["buffers"] <= end
    with pytest.raises(ConfigurationError, match="dqn would hold at least"):
        run_experiment(setting_cls(**options, memory_budget=planned["held"] + planned["buffers"] - 1),
                       tiny_method(METHODS["dqn"]), RunOptions(results_dir=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists()
    # the optimizer's moments come with the first gradient step: over the budget after the first stage
    with pytest.raises(MemoryBudgetExceeded, match="after stage 1 of 2"):
        setting_cls(**options, memory_budget=planned["held"] + planned["buffers"]).apply(tiny_method(METHODS["dqn"]))


def test_a_run_stopped_by_its_budget_is_refused_by_resume_with_the_budget_it_would_need(tmp_path):
    """Resumed, such a run would train one more task and stop again, further over the budget."""
    method, run = configured("der", buffer_size=50)
    planned = planned_memory(method, run)
    budget = planned["held"] + planned["buffers"]
    with pytest.raises(MemoryBudgetExceeded) as stop:
        run_experiment(digits(memory_budget=budget), METHODS["der"](buffer_size=50),
                       RunOptions(results_dir=str(tmp_path), run_name="der"))
    held = int(str(stop.value).split(" held ")[1].split(" bytes")[0].replace(",", ""))
    written = (tmp_path / "der" / "results.json").read_text()
    with pytest.raises(ConfigurationError) as refused:  # exit 2 from the command
        cli_run(["--resume", str(tmp_path / "der")])
    err = str(refused.value)
    assert (f"the run stopped over its --memory_budget {budget:,}: der held {held:,} bytes after stage 1" in err
            and f"at least {held:,}" in err), err
    assert (tmp_path / "der" / "results.json").read_text() == written
    assert sorted(p.name for p in (tmp_path / "der" / "checkpoints").iterdir()) == ["after_stage_0.pt"]


def test_a_pool_of_modules_that_grows_by_a_path_per_task_is_planned_with_its_first_path(tmp_path):
    """mntdp holds no module before its first task, and a whole path of them after it: a budget
    below that path is refused before the run's folder is written, not found out after task 1;
    planning it draws nothing from the run's generators."""
    import torch

    method, run = configured("mntdp", TaskIncrementalSetting)
    before = torch.get_rng_state()
    planned = planned_memory(method, run)
    assert torch.equal(torch.get_rng_state(), before)
    one_path = 4 * MLP_PARAMETERS
    assert planned["held"] >= one_path
    results = digits(TaskIncrementalSetting).apply(METHODS["mntdp"]())
    assert planned["held"] + planned["buffers"] <= results.network_bytes[0] + results.kept_bytes[0]
    with pytest.raises(ConfigurationError, match="mntdp would hold at least"):
        run_experiment(digits(TaskIncrementalSetting, memory_budget=one_path - 1), METHODS["mntdp"](),
                       RunOptions(results_dir=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists()
