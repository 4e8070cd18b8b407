"""The Continual World benchmark (`benchmarks/continual_world.py`): its runs carry the protocol's
options, its commands are sylvan's own, and its claims are decided from the runs' figures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from sylvan.cli.main import _names_parser
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("continual_world", REPO / "benchmarks" / "continual_world.py")
continual_world = importlib.util.module_from_spec(spec)
spec.loader.exec_module(continual_world)


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def option_values(argv: list[str], name: str) -> list[str]:
    return continual_world.option_values(argv)[name.lstrip("-")]


def test_the_full_protocol_is_continual_worlds(tmp_path):
    spec20 = continual_world.protocol("cw20")
    first, then = continual_world.plan(spec20, "task_incremental_rl", [0], tmp_path, list(continual_world.METHODS))
    assert [name for name, _ in first][:2] == ["reference-task0-seed0", "reference-task1-seed0"] and len(first) == 21
    runs = dict(then)
    assert option(runs["l2-seed0"], "--l2_lambda") == "1e5" and option(runs["ewc-seed0"], "--ewc_lambda") == "1e4"
    assert option(runs["mas-seed0"], "--mas_lambda") == "1e4"
    assert option(runs["packnet-seed0"], "--retrain_steps") == "100000"
    assert option(runs["agem-seed0"], "--agem_buffer_size") == str(10_000 * 20)
    for argv in runs.values():
        assert option(argv, "--steps_per_task") == "1000000" and option(argv, "--hidden_layers") == "4"
        assert option(argv, "--hidden_size") == "256" and option(argv, "--replay_size") == "128"
        assert option(argv, "--train_frequency") == "1"
        assert option(argv, "--multihead") == "true" and option(argv, "--reference_dir") == str(tmp_path / "references")
        assert option(argv, "--max_episode_steps") == "200"
    # the reservoir keeps the whole stream and is never emptied; the others' memories are a task's, reset
    assert option(runs["reservoir-seed0"], "--buffer_size") == str(20 * 1_000_000)
    assert "--reset_on_task" not in runs["reservoir-seed0"]
    assert option(runs["fine-tuning-seed0"], "--reset_on_task") == "true"
    single_head = dict(continual_world.plan(spec20, "incremental_rl", [0], tmp_path, ["ewc"])[1])
    assert "--multihead" not in single_head["ewc-seed0"]


def test_a_protocols_steps_per_task_can_be_replaced_and_what_follows_them_follows(tmp_path):
    spec50 = continual_world.protocol("reduced", steps_per_task=50_000)
    runs = dict(continual_world.plan(spec50, "task_incremental_rl", [0], tmp_path, list(continual_world.METHODS))[1])
    assert option(runs["ewc-seed0"], "--steps_per_task") == "50000"
    assert option(runs["ewc-seed0"], "--eval_every") == "5000"
    # the reduced protocol takes a gradient step of 256 transitions every second step; PackNet
    # retrains for a tenth of a task's gradient steps, as Continual World's 100k of 1M
    assert option(runs["ewc-seed0"], "--train_frequency") == "2" and option(runs["ewc-seed0"], "--replay_size") == "256"
    assert option(runs["packnet-seed0"], "--retrain_steps") == "2500"
    assert option(runs["agem-seed0"], "--agem_buffer_size") == str(5000 * 2)
    assert option(runs["reservoir-seed0"], "--buffer_size") == str(2 * 50_000)
    with pytest.raises(ValueError, match="at least 10"):
        continual_world.protocol("reduced", steps_per_task=0)


def test_a_folder_holding_runs_made_with_other_options_is_refused(tmp_path):
    """A finished run is not made again: one of another protocol's steps or options would stand in for it."""
    first, then = continual_world.plan(continual_world.protocol("reduced", steps_per_task=25_000),
                                       "task_incremental_rl", [0], tmp_path, ["ewc"])
    folder = tmp_path / "runs" / "ewc-seed0"
    folder.mkdir(parents=True)
    argv = dict(then)["ewc-seed0"]
    stored = {key: argv[argv.index(f"--{key}") + 1] for key in ("train_frequency", "replay_size", "ewc_lambda", "lr")}
    (folder / "config.yaml").write_text(
        "setting: task_incremental_rl\nsetting_options:\n  steps_per_task: 25000\n  task_envs:\n"
        + "".join(f"  - {task}\n" for task in option_values(argv, "--task_envs"))
        + "method_options:\n  cw_network: true\n" + "".join(f"  {key}: {value}\n" for key, value in stored.items()))
    continual_world.check_out(tmp_path, first + then)  # the same protocol: continued
    with pytest.raises(SystemExit, match="holds a run made with --steps_per_task 25000, this protocol's is 75000"):
        continual_world.check_out(tmp_path, sum(continual_world.plan(continual_world.protocol(
            "reduced", steps_per_task=75_000), "task_incremental_rl", [0], tmp_path, ["ewc"]), []))
    (folder / "config.yaml").write_text("method_options:\n  train_frequency: 1\n  cw_network: true\n")
    with pytest.raises(SystemExit, match="holds a run made with --train_frequency 1, this protocol's is 2"):
        continual_world.check_out(tmp_path, first + then)
    (folder / "config.yaml").write_text("method_options:\n  cw_network: false\n")
    with pytest.raises(SystemExit, match="--cw_network False, this protocol's is true"):
        continual_world.check_out(tmp_path, first + then)


