"""The real command, in a subprocess: the main job, --list, --help, plugins and every mistake."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from sylvan.errors import ConfigurationError
from tests.conftest import REPO, default_signal_handling

FAST = ["--dataset", "synthetic", "--train_samples", "200", "--nb_tasks", "2", "--progress_bar", "false"]


def sylvan(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True,
        timeout=300, cwd=cwd, env={**os.environ, **(env or {})},
    )


def whole_and_resumed_after_kill(*args: str, results_dir: Path) -> tuple[dict, dict]:
    """The results of `sylvan *args` run whole (run "whole" in `results_dir`), and of the same
    run killed with SIGKILL after its first stage (before its last) and resumed ("killed")."""
    whole = sylvan(*args, "--results_dir", str(results_dir), "--run_name", "whole")
    assert whole.returncode == 0, whole.stderr
    killed = killed_after_first_stage(*args, "--results_dir", str(results_dir), "--run_name", "killed",
                                      run_dir=results_dir / "killed")
    assert not killed["complete"], "killed after its first task, before its last"
    resumed = sylvan("--resume", str(results_dir / "killed"))
    assert resumed.returncode == 0, resumed.stderr
    return tuple(json.loads((results_dir / name / "results.json").read_text()) for name in ("whole", "killed"))


def killed_after_first_stage(*args: str, run_dir: Path) -> dict:
    """Start `sylvan *args` (a run writing into `run_dir`), kill it with SIGKILL as soon as its
    first stage's checkpoint and results are written, and return those results."""
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = run_dir / "checkpoints" / "after_stage_0.pt"
    written = run_dir / "results.json"  # after the checkpoint of the task it reports
    deadline = time.monotonic() + 120
    while not (first.exists() and written.exists()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return json.loads(written.read_text())


def run_dir_of(results_dir: Path) -> Path:
    (run_dir,) = [p for p in results_dir.iterdir() if p.is_dir()]
    return run_dir


def test_main_job_writes_results(tmp_path):
    out = sylvan("--setting", "class_incremental", "--method", "rehearsal", "--results_dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    # the output is a pipe, not a terminal: a line per task, no progress bar redrawn into it
    assert "it/s" not in out.stdout + out.stderr and out.stdout.count("[sylvan] stage ") == 5
    assert "final average accuracy" in out.stdout and "results written to" in out.stdout
    run_dir = run_dir_of(tmp_path)
    for name in ("config.yaml", "results.json", "runtime.json", "provenance.json", "accuracy_matrix.png",
                 "accuracy_curve.png", "confusion_matrix.png", "logs/train.csv", "checkpoints/after_stage_4.pt"):
        assert (run_dir / name).is_file(), name
    results = json.loads((run_dir / "results.json").read_text())
    assert len(results["accuracy_matrix"]) == 5 and results["complete"]
    assert results["final_average_accuracy"] > 0.5  # rehearsal on digits, defaults
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["setting"] == "class_incremental" and config["method_options"]["buffer_size"] == 200


def test_same_seed_same_results_json(tmp_path):
    for name in ("a", "b"):
        out = sylvan("--setting", "online", "--method", "rehearsal", *FAST, "--seed", "3",
                     "--results_dir", str(tmp_path), "--run_name", name)
        assert out.returncode == 0, out.stderr
    assert (tmp_path / "a" / "results.json").read_text() == (tmp_path / "b" / "results.json").read_text()


@pytest.mark.slow
def test_config_path_reloads_a_run(tmp_path):
    out = sylvan("--setting", "task_incremental", "--method", "naive", *FAST, "--lr", "0.05",
                 "--results_dir", str(tmp_path), "--run_name", "first")
    assert out.returncode == 0, out.stderr
    config = tmp_path / "first" / "config.yaml"
    again = sylvan("--config_path", str(config), "--run_name", "second", "--seed", "1")
    assert again.returncode == 0, again.stderr
    second = yaml.safe_load((tmp_path / "second" / "config.yaml").read_text())
    assert second["setting"] == "task_incremental" and second["method_options"]["lr"] == 0.05
    assert second["setting_options"]["seed"] == 1  # the command line wins over the file


def test_list_shows_tree_with_methods():
    out = sylvan("--list")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert any(line.strip().startswith("online") and "rehearsal" in line for line in lines)
    online = next(line for line in lines if line.strip().startswith("online"))
    assert "from_scratch" not in online
    class_il = next(line for line in lines if line.strip().startswith("class_incremental"))
    assert "from_scratch" in class_il
    rl = next(line for line in lines if line.strip().startswith("task_incremental_rl"))
    assert rl.split("methods:")[1].split() == ["agem,", "clear,", "dqn,", "ewc,", "l2,", "mas,", "packnet,", "ppo,",
                                               "random,", "sac,", "si"]
    assert class_il.index("class_incremental") > online.index("online"), "children are indented"
    assert len({line.index("methods:") for line in lines}) == 1, "the methods form one column"


def test_rl_run_writes_returns_and_the_episodes_it_trained_on(tmp_path):
    out = sylvan("--setting", "incremental_rl", "--method", "dqn", "--nb_tasks", "2", "--steps_per_task", "300",
                 "--eval_episodes", "2", "--max_episode_steps", "50", "--learning_starts", "50",
                 "--results_dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "final average return" in out.stdout and "environment steps: 600" in out.stdout
    run_dir = run_dir_of(tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["measure"] == "return" and len(results["return_matrix"]) == 2
    assert results["samples_seen"] == [300, 300] and results["online_return"] > 0
    assert results["task_attributes"][0] == {"gravity": 9.8, "masspole": 0.1, "length": 0.5}
    assert len(results["task_attributes"]) == 2
    log = (run_dir / "logs" / "train.csv").read_text().splitlines()
    # the episodes' rows, and the learning steps' losses (every 10th), at the environment step of each
    assert log[0] == "step,episode_length,episode_return,train/loss"
    episodes = [line for line in log[1:] if line.endswith(",")]  # no loss
    assert len(episodes) == sum(results["episodes_seen"]) and len(log) - 1 > len(episodes)
    steps = [int(line.split(",")[0]) for line in log[1:]]
    assert steps == sorted(steps) and steps[-1] <= 600 and any(step > 300 for step in steps)
    assert (run_dir / "accuracy_matrix.png").is_file()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["setting_options"]["env"] == "CartPole-v1" and config["method_options"]["buffer_policy"] == "fifo"


def test_help_shows_setting_and_method_options():
    out = sylvan("--setting", "class_incremental", "--method", "rehearsal", "--help")
    assert out.returncode == 0
    for flag in ("--buffer_size", "--replay_size", "--epochs", "--nb_tasks", "--dataset", "--seed",
                 "--results_dir", "--data_dir", "--wandb_project"):
        assert flag in out.stdout, flag
    assert "capacity of the rehearsal buffer" in out.stdout  # field comments are the help text
    general = sylvan("--help")
    assert general.returncode == 0 and "class_incremental" in general.stdout
    rl = sylvan("--setting", "continual_rl", "--method", "dqn", "--help")
    assert rl.returncode == 0
    for flag in ("--env", "--steps_per_task", "--varied_attributes", "--buffer_policy", "--target_update_interval"):
        assert flag in rl.stdout, flag


def test_the_command_finishes_threads_exit_handlers_and_output_before_it_leaves(tmp_path):
    """The command skips the interpreter's teardown (sylvan/cli/process_exit.py) but keeps what a
    normal exit does: non-daemon threads run to their end, atexit handlers run (wandb and
    logging rely on them), buffered output reaches the pipe, and the exit status is kept."""
    plugin = tmp_path / "exit_probe.py"
    plugin.write_text(textwrap.dedent(f"""
        import atexit, os, threading, time
        from pathlib import Path

        OUT = Path({str(tmp_path)!r}) / str(os.getpid())
        OUT.mkdir()

        def write_late():
            time.sleep(0.5)
            (OUT / "thread").write_text("finished")

        threading.Thread(target=write_late).start()
        atexit.register(lambda: (OUT / "atexit").write_text("ran"))
    """))
    buffered = {"PYTHONUNBUFFERED": ""}  # output to a pipe stays in the buffer until flushed
    listed = sylvan("--plugin", str(plugin), "--list", env=buffered)
    refused = sylvan("--plugin", str(plugin), "--setting", "nowhere", "--method", "naive", env=buffered)
    assert listed.returncode == 0 and refused.returncode == 2, listed.stderr + refused.stderr
    assert listed.stdout.splitlines()[-1].split()[0] == "osaka"  # the listing, to its last line
    assert "valid settings" in refused.stderr
    for process in tmp_path.iterdir():
        if process.is_dir():
            assert (process / "thread").read_text() == "finished" and (process / "atexit").read_text() == "ran"
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


def test_listing_help_and_refusals_answer_without_loading_lightning_or_data_libraries():
    """--list, --help and a refused configuration answer in the time torch takes to import:
    Lightning (with torchmetrics and torchvision under it) and continuum load when a run trains."""
    script = """
import sys
from sylvan.cli import main
for argv in (["--list"], ["--setting", "distributed", "--method", "rehearsal", "--help"],
             ["--setting", "class_incremental", "--method", "derpp", "--buffer_size", "-1"],
             ["--setting", "online", "--method", "from_scratch"]):
    try:
        main(argv)
    except SystemExit as exit:
        print("exit", exit.code)
# continuum's packages and plotting helpers sit in sys.modules unrun (`lazy_continuum`): not loaded until used
loaded = {name.split(".")[0] for name, module in sys.modules.items()
          if type(module).__name__ not in ("LazyPackage", "DeferredModule")}
print("loaded:", sorted(loaded & {"lightning", "pytorch_lightning", "torchmetrics", "torchvision", "continuum"}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line for line in lines if line.startswith("exit")] == ["exit 0", "exit 0", "exit 2", "exit 2"]
    assert lines[-1] == "loaded: []"


def test_a_run_in_one_process_trains_on_lightning_fabric_without_the_trainer_or_torchmetrics(tmp_path):
    """sylvan's engine runs on the standalone `lightning_fabric`: a run loads neither the
    `lightning` package (whose `__init__` imports the Trainer) nor torchmetrics (which Fabric's
    version check would import whole), and torchmetrics stays importable after it."""
    script = """
import sys
from sylvan.cli import main
try:
    main(["--setting", "class_incremental", "--method", "rehearsal", "--nb_tasks", "2", "--epochs", "1",
          "--progress_bar", "false", "--accelerator", "cpu", "--save_checkpoints", "false"])
except SystemExit as exit:
    print("exit", exit.code)
loaded = {name.split(".")[0] for name in sys.modules}
print("loaded:", sorted(loaded & {"lightning", "pytorch_lightning", "torchmetrics", "lightning_fabric"}))
import torchmetrics
print("torchmetrics", torchmetrics.__version__)
"""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # where packages may be too
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": path})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "exit 0" in lines and "loaded: ['lightning_fabric']" in lines
    assert lines[-1].startswith("torchmetrics ")


@pytest.mark.parametrize(("args", "message"), [
    (["--setting", "nope", "--method", "naive"], "valid settings"),
    (["--setting", "online", "--method", "nope"], "valid methods"),
    (["--setting", "online", "--method", "from_scratch"], "Methods that apply to 'online'"),
    (["--setting", "online", "--method", "naive", "--dataset", "nope"], "valid datasets"),
    (["--setting", "online", "--method", "rehearsal", "--buffer_size", "-5"], "--buffer_size"),
    (["--setting", "class_incremental", "--method", "naive", "--nb_tasks", "20"], "--nb_tasks"),
    (["--setting", "online", "--method", "naive", "--lr", "0"], "--lr"),
    (["--setting", "class_incremental", "--method", "icarl", "--buffer_size", "5"], "--buffer_size 5"),
    (["--setting", "task_incremental", "--method", "stable_sgd", "--dropout", "1"], "--dropout"),
    (["--setting", "online", "--method", "der", "--alpha", "-1"], "--alpha"),
    (["--setting", "online"], "missing --method"),
    (["--setting", "online", "--method", "naive", "--config_path", "/nonexistent.yaml"], "config_path"),
    (["--setting", "online", "--method", "naive", "--backbone", "vit"], "valid backbones"),
    (["--setting", "class_incremental", "--method", "hal", "--anchor_steps", "0"], "--anchor_steps"),
    (["--setting", "online", "--method", "naive", "--augmentation", "cutout"], "valid augmentations"),
    (["--setting", "online", "--method", "naive", "--crop_padding", "-1"], "--crop_padding"),
    (["--setting", "class_incremental", "--method", "naive", "--buffer_size", "20"],
     "--buffer_size is not an option of naive on class_incremental, but of agem, aser, bic, clser"),
    (["--setting", "online", "--method", "naive", "--bogus"], "unrecognized arguments: --bogus."),
    (["--setting", "continual_rl", "--method", "rehearsal"],
     "Methods that apply to 'continual_rl': clear, dqn, ppo, random, sac"),
    (["--setting", "incremental_rl", "--method", "dqn", "--env", "NoSuchEnv-v0"], "is not a gymnasium environment"),
    (["--setting", "incremental_rl", "--method", "sac"], "CartPole-v1 has discrete actions, and sac handles"),
    (["--setting", "continual_rl", "--method", "dqn", "--env", "Pendulum-v1"], "methods for continuous actions:"),
    (["--setting", "incremental_rl", "--method", "dqn", "--dataset", "mnist"],
     "--dataset is not an option of dqn on incremental_rl"),
    (["--setting", "online", "--method", "naive", "--validation_fraction", "1"], "--validation_fraction"),
    (["--setting", "domain_incremental", "--method", "naive", "--domain_shift", "dataset"],
     "digits has no domains of its own"),
    (["--setting", "domain_incremental", "--method", "naive", "--random_domain_order"],
     "--random_domain_order True has no effect: it orders the dataset's own domains"),
    (["--setting", "online", "--method", "naive", "--lr_schedule", "step", "--lr_milestones", "1"],
     "naive on online trains 1 epoch(s) per task, so a milestone must be below 1"),
    (["--setting", "class_incremental", "--method", "naive", "--lr_milestones", "2"],
     "--lr_milestones [2] has no effect: it sets when --lr_schedule step lowers the learning rate"),
    (["--setting", "online", "--method", "naive", "--precision", "fp8"], "valid precisions: 16-mixed, 32-true"),
    (["--setting", "class_incremental", "--method", "naive", "--precision", "16-mixed", "--accelerator", "cpu"],
     "use --precision bf16-mixed"),
    pytest.param(["--setting", "online", "--method", "naive", "--accelerator", "gpu"], "use --accelerator cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_mistakes_exit_2_without_traceback(args, message, tmp_path):
    out = sylvan(*args, "--results_dir", str(tmp_path))
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not any(tmp_path.iterdir()), "a refused run must not create a run folder"


LAYER_NORMED_BACKBONE = """
import torch

from sylvan.models import BACKBONES, MLP


def layer_normed(shape, classes):
    mlp = MLP(shape, classes)
    mlp.features[2] = torch.nn.LayerNorm(100)
    return mlp


BACKBONES["layer_normed"] = layer_normed
"""


def test_a_backbone_pnn_cannot_grow_is_refused_before_the_run(tmp_path):
    plugin = tmp_path / "layer_normed.py"
    plugin.write_text(LAYER_NORMED_BACKBONE)
    results = tmp_path / "results"
    out = sylvan("--plugin", str(plugin), "--setting", "task_incremental", "--method", "pnn",
                 "--backbone", "layer_normed", "--results_dir", str(results))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "pnn grows columns from backbones made of Linear and Conv2d layers" in out.stderr
    assert "MLP has a LayerNorm" in out.stderr and "Traceback" not in out.stderr
    assert not results.exists(), "a refused run must not create a run folder"


def test_missing_data_exits_2_and_says_where(tmp_path):
    out = sylvan("--setting", "online", "--method", "naive", "--dataset", "mnist",
                 "--data_dir", str(tmp_path / "data"), "--results_dir", str(tmp_path / "res"),
                 env={"SYLVAN_OFFLINE": "1"})
    assert out.returncode == 2
    assert not (tmp_path / "res").exists(), "the data is looked for before the run's folder is made"
    assert "MNIST/raw" in out.stderr and "Traceback" not in out.stderr


def test_a_results_dir_that_cannot_be_written_exits_2(tmp_path):
    (tmp_path / "a_file").write_text("")
    out = sylvan("--setting", "online", "--method", "naive", *FAST, "--results_dir", str(tmp_path / "a_file"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--results_dir" in out.stderr and "give a folder that can be written" in out.stderr, out.stderr


@pytest.mark.slow
def test_external_method_plugin_is_listed_and_runs_everywhere(tmp_path):
    plugin = REPO / "examples" / "l2_anchor.py"
    listed = sylvan("--plugin", str(plugin), "--list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.strip().startswith("class_incremental"))
    assert "l2_anchor" in line
    online = next(line for line in listed.stdout.splitlines() if line.strip().startswith("online"))
    assert "l2_anchor" not in online
    helped = sylvan("--plugin", str(plugin), "--setting", "domain_incremental", "--method", "l2_anchor", "--help")
    assert "--strength" in helped.stdout
    # (every setting it applies to is run in-process by tests/methods/test_matrix.py)
    for setting in ("domain_incremental",):
        out = sylvan("--plugin", str(plugin), "--setting", setting, "--method", "l2_anchor", *FAST,
                     "--epochs", "1", "--strength", "0.5", "--results_dir", str(tmp_path / setting))
        assert out.returncode == 0, out.stderr
        assert (run_dir_of(tmp_path / setting) / "results.json").is_file()
    refused = sylvan("--plugin", str(plugin), "--setting", "online", "--method", "l2_anchor")
    assert refused.returncode == 2 and "l2_anchor" in refused.stderr


def test_options_are_the_public_fields_only():
    """Every dataclass field of a setting or method becomes a flag, a config.yaml entry and a
    W&B config value: state a class keeps for itself (a leading underscore) must not be a field."""
    from sylvan.methods import METHODS
    from sylvan.settings import SETTINGS

    private = [f"{cls.__name__}.{field.name}" for cls in (*SETTINGS.values(), *METHODS.values())
               for field in dataclasses.fields(cls) if field.name.startswith("_")]
    assert private == []


def _float_options() -> list[tuple[type, str]]:
    from sylvan.methods import METHODS
    from sylvan.settings import SETTINGS

    return [(cls, field.name) for cls in (*SETTINGS.values(), *METHODS.values())
            for field in dataclasses.fields(cls) if field.init and isinstance(field.default, float)]


FLOAT_OPTIONS = _float_options()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(("cls", "name"), FLOAT_OPTIONS, ids=[f"{cls.name}-{name}" for cls, name in FLOAT_OPTIONS])
def test_options_that_are_not_finite_numbers_are_refused(cls, name, value):
    """NaN passes every range check (each comparison with it is false): without this refusal,
    `--lr nan` trained a network of NaN to the end and wrote its results, and an infinite
    --worker_timeout overflowed the process group's timeout with a traceback."""
    with pytest.raises(ConfigurationError, match=f"--{name} must be a finite number"):
        cls(**{name: value})


def test_every_method_and_setting_pair_builds_a_parser(monkeypatch):
    """simple-parsing reads every field annotation: a method or setting whose annotations do not
    resolve would only fail on the command line. The defaults are parsed as on a machine without
    a GPU (on one with a single GPU, `distributed`'s two default workers are refused)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from sylvan.cli import build_parser
    from sylvan.methods import METHODS
    from sylvan.settings import SETTINGS, Setting

    for setting_cls in SETTINGS.values():
        if setting_cls is Setting:
            continue
        for method_cls in METHODS.values():
            if method_cls.is_applicable(setting_cls):
                parser = build_parser(setting_cls, method_cls, {})
                args = parser.parse_args([])
                assert isinstance(args.method_options, method_cls)


@pytest.mark.slow
def test_resume_continues_an_interrupted_run(tmp_path):
    """A run whose last checkpoints are gone (it died during task 1) resumes from task 0's and
    ends with the same results.json and train.csv as the run that was never interrupted."""
    options = ["--setting", "class_incremental", "--method", "rehearsal", "--dataset", "synthetic",
               "--train_samples", "600", "--nb_tasks", "3", "--epochs", "2", "--progress_bar", "false",
               "--results_dir", str(tmp_path), "--seed", "4"]
    assert sylvan(*options, "--run_name", "full").returncode == 0
    full = tmp_path / "full"
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    for stage in (1, 2):
        (cut / "checkpoints" / f"after_stage_{stage}.pt").unlink()
    out = sylvan("--resume", str(cut))
    assert out.returncode == 0, out.stderr
    assert "resuming rehearsal on class_incremental after stage 1" in out.stdout
    assert "results written to" in out.stdout
    assert (cut / "results.json").read_text() == (full / "results.json").read_text()
    assert (cut / "logs" / "train.csv").read_text() == (full / "logs" / "train.csv").read_text()
    assert len((full / "logs" / "train.csv").read_text().splitlines()) > 3  # rows from every task
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == [f"after_stage_{k}.pt" for k in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut", "full"]  # no new run folder

    finished = sylvan("--resume", str(cut))  # nothing left to do
    assert finished.returncode == 2 and "the run is complete" in finished.stderr
    assert "resuming" not in finished.stdout, "a finished run is not announced as resuming"


@pytest.mark.slow
@pytest.mark.parametrize("stop, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_keeps_the_finished_tasks_and_says_how_to_resume(tmp_path, stop, status):
    """Ctrl-C (SIGINT), or a scheduler's SIGTERM, while task 1 trains: exit status 128 + the
    signal, one line naming the run folder and the resume command, no traceback; the resumed
    run finishes from task 0's checkpoint."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "--setting", "class_incremental", "--method", "rehearsal",
         "--nb_tasks", "2", "--epochs", "30", "--results_dir", str(tmp_path), "--run_name", "stopped"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_signal_handling,
    )
    try:
        for line in process.stdout:
            if line.startswith("[sylvan] stage 1/2 done"):
                process.send_signal(stop)  # task 1 trains for seconds: it is interrupted
                break
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    run_dir = tmp_path / "stopped"
    assert process.returncode == status, stderr
    assert f"continue the run with: sylvan --resume {run_dir}" in stderr and "Traceback" not in stderr
    kept = json.loads((run_dir / "results.json").read_text())
    assert len(kept["accuracy_matrix"]) == 1 and not kept["complete"]

    out = sylvan("--resume", str(run_dir))
    assert out.returncode == 0, out.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert len(results["accuracy_matrix"]) == 2 and results["complete"]
    assert results["accuracy_matrix"][0] == kept["accuracy_matrix"][0]


@pytest.mark.slow
def test_a_run_records_its_plugins_for_resume_and_config_path(tmp_path):
    """config.yaml names the plugin file by its absolute path: `--resume` and `--config_path`
    load it without --plugin, from any folder; a plugin that has moved gets a message, and
    --plugin gives its new place."""
    (tmp_path / "plugins").mkdir()
    shutil.copy(REPO / "examples" / "l2_anchor.py", tmp_path / "plugins" / "l2_anchor.py")
    out = sylvan("--plugin", "plugins/l2_anchor.py", "--setting", "class_incremental", "--method", "l2_anchor",
                 *FAST, "--nb_tasks", "3", "--epochs", "1", "--results_dir", "res", "--run_name", "full",
                 cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    full = tmp_path / "res" / "full"
    config = yaml.safe_load((full / "config.yaml").read_text())
    assert config["plugins"] == [str((tmp_path / "plugins" / "l2_anchor.py").resolve())]
    for name in ("cut", "moved"):
        shutil.copytree(full, tmp_path / name)
        (tmp_path / name / "checkpoints" / "after_stage_2.pt").unlink()

    resumed = sylvan("--resume", str(tmp_path / "cut"))  # from the repository, another folder
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "cut" / "results.json").read_text() == (full / "results.json").read_text()
    again = sylvan("--config_path", str(full / "config.yaml"), "--results_dir", str(tmp_path / "res"),
                   "--run_name", "again")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "res" / "again" / "results.json").read_text() == (full / "results.json").read_text()

    (tmp_path / "plugins").rename(tmp_path / "elsewhere")
    lost = sylvan("--resume", str(tmp_path / "moved"))
    assert lost.returncode == 2 and "Traceback" not in lost.stderr
    assert "named in" in lost.stderr and "--plugin" in lost.stderr, lost.stderr
    found = sylvan("--resume", str(tmp_path / "moved"), "--plugin", str(tmp_path / "elsewhere" / "l2_anchor.py"))
    assert found.returncode == 0, found.stderr
    assert (tmp_path / "moved" / "results.json").read_text() == (full / "results.json").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--resume", "{tmp}/nowhere"], "no config.yaml there"),
    (["--resume", "{tmp}/empty"], "no checkpoint in"),
    (["--resume", "{tmp}/empty", "--seed", "3"], "give only --resume RUN_DIR"),
    (["--resume", "{tmp}/odd_plugins"], "`plugins` must be a list"),
    (["--config_path", "{tmp}/odd_plugins/config.yaml"], "`plugins` must be a list"),
    (["--config_path", "{tmp}/listed_setting/config.yaml"], "setting must be a name (sylvan --list shows them), not ["),
    (["--config_path", "{tmp}/numbered_method/config.yaml"], "method must be a name (sylvan --list shows them), not 3"),
])
def test_resume_mistakes(tmp_path, args, message):
    config = {"setting": "class_incremental", "method": "naive"}
    for name, extra in (("empty", {}), ("odd_plugins", {"plugins": "examples/l2_anchor.py"}),
                        ("listed_setting", {"setting": ["class_incremental"]}), ("numbered_method", {"method": 3})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump({**config, **extra}))
    out = sylvan(*[a.format(tmp=tmp_path) for a in args])
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(("section", "values", "message"), [
    ("method_options", {"buffer_size": "abc"}, "method_options.buffer_size must be an integer, got 'abc'"),
    ("method_options", {"buffer_size": 2.5}, "must be an integer"),
    ("method_options", {"lr": "fast"}, "method_options.lr must be a number"),
    ("method_options", {"buffer_policy": ["reservoir"]}, "must be a string"),
    ("setting_options", {"batch_size": [1, 2]}, "setting_options.batch_size must be an integer"),
    ("setting_options", {"class_order": 3}, "setting_options.class_order must be a list"),
    ("setting_options", {"class_order": [0, "one"]}, "must be an integer"),
    ("setting_options", {"progress_bar": "maybe"}, "must be true or false"),
    ("run", {"save_checkpoints": 1}, "run.save_checkpoints must be true or false"),
    ("method_options", 5, "section 'method_options' must be a mapping"),
    ("run", [], "section 'run' must be a mapping of options, got []"),
])
def test_config_values_of_the_wrong_type_are_refused_with_the_option_named(section, values, message):
    from sylvan.cli import build_parser
    from sylvan.methods import Rehearsal
    from sylvan.settings import ClassIncrementalSetting

    with pytest.raises(ConfigurationError, match=re.escape(message)):
        build_parser(ClassIncrementalSetting, Rehearsal, {section: values})


