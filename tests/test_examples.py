"""The example scripts, run as a user runs them (the plugin example is tested in test_cli.py)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sylvan.errors import ConfigurationError
from sylvan.settings import SETTINGS, ClassIncrementalSetting
from tests.conftest import REPO, loaded_from_file, tiny_options


def run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / name), *args], capture_output=True, text=True,
        timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.slow
def test_the_rehearsal_strategy_serves_a_plain_lightning_project_on_two_workers():
    out = run_example("lightning_strategy.py", "--devices", "2", "--accelerator", "cpu", "--seed", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("after task")]
    assert len(lines) == 5, out.stdout  # worker 0 alone reports, once per task
    final = float(re.search(r"average ([\d.]+)%", lines[-1]).group(1))
    # fine-tuning ends near 20% (only the last task is known); replay from the buffers keeps the
    # old classes, so the buffer holds every class and accuracy stays far above that
    assert final > 50, lines[-1]
    assert "classes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in lines[-1]


@pytest.mark.slow
def test_the_fabric_rehearsal_strategy_serves_a_loop_of_ones_own_on_two_workers():
    """The same tasks in a plain loop on Fabric, `strategy=FabricRehearsalStrategy(...)`: the
    loader's batches come with the global buffer's replay appended."""
    out = run_example("fabric_strategy.py", "--devices", "2", "--accelerator", "cpu", "--seed", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("after task")]
    assert len(lines) == 5, out.stdout  # worker 0 alone reports, once per task
    assert float(re.search(r"average ([\d.]+)%", lines[-1]).group(1)) > 50, lines[-1]
    assert "classes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in lines[-1]


def test_the_reinforce_plugin_learns_to_balance_the_pole():
    """The RL method written outside the package: one CartPole task of 10,000 steps takes the
    greedy return from that of the untrained policy (10 to 56, seeds 0 to 2) to 180 to 500."""
    from sylvan.methods import METHODS
    from sylvan.settings import IncrementalRLSetting

    with loaded_from_file(REPO / "examples" / "reinforce.py", METHODS) as module:
        setting = IncrementalRLSetting(nb_tasks=1, steps_per_task=10_000, eval_episodes=5, seed=0, accelerator="cpu")
        results = setting.apply(module.Reinforce())
    assert results.accuracy_matrix[0][0] > 120 > results.initial_accuracies[0]
    with pytest.raises(ConfigurationError, match="--gamma"):
        module.Reinforce(gamma=2.0)


@pytest.fixture
def long_tailed_setting():
    """The example's setting class, loaded as a plugin is, and unregistered afterwards (the
    method x setting matrix is generated from the registry)."""
    with loaded_from_file(REPO / "examples" / "long_tailed.py", SETTINGS) as module:
        yield module.LongTailedClassIncrementalSetting


def test_the_long_tailed_setting_keeps_an_exponential_profile_of_each_class(long_tailed_setting):
    options = {**tiny_options(ClassIncrementalSetting), "train_samples": 1000, "nb_tasks": 5}
    balanced = ClassIncrementalSetting(**options).prepare_tasks()
    ordered = long_tailed_setting(**options, imbalance_ratio=0.1).prepare_tasks()
    for before, after in zip(balanced, ordered):
        assert before.classes == after.classes
        assert torch.equal(before.x_test, after.x_test) and torch.equal(before.y_test, after.y_test)
        for label in after.classes:
            available = int((before.y_train == label).sum())
            expected = max(1, round(available * 0.1 ** (label / 9)))
            assert int((after.y_train == label).sum()) == expected
        # the samples kept are samples of the balanced task
        rows = {tuple(x.flatten().tolist()) for x in before.x_train}
        assert all(tuple(x.flatten().tolist()) in rows for x in after.x_train)
    # shuffled: the same sizes, dealt to the classes with the seed
    shuffled = long_tailed_setting(**options, imbalance_ratio=0.1, shuffled_sizes=True)
    ordered_fractions = long_tailed_setting(**options, imbalance_ratio=0.1).kept_fractions()
    assert sorted(shuffled.kept_fractions()) == sorted(ordered_fractions)
    assert list(shuffled.kept_fractions()) != list(ordered_fractions)
    again = long_tailed_setting(**options, imbalance_ratio=0.1, shuffled_sizes=True)
    assert list(again.kept_fractions()) == list(shuffled.kept_fractions())
    for ratio in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigurationError, match="--imbalance_ratio"):
            long_tailed_setting(**options, imbalance_ratio=ratio)


def test_the_long_tailed_setting_is_a_plugin_every_class_incremental_method_runs_on(tmp_path):
    plugin = str(REPO / "examples" / "long_tailed.py")
    listed = subprocess.run([sys.executable, str(REPO / "cli.py"), "--plugin", plugin, "--list"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    line = next(line for line in listed.stdout.splitlines() if "long_tailed_class_incremental" in line)
    assert "ewc" in line and "rehearsal" in line and "multi_head" not in line
    out = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "--plugin", plugin, "--setting", "long_tailed_class_incremental",
         "--method", "rehearsal", "--buffer_policy", "prs", "--dataset", "synthetic", "--train_samples", "1000",
         "--epochs", "1", "--imbalance_ratio", "0.05", "--results_dir", str(tmp_path), "--run_name", "lt"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    seen = json.loads((tmp_path / "lt" / "results.json").read_text())["samples_seen"]
    assert len(seen) == 5 and seen == sorted(seen, reverse=True) and seen[0] > 5 * seen[-1]


def installed_plugin(site: Path, group: str, module: str, source: str) -> dict[str, str]:
    """A package installed in `site` (a folder put on the path) that declares `module` under the
    entry point `group`; the environment that makes it visible."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}_package-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}-package\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{module} = {module}\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_installed_packages_add_settings_and_methods_through_entry_points(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    env = installed_plugin(site, "sylvan.settings", "long_tailed_setting",
                           (REPO / "examples" / "long_tailed.py").read_text())
    env = installed_plugin(site, "sylvan.methods", "l2_anchor_method", (REPO / "examples" / "l2_anchor.py").read_text())
    listed = subprocess.run([sys.executable, str(REPO / "cli.py"), "--list"], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if "long_tailed_class_incremental" in line)
    assert "l2_anchor" in line
    (site / "l2_anchor_method.py").write_text("raise ImportError('no module named torchvisionx')\n")
    broken = subprocess.run([sys.executable, str(REPO / "cli.py"), "--list"], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path, env=env)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert "l2_anchor_method" in broken.stderr and "torchvisionx" in broken.stderr and "uninstall" in broken.stderr