def test_its_commands_are_accepted_by_sylvan(tmp_path):
    """Every run's options parse (the reference's and each method's), so a protocol never fails an
    hour in on a misspelled option."""
    from sylvan.cli.main import parse_options
    from sylvan.registry import METHODS as REGISTERED
    from sylvan.settings import SETTINGS

    pytest.importorskip("metaworld", reason="the rl extra (Meta-World) is not installed")
    first, then = continual_world.plan(continual_world.protocol("reduced"), "task_incremental_rl", [0], tmp_path,
                                       list(continual_world.METHODS))
    for _, argv in first + then:
        names, _ = _names_parser().parse_known_args(argv)
        setting, method, _, unknown = parse_options(SETTINGS[names.setting], REGISTERED[names.method], {}, argv)
        assert unknown == [], (names.method, unknown)


def run(performance: float, forgetting: float, ends: list[float]) -> dict:
    """A two-task run whose first task ends its training at `ends[0]` and the stream at
    `ends[0] - 2 * forgetting` (Continual World's forgetting: the mean over both tasks)."""
    curve = {"steps": [10, 20, 30, 40], "success": [[0.0, 0.0], [ends[0], 0.0], [0.5, 0.5],
                                                    [round(ends[0] - 2 * forgetting, 6), ends[1]]]}
    return {"cw_performance": performance, "cw_forgetting": forgetting, "cw_forward_transfer": 0.0,
            "success_matrix": [[ends[0], 0.0], [0.0, ends[1]]], "evaluation_curve": curve,
            "task_spans": [[0, 20], [20, 40]]}