def test_config_values_are_converted_to_their_fields_types():
    from sylvan.cli import build_parser
    from sylvan.methods import Rehearsal
    from sylvan.settings import ClassIncrementalSetting

    config = {"method_options": {"lr": 1, "buffer_size": 300.0, "buffer_policy": "prs"},
              "setting_options": {"class_order": [9, 8, 7, 6, 5, 4, 3, 2, 1, 0], "train_samples": None},
              "run": {"run_name": 2026}}
    args = build_parser(ClassIncrementalSetting, Rehearsal, config).parse_args([])
    assert args.method_options.lr == 1.0 and isinstance(args.method_options.lr, float)
    assert args.method_options.buffer_size == 300 and isinstance(args.method_options.buffer_size, int)
    assert args.setting_options.class_order[0] == 9 and args.setting_options.train_samples is None
    assert args.run.run_name == "2026"


def test_numbers_in_exponent_notation_are_read_from_a_config_file():
    """PyYAML follows YAML 1.1, where `1e-3` (no decimal point) is a string, not a number."""
    from sylvan.cli import build_parser
    from sylvan.methods import Rehearsal
    from sylvan.settings import ClassIncrementalSetting

    config = yaml.safe_load("method_options: {lr: 1e-3, weight_decay: 5E-4, buffer_size: 2e3}")
    assert config["method_options"]["lr"] == "1e-3"  # what the YAML library gives
    args = build_parser(ClassIncrementalSetting, Rehearsal, config).parse_args([])
    assert args.method_options.lr == 0.001 and args.method_options.weight_decay == 0.0005
    assert args.method_options.buffer_size == 2000 and isinstance(args.method_options.buffer_size, int)