@pytest.mark.slow
def test_a_grid_from_python_logs_each_run_to_one_wandb_group_and_summarizes_it(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "wandb_grid.py"), "--dataset", "synthetic", "--train_samples", "300",
         "--seeds", "0", "1", "--buffer_sizes", "50", "--results_dir", str(tmp_path), "--grid_name", "g",
         "--wandb_project", "sylvan-test"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    grid = tmp_path / "g"
    runs = sorted(p.name for p in grid.iterdir() if p.is_dir())
    assert runs == ["class_balanced-50-seed0", "class_balanced-50-seed1", "reservoir-50-seed0", "reservoir-50-seed1"]
    for run in runs:
        assert list((grid / run / "wandb").glob("offline-run-*")), run
    with open(grid / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert [(row["policy"], row["buffer_size"], row["seeds"]) for row in summary] == [
        ("reservoir", "50", "2"), ("class_balanced", "50", "2")]
    seeds = [json.loads((grid / f"reservoir-50-seed{s}" / "results.json").read_text())["final_average_accuracy"]
             for s in (0, 1)]
    mean = 100 * (seeds[0] + seeds[1]) / 2
    assert summary[0]["final_average_accuracy"].startswith(f"{mean:.2f} ± ")
    assert "reservoir" in out.stdout.splitlines()[-3]


def test_the_readmes_worked_method_is_one_file_that_runs(tmp_path):
    """The README's 'Adding a method': its code block, saved as one file, is listed and runs."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Adding a method", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_method.py").write_text(code)
    listed = subprocess.run([sys.executable, str(REPO / "cli.py"), "--plugin", "my_method.py", "--list"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "label_smoothing" in listed.stdout.split("online", 1)[1].splitlines()[0]
    ran = subprocess.run([sys.executable, str(REPO / "cli.py"), "--plugin", "my_method.py", "--setting",
                          "class_incremental", "--method", "label_smoothing", "--smoothing", "0.2",
                          "--results_dir", str(tmp_path / "results"), "--progress_bar", "false"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "final average accuracy" in ran.stdout


def test_the_readme_stays_a_front_door_and_links_only_to_pages_that_exist():
    readme = (REPO / "README.md").read_text()
    assert readme.count("\n") <= 300
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    missing = [link for link in links if not (REPO / link).is_file()]
    assert links and not missing, missing


def test_replay_with_an_ewc_penalty_is_one_file_that_runs_resumes_and_holds_its_weights(tmp_path):
    """The extending guide's combination of two bases' ideas: `rehearsal` plus the EWC penalty's
    parts. Its penalty pulls the weights toward the previous task's (closer than replay alone),
    and its Fisher and anchor are saved and restored with the run."""
    import json
    import shutil

    from tests.cli.test_cli import sylvan

    common = ["--plugin", str(REPO / "examples" / "replay_ewc.py"), "--setting", "class_incremental",
              "--dataset", "digits", "--nb_tasks", "3", "--epochs", "1", "--progress_bar", "false",
              "--results_dir", str(tmp_path)]
    for name, method, extra in (("combined", "replay_ewc", ["--ewc_lambda", "1000"]), ("replay", "rehearsal", [])):
        done = sylvan(*common, "--method", method, *extra, "--run_name", name)
        assert done.returncode == 0, done.stderr
    combined, replay = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("combined", "replay"))
    assert combined["accuracy_matrix"] != replay["accuracy_matrix"]  # the penalty changes what is learned
    shutil.copytree(tmp_path / "combined", tmp_path / "cut")
    for stale in (tmp_path / "cut" / "checkpoints").glob("after_stage_[12].pt"):
        stale.unlink()
    resumed = sylvan("--resume", str(tmp_path / "cut"))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "cut" / "results.json").read_text()) == combined