def test_the_claims_are_decided_from_the_seeds():
    found = {
        "fine-tuning": [run(0.2, 0.4, [0.9, 1.0]), run(0.15, 0.45, [1.0, 0.9]), run(0.2, 0.4, [0.9, 0.9])],
        "packnet": [run(0.9, 0.01, [0.9, 0.9]), run(0.85, -0.01, [0.9, 0.9]), run(0.95, 0.0, [1.0, 0.9])],
        "ewc": [run(0.7, 0.2, [0.9, 0.9]), run(0.6, 0.25, [0.9, 0.9]), run(0.65, 0.1, [0.9, 0.9])],
        "agem": [run(0.2, 0.74, [0.9, 0.9]), run(0.2, 0.8, [0.9, 0.9]), run(0.2, 0.72, [0.9, 0.9])],
    }
    lines = "\n".join(continual_world.claims(found))
    assert "fine-tuning forgets at least half its end-of-task success" in lines and "; holds" in lines
    assert "packnet's performance above ewc's" in lines and "ewc forgets less than fine-tuning" in lines
    assert "agem forgets about as much as fine-tuning" in lines
    assert "packnet forgets nothing beyond noise: forgetting 0.00 ± 0.01 (t-test against 0: p = 1.000); holds" in lines
    assert "packnet has the highest performance among the continual methods: holds" in lines
    assert "ewc forgets less than fine-tuning" in lines and "(paired less p = 0.0" in lines
    assert "agem forgets about as much as fine-tuning" in lines and "; not shown" in lines  # 0.75 against 0.42
    found["mas"] = [run(0.95, 0.0, [0.9, 0.9]), run(0.9, 0.0, [0.9, 0.9]), run(0.9, 0.0, [1.0, 0.9])]
    lines = "\n".join(continual_world.claims(found))
    assert "packnet has the highest performance among the continual methods: does not hold (mas as high" in lines
    assert "mas forgets less than fine-tuning: forgetting 0.00 ± 0.00" in lines
    # the first task's forgetting (0.8, 0.9, 0.8) against its end-of-task success (0.9, 1.0, 0.9): the
    # last task, which nothing follows, is left out of both (its forgetting is 0 by definition)
    assert "(the tasks before the last): forgetting 0.83 ± 0.06, end-of-task success 0.93 ± 0.06; holds" in lines
    assert "(the protocol asks at least 0.8): T0 0.9 1.0 0.9, T1 1.0 0.9 0.9; met" in lines
    found["fine-tuning"] = [run(0.5, 0.1, [0.9, 1.0]), run(0.45, 0.05, [1.0, 0.7]), run(0.5, 0.0, [0.3, 0.9])]
    # forgetting 0.2, 0.1, 0.0 of 0.9, 1.0, 0.3: less than half
    lines = "\n".join(continual_world.claims(found))
    assert "does not hold" in lines and "T0 0.9 1.0 0.3, T1 1.0 0.7 0.9; not met in 2 of 6" in lines


def test_print_shows_the_commands_and_runs_nothing(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "continual_world.py"), "--protocol", "cw10",
                           "--seeds", "0", "--methods", "ewc", "--print", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 11 and all(line.startswith("python cli.py --setting") for line in lines)
    assert not (tmp_path / "runs").exists()


def test_report_tabulates_the_runs_finished_so_far_and_runs_nothing(tmp_path):
    """A protocol stopped midway is reported as far as it went: each method with the seeds it has."""
    curve = {"steps": [10, 20, 30, 40], "success": [[0.5, 0.0], [1.0, 0.0], [0.0, 0.5], [0.0, 1.0]]}
    for seed, forgetting in ((0, 0.5), (1, 0.4)):
        folder = tmp_path / "runs" / f"fine-tuning-seed{seed}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({
            "complete": True, "cw_performance": 0.5, "cw_forgetting": forgetting, "cw_forward_transfer": 0.1,
            "success_matrix": [[1.0, 0.0], [0.0, 1.0]], "evaluation_curve": curve, "task_spans": [[0, 20], [20, 40]]}))
    (tmp_path / "runs" / "ewc-seed0").mkdir()  # begun, not finished: not in the table
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "continual_world.py"), "--report",
                           "--seeds", "0", "1", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():  # the table's rows come before the claims' lines
        if line.split():
            rows.setdefault(line.split()[0], line.split())
    assert rows["fine-tuning"][1:6] == ["2", "0.50", "±", "0.00", "0.45"] and rows["ewc"][1] == "0"
    assert "T0 1.0 1.0, T1 1.0 1.0; met" in done.stdout and (tmp_path / "continual_world.png").is_file()
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["ewc-seed0", "fine-tuning-seed0",
                                                                        "fine-tuning-seed1"]
    assert not any((tmp_path / "runs" / "ewc-seed0").iterdir())