@pytest.mark.parametrize(("keys", "message"), [
    ({"buffer_size": 500}, "'buffer_size' is an option: put it under method_options"),
    ({"seed": 1}, "'seed' is an option: put it under setting_options"),
    ({"results_dir": "elsewhere"}, "'results_dir' is an option: put it under run"),
    ({"method_option": {"lr": 0.1}}, "unknown keys ['method_option']"),
])
def test_a_config_file_key_outside_the_run_layout_is_refused(tmp_path, keys, message):
    """A misspelled or misplaced key would be ignored and the run would take the default."""
    from sylvan.cli import load_config

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"setting": "class_incremental", "method": "rehearsal", **keys}))
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        load_config(str(config))


def test_a_run_config_holds_only_the_keys_a_config_file_may_have():
    from sylvan.cli import CONFIG_KEYS, load_plugins
    from sylvan.methods import METHODS
    from sylvan.run.experiment import RunOptions, run_config
    from sylvan.settings import ClassIncrementalSetting

    load_plugins([str(REPO / "examples" / "l2_anchor.py")])
    recorded = run_config(ClassIncrementalSetting(), METHODS["l2_anchor"](), RunOptions(),
                          plugins=["examples/l2_anchor.py"])
    assert set(recorded) == set(CONFIG_KEYS)


def test_a_config_file_of_the_wrong_types_exits_2(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"setting": "online", "method": "rehearsal",
                                      "method_options": {"buffer_size": "abc"}}))
    out = sylvan("--config_path", str(config), "--results_dir", str(tmp_path / "res"))
    assert out.returncode == 2 and "buffer_size must be an integer" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "res").exists()


@pytest.mark.parametrize("args, given", [([], None), (["--progress_bar"], True), (["--progress_bar", "true"], True),
                                         (["--progress_bar", "false"], False)])
@pytest.mark.parametrize("terminal", [True, False])
def test_the_progress_bar_follows_the_terminal_unless_asked(monkeypatch, args, given, terminal):
    from sylvan.cli import build_parser
    from sylvan.methods import Naive
    from sylvan.settings import ClassIncrementalSetting

    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
    setting = build_parser(ClassIncrementalSetting, Naive, {}).parse_args(args).setting_options
    assert setting.progress_bar is given
    expected = terminal if given is None else given
    assert setting.shows_progress_bar is expected


def test_help_summarizes_each_method_in_whole_sentences():
    from dataclasses import dataclass

    from sylvan.cli import summary

    @dataclass
    class Undocumented:
        lr: float = 0.1

    class Documented:
        """First sentence. A second one, which with the first is longer than the limit.

        A later paragraph."""

    class Wordy:
        """A single sentence far longer than the limit, which is cut at a word and marked"""

    assert summary(Undocumented) == ""  # a dataclass's generated signature is not a summary
    assert summary(Documented, limit=40) == "First sentence."
    assert summary(Documented) == "First sentence. A second one, which with the first is longer than the limit."
    assert summary(Wordy, limit=30) == "A single sentence far..."
    out = sylvan("--help")
    assert out.returncode == 0 and "  rehearsal        targets online" in out.stdout
    assert "Experience replay. Needs no task boundaries, so it runs on every supervised setting." in out.stdout


@pytest.mark.parametrize("registry", ["methods", "settings"])
def test_each_option_is_described_by_its_own_comment(registry):
    """simple-parsing prefers the comment on the line above a field to its inline comment, and
    looks for either through the base classes: a field with both would show the line above it
    (another statement's comment, or the base's description of an overridden field)."""
    from simple_parsing.docstring import get_attribute_docstring

    from sylvan.methods import METHODS
    from sylvan.settings import SETTINGS

    for name, cls in sorted((METHODS if registry == "methods" else SETTINGS).items()):
        for field in dataclasses.fields(cls):
            if field.init:
                doc = get_attribute_docstring(cls, field.name)
                assert not (doc.comment_above and doc.comment_inline), (
                    f"{name} --{field.name}: help would read {doc.comment_above!r}, not {doc.comment_inline!r}"
                )


BROKEN_PLUGINS = {
    "unparsable": ("def f(:\n", r"SyntaxError: .* \({file}, line 1\)"),
    "raising": ("x = 1\nraise RuntimeError('no GPU here')\n", r"RuntimeError: no GPU here \({file}, line 2\)"),
    "importing": ("import a_module_nobody_has\n",
                  r"ModuleNotFoundError: No module named 'a_module_nobody_has' \({file}, line 1\)"),
    "taking_a_method_name": (
        "from sylvan.methods import Naive\n\nclass MyNaive(Naive):\n    name = 'rehearsal'\n",
        r"TypeError: MyNaive takes the name 'rehearsal', which is sylvan's own method "
        r"\(sylvan.methods.rehearsal.Rehearsal\); give it another name \({file}, line 3\)",
    ),
    "naming_itself_with_a_number": (
        "from sylvan.methods import Naive\n\nclass Fifth(Naive):\n    name = 5\n",
        r"TypeError: Fifth.name is 5: a method's name is given on the command line .* such as 'my_method' "
        r"\({file}, line 3\)",
    ),
    "naming_itself_with_spaces": (
        "from sylvan.settings import ClassIncrementalSetting\n\n"
        "class Spaced(ClassIncrementalSetting):\n    name = 'my setting'\n",
        r"TypeError: Spaced.name is 'my setting': a setting's name .* such as 'my_setting' \({file}, line 3\)",
    ),
    "taking_a_setting_name": (
        "from sylvan.settings import ClassIncrementalSetting\n\n"
        "class Mine(ClassIncrementalSetting):\n    name = 'online'\n",
        r"TypeError: Mine takes the name 'online', which is sylvan's own setting .*\({file}, line 3\)",
    ),
}


@pytest.mark.parametrize("as_module", [False, True])
@pytest.mark.parametrize("kind", sorted(BROKEN_PLUGINS))
def test_a_plugin_that_fails_to_load_is_named_with_the_line_that_failed(tmp_path, monkeypatch, kind, as_module):
    """The message points into the plugin's own code (not sylvan's frames or importlib's), and a
    plugin may not replace one of sylvan's own methods or settings under its name."""
    from sylvan.cli import load_plugins
    from sylvan.methods import METHODS, Rehearsal
    from sylvan.settings import SETTINGS, OnlineSetting

    source, message = BROKEN_PLUGINS[kind]
    file = tmp_path / f"broken_{kind}.py"
    file.write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = f"broken_{kind}" if as_module else str(file)
    with pytest.raises(ConfigurationError, match=f"--plugin {plugin} failed to load: "
                       + message.format(file=re.escape(str(file)))):
        load_plugins([plugin])
    assert METHODS["rehearsal"] is Rehearsal and SETTINGS["online"] is OnlineSetting


def test_a_plugin_module_that_does_not_exist_is_named(tmp_path):
    from sylvan.cli import load_plugins

    with pytest.raises(ConfigurationError, match=r"--plugin no_such_plugin.sub: cannot import it \(No module named"):
        load_plugins(["no_such_plugin.sub"])


def test_a_broken_plugin_file_exits_2_without_traceback(tmp_path):
    (tmp_path / "broken.py").write_text("raise ValueError('half written')\n")
    out = sylvan("--plugin", str(tmp_path / "broken.py"), "--list")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"ValueError: half written ({tmp_path / 'broken.py'}, line 1)" in out.stderr


UNBUILDABLE_PLUGINS = {
    "own_init": (
        "from dataclasses import dataclass\nfrom typing import ClassVar\nfrom sylvan.methods import Naive\n\n"
        "@dataclass\nclass OwnInit(Naive):\n    name: ClassVar[str] = 'own_init'\n    strength: float = 1.0\n\n"
        "    def __init__(self, foo):\n        self.foo = foo\n",
        r"OwnInit.__init__ does not take its option\(s\) lr, .*, strength and requires foo, which no option "
        r"gives: .*drop the __init__ .*\({file}, line 5\)",
    ),
    "not_a_dataclass": (
        "from typing import ClassVar\nfrom sylvan.methods import Naive\n\n"
        "class Plain(Naive):\n    name: ClassVar[str] = 'plain'\n    strength: float = 1.0\n",
        r"Plain is not a dataclass, so its field\(s\) strength would not be options: decorate it with "
        r"@dataclass .*\({file}, line 4\)",
    ),
    "setting_with_own_init": (
        "from sylvan.settings import ClassIncrementalSetting\n\n"
        "class Mine(ClassIncrementalSetting):\n    name = 'mine'\n\n"
        "    def __init__(self, **options):\n        super().__init__(**options)\n\n"
        "class Needy(ClassIncrementalSetting):\n    name = 'needy'\n\n"
        "    def __init__(self, data, **options):\n        super().__init__(**options)\n",
        r"Needy.__init__ requires data, which no option gives: .*\({file}, line 9\)",
    ),
}


@pytest.fixture
def registries():
    """The registries of settings and methods, restored after the test: a class a test defines
    registers itself, and one the command line refuses would be refused in every later test."""
    from sylvan.methods import METHODS
    from sylvan.settings import SETTINGS

    saved = dict(METHODS), dict(SETTINGS)
    yield METHODS, SETTINGS
    for registry, entries in zip((METHODS, SETTINGS), saved):
        registry.clear()
        registry.update(entries)


@pytest.mark.parametrize("kind", sorted(UNBUILDABLE_PLUGINS))
def test_a_plugin_class_the_command_line_cannot_build_is_refused_at_load(tmp_path, registries, kind):
    """A class whose own __init__ does not take its options, or whose fields are not dataclass
    fields, is refused where it is defined, not at run time with a traceback (nor, for
    fields, silently left out of the options)."""
    from sylvan.cli import load_plugins

    source, message = UNBUILDABLE_PLUGINS[kind]
    file = tmp_path / f"unbuildable_{kind}.py"
    file.write_text(source)
    with pytest.raises(ConfigurationError, match=message.format(file=re.escape(str(file)))):
        load_plugins([str(file)])


def test_every_builtin_setting_and_method_can_be_built_from_its_options():
    from sylvan.methods import METHODS
    from sylvan.registry import option_class_problem
    from sylvan.settings import SETTINGS

    assert {name: option_class_problem(cls) for name, cls in {**SETTINGS, **METHODS}.items()} == dict.fromkeys(
        {**SETTINGS, **METHODS})


def test_a_plugin_method_with_its_own_init_exits_2_without_traceback(tmp_path):
    source, _ = UNBUILDABLE_PLUGINS["own_init"]
    (tmp_path / "own_init.py").write_text(source)
    out = sylvan("--plugin", str(tmp_path / "own_init.py"), "--setting", "class_incremental", "--method", "own_init",
                 "--dataset", "synthetic", "--results_dir", str(tmp_path / "results"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "OwnInit.__init__ does not take its option(s)" in out.stderr and not (tmp_path / "results").exists()


@pytest.mark.parametrize(("options", "shown"), [
    ([], set()),
    (["--buffer_policy", "gss"], {"--gss_compared", "--gss_batch_gate"}),
    (["--buffer_policy=aser"], {"--aser_neighbours", "--aser_samples_per_class"}),
])
def test_help_shows_a_buffer_policys_options_only_where_it_is_chosen(options, shown, capsys):
    from sylvan.cli import run

    with pytest.raises(SystemExit):
        run(["--setting", "class_incremental", "--method", "rehearsal", *options, "--help"])
    out = capsys.readouterr().out
    policy_options = {"--gss_compared", "--gss_batch_gate", "--aser_neighbours", "--aser_samples_per_class"}
    assert {option for option in policy_options if option in out} == shown
    assert "--buffer_size" in out


def test_the_aser_method_shows_the_aser_options_whatever_the_policy(capsys):
    from sylvan.cli import run

    with pytest.raises(SystemExit):
        run(["--setting", "class_incremental", "--method", "aser", "--help"])
    out = capsys.readouterr().out
    assert "--aser_neighbours" in out and "--gss_compared" not in out


def test_a_buffer_policys_options_reach_the_method_from_the_command_line_and_a_config_file(tmp_path):
    from sylvan.buffers import GSSOptions
    from sylvan.cli import parse_options
    from sylvan.methods import ASER, Rehearsal
    from sylvan.settings import ClassIncrementalSetting

    _, method, _, unknown = parse_options(ClassIncrementalSetting, Rehearsal, {}, [
        "--buffer_policy", "gss", "--gss_compared", "3", "--gss_batch_gate", "true"])
    assert not unknown and method.policy_options() == GSSOptions(gss_compared=3, gss_batch_gate=True)
    # a run's config.yaml records every policy's options: the others' defaults pass, values are refused
    recorded = {"method_options": {**method.hparams(), "buffer_policy": "reservoir", "gss_compared": 10,
                                   "gss_batch_gate": False}}
    assert recorded["method_options"]["aser_neighbours"] == 5
    _, again, _, _ = parse_options(ClassIncrementalSetting, Rehearsal, recorded, [])
    assert again.buffer_policy == "reservoir" and again.policy_options() is None
    _, gss, _, _ = parse_options(ClassIncrementalSetting, Rehearsal, {"method_options": method.hparams()}, [])
    assert gss == method
    with pytest.raises(ConfigurationError, match="method_options.gss_compared 3 has no effect: it is the gss policy's"):
        parse_options(ClassIncrementalSetting, Rehearsal, {"method_options": {**method.hparams(),
                                                                               "buffer_policy": "fifo"}}, [])
    _, aser, _, _ = parse_options(ClassIncrementalSetting, ASER, {}, ["--aser_neighbours", "2"])
    assert aser.aser_neighbours == 2 and aser.policy_options().aser_neighbours == 2


def test_another_policys_option_on_the_command_line_says_which_policy_takes_it(tmp_path):
    out = sylvan("--setting", "class_incremental", "--method", "rehearsal", "--dataset", "synthetic",
                 "--gss_compared", "5", "--results_dir", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert ("--gss_compared is an option of the gss buffer policy: it takes effect with --buffer_policy gss"
            in out.stderr)


def test_resuming_with_a_plugin_whose_code_differs_is_refused_naming_both_files(tmp_path):
    """The method's name alone does not say which code a run trained with: a plugin of the same
    name with other code would resume the run half one method and half another. The run records
    each plugin class's file and the SHA-256 of its code; the same code from another place
    resumes, other code is refused, naming both."""
    (tmp_path / "plugins").mkdir()
    original = (REPO / "examples" / "l2_anchor.py").read_text()
    (tmp_path / "plugins" / "l2_anchor.py").write_text(original)
    (tmp_path / "other.py").write_text(original + "\n\nANCHOR_SCALE = 2.0  # other code under the same name\n")
    assert (tmp_path / "other.py").read_text() != original
    out = sylvan("--plugin", "plugins/l2_anchor.py", "--setting", "class_incremental", "--method", "l2_anchor",
                 *FAST, "--epochs", "1", "--results_dir", "res", "--run_name", "run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "res" / "run"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    digest = hashlib.sha256(original.encode()).hexdigest()
    assert config["plugin_code"] == {"method l2_anchor": {
        "file": str((tmp_path / "plugins" / "l2_anchor.py").resolve()), "sha256": digest}}
    (run_dir / "checkpoints" / "after_stage_1.pt").unlink()

    other = sylvan("--resume", str(run_dir), "--plugin", str(tmp_path / "other.py"))
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "method l2_anchor" in other.stderr and str(tmp_path / "other.py") in other.stderr, other.stderr
    assert str((tmp_path / "plugins" / "l2_anchor.py").resolve()) in other.stderr and digest[:12] in other.stderr

    shutil.copy(tmp_path / "plugins" / "l2_anchor.py", tmp_path / "copy.py")  # the same code elsewhere
    same = sylvan("--resume", str(run_dir), "--plugin", str(tmp_path / "copy.py"))
    assert same.returncode == 0, same.stderr


@pytest.mark.parametrize(("setting", "hidden", "shown"), [
    ("osaka", ["--batch_size", "--blurry", "--initial_classes", "--class_order", "--random_class_order",
               "--train_samples", "--validation_fraction", "--image_cache", "--nb_tasks"],
     ["--n_ways", "--stationarity", "--dataset", "--seed"]),
    ("dataset_stream", ["--dataset", "--initial_classes", "--class_order", "--random_class_order"],
     ["--stream", "--nb_tasks", "--batch_size"]),
])
def test_help_shows_only_the_options_that_apply(capsys, setting, hidden, shown):
    """A setting's options that it refuses (inherited fields it has no use for) are left out of
    its --help, usage line included; they are still refused, with why, where given."""
    from sylvan.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--setting", setting, "--method", "naive", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    flags = set(re.findall(r"--\w+", out))
    assert not flags & set(hidden), sorted(flags & set(hidden))
    assert set(shown) <= flags
