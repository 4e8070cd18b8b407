"""The fault campaign: bad input and faults a new user meets, each run as a command, with what it
must do (a clear message and a non-zero exit, no traceback, nothing written where it can be
known before; or, for the faults of a run, its results kept). Prints one row per case and exits
with 1 if any case does not hold.

    python benchmarks/fault_campaign.py            # every case (about 4 minutes on 2 cores)
    python benchmarks/fault_campaign.py --only seed help_pipe
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAST = ["--dataset", "digits", "--nb_tasks", "3", "--progress_bar", "false", "--accelerator", "cpu"]


def sylvan(*args: str, env: dict | None = None, limit: int | None = None, **kwargs) -> subprocess.CompletedProcess:
    preexec = None if limit is None else (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})}, preexec_fn=preexec, **kwargs)


def refused(out: subprocess.CompletedProcess, phrase: str, status: int = 2) -> tuple[bool, str]:
    """Whether `out` exited with `status` and said `phrase`, without a traceback."""
    said = out.stderr.strip().splitlines()[0] if out.stderr.strip() else ""
    return out.returncode == status and phrase in out.stderr and "Traceback" not in out.stderr, said


def case_devices(tmp: Path):
    out = sylvan("--setting", "class_incremental", "--method", "rehearsal", "--devices", "64", *FAST,
                 "--results_dir", str(tmp / "r"))
    ok, said = refused(out, "CPU worker processes")
    return ok and not (tmp / "r").exists(), said


def case_orphans(tmp: Path):
    """Worker 1 slow to start (30 s): worker 0 gives up after --worker_timeout 15; no worker outlives it."""
    pids = tmp / "pids"
    pids.mkdir()
    env = {"DYING_WORKER_PID_DIR": str(pids), "DYING_WORKER_SLOW_START": "30"}
    with open(tmp / "out.txt", "w") as output:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "cli.py"), "--plugin", str(REPO / "tests" / "plugins" / "dying_worker.py"),
             "--setting", "distributed", "--method", "dying_worker", "--devices", "2", *FAST, "--worker_timeout", "15",
             "--results_dir", str(tmp / "r")], stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **env})
        status = process.wait(timeout=300)
    time.sleep(3)
    alive = Path(f"/proc/{int((pids / 'worker1.pid').read_text())}").exists()
    return status == 1 and not alive, f"status {status}; worker 1 {'alive' if alive else 'ended'} 3 s after worker 0"


def interrupted_run(tmp: Path, name: str = "r", *options: str) -> Path:
    sylvan("--setting", "class_incremental", "--method", "rehearsal", *FAST, "--batch_size", "2",
           "--results_dir", str(tmp), "--run_name", name, *options)
    for stage in (1, 2):
        (tmp / name / "checkpoints" / f"after_stage_{stage}.pt").unlink()
    return tmp / name


def case_concurrent_resume(tmp: Path):
    run = interrupted_run(tmp)
    first = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "--resume", str(run)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    while f"process {first.pid} " not in (run / "run.lock").read_text():  # the first one holds the folder
        time.sleep(0.05)
    second = sylvan("--resume", str(run))
    first.communicate(timeout=300)
    rows = (run / "logs" / "train.csv").read_text().splitlines()[1:]
    steps = [row.split(",")[0] for row in rows]
    ok, said = refused(second, "is in use by process")
    return ok and first.returncode == 0 and len(steps) == len(set(steps)), said


def case_damaged_log(tmp: Path):
    run = interrupted_run(tmp)
    log = run / "logs" / "train.csv"
    log.write_bytes(log.read_bytes()[:10] + b"garbage line\n")
    return refused(sylvan("--resume", str(run)), "training log")


def case_plugin_memory(tmp: Path):
    out = sylvan("--plugin", str(REPO / "examples" / "l2_anchor.py"), "--setting", "class_incremental", "--method",
                 "l2_anchor", *FAST, "--memory_budget", "100000", "--results_dir", str(tmp))
    return out.returncode == 1 and "--memory_budget 100,000" in out.stderr, out.stderr.strip().splitlines()[-1]


def case_er_ace_steps(tmp: Path):
    sylvan("--setting", "class_incremental", "--method", "er_ace", *FAST, "--results_dir", str(tmp), "--run_name", "r")
    steps = [row.split(",")[0] for row in (tmp / "r" / "logs" / "train.csv").read_text().splitlines()[1:]]
    return len(steps) == len(set(steps)) > 1, f"steps {', '.join(steps)}"


def summarize_runs(tmp: Path) -> None:
    for dataset, method in (("digits", "naive"), ("synthetic", "rehearsal")):
        sylvan("--setting", "class_incremental", "--method", method, "--dataset", dataset, "--nb_tasks", "3",
               "--progress_bar", "false", "--results_dir", str(tmp / "runs"), "--run_name", method)


def case_summarize_datasets(tmp: Path):
    summarize_runs(tmp)
    out = sylvan("--summarize", str(tmp / "runs"), "--pareto", str(tmp / "p.png"))
    rows = (tmp / "p.csv").read_text().splitlines()
    ok = out.returncode == 0 and "dataset=digits" in out.stdout and "dataset=synthetic" in out.stdout
    return ok and any("dataset=digits" in row for row in rows), rows[1].split(",")[0]


def case_summarize_nan(tmp: Path):
    summarize_runs(tmp)
    results = tmp / "runs" / "naive" / "results.json"
    figure = '"final_average_accuracy": '
    results.write_text(results.read_text().replace(figure, f'{figure}NaN, "x": '))
    out = sylvan("--summarize", str(tmp / "runs"))
    return out.returncode == 0 and "not a finite number" in out.stdout, out.stdout.strip().splitlines()[-2]


def case(argv: list[str], phrase: str, env: dict | None = None) -> Callable[[Path], tuple[bool, str]]:
    def run(tmp: Path):
        out = sylvan(*argv, "--results_dir", str(tmp / "r"), env=env)
        ok, said = refused(out, phrase)
        return ok and not (tmp / "r").exists(), said
    return run


class Skipped(Exception):
    """A case that cannot run here (its data is absent)."""


def mnist_copy(tmp: Path) -> Path:
    source = Path(os.environ.get("SYLVAN_TEST_DATA", REPO.parent / "shared" / "data")) / "MNIST"
    if not (source / "raw").is_dir():
        raise Skipped(f"no MNIST copy at {source} (set SYLVAN_TEST_DATA)")
    shutil.copytree(source, tmp / "data" / "MNIST")
    return tmp / "data" / "MNIST" / "raw"


def case_truncated_mnist(tmp: Path):
    path = mnist_copy(tmp) / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100_000])
    ok, said = case(["--setting", "class_incremental", "--method", "naive", "--dataset", "mnist", "--data_dir",
                     str(tmp / "data")], "is damaged", env={"SYLVAN_OFFLINE": ""})(tmp)
    return ok and "SYLVAN_OFFLINE" not in said, said


def case_mnist_labels(tmp: Path):
    path = mnist_copy(tmp) / "t10k-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(path.read_bytes()))
    labels[-1] = 12
    path.write_bytes(gzip.compress(bytes(labels)))
    return case(["--setting", "class_incremental", "--method", "naive", "--dataset", "mnist", "--data_dir",
                 str(tmp / "data")], "label 12")(tmp)


def case_full_disk(what: str) -> Callable[[Path], tuple[bool, str]]:
    def run(tmp: Path):
        options = [] if what == "checkpoint" else ["--save_checkpoints", "false"]
        out = sylvan("--setting", "class_incremental", "--method", "rehearsal", *FAST, "--results_dir", str(tmp),
                     *options, limit=60_000 if what == "checkpoint" else 20_000)
        return refused(out, "The results of the tasks finished before are kept in", status=1)
    return run


def case_help_pipe(tmp: Path):
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    return process.wait() == 141 and not err, f"status {process.returncode}, stderr {err[-60:]!r}"


def case_checkpoint(damage: str) -> Callable[[Path], tuple[bool, str]]:
    def run(tmp: Path):
        path = interrupted_run(tmp) / "checkpoints" / "after_stage_0.pt"
        if damage == "pickled object":
            import torch  # only here: the other cases run without loading it

            state = torch.load(path, weights_only=False)
            state["method"]["extra"] = Path("planted")
            torch.save(state, path)
        else:
            path.write_bytes({"random bytes": os.urandom(4096), "cut short": path.read_bytes()[:300],
                              "empty": b""}[damage])
        ok, said = refused(sylvan("--resume", str(path.parents[1])),
                           "holds objects other than plain state" if damage == "pickled object" else "is damaged")
        return ok and "weights_only" not in said, said
    return run


def case_run_config(tmp: Path):
    (tmp / "config.yaml").write_text("setting: [\n")
    return refused(sylvan("--resume", str(tmp)), "the run's configuration")


def case_help_defaults(tmp: Path):
    out = sylvan("--setting", "class_incremental", "--method", "rehearsal", "--help")
    twice = [line for line in " ".join(out.stdout.split()).split(" --") if line.lower().count("default:") > 1]
    return out.returncode == 0 and not twice, f"{len(twice)} options with two defaults"


def case_unresumable(tmp: Path):
    plugin = tmp / "forgetful.py"
    plugin.write_text("\n".join([
        "from dataclasses import dataclass", "from typing import ClassVar", "from sylvan.methods import Naive", "",
        "@dataclass", "class Forgetful(Naive):", "    name: ClassVar[str] = 'forgetful'", "",
        "    def on_task_end(self, task_id):", "        self.kept = task_id", ""]))
    return case(["--plugin", str(plugin), "--setting", "class_incremental", "--method", "forgetful", *FAST],
                "--save_checkpoints false")(tmp)


def case_unfinished_finish(tmp: Path):
    """Stopped after its last checkpoint, before its plots and final results: --resume finishes it."""
    sylvan("--setting", "class_incremental", "--method", "rehearsal", *FAST, "--results_dir", str(tmp), "--run_name",
           "r")
    run = tmp / "r"
    results = run / "results.json"
    results.write_text(results.read_text().replace('"complete": true', '"complete": false'))
    for plot in run.glob("*.png"):
        plot.unlink()
    out = sylvan("--resume", str(run))
    again = sylvan("--resume", str(run))
    ok = out.returncode == 0 and '"complete": true' in results.read_text() and (run / "accuracy_curve.png").is_file()
    finished, said = refused(again, "the run is complete")
    return ok and finished, said


def case_rl_stage_steps(tmp: Path):
    sylvan("--setting", "incremental_rl", "--method", "dqn", "--nb_tasks", "2", "--steps_per_task", "300",
           "--eval_episodes", "2", "--max_episode_steps", "60", "--learning_starts", "50", "--results_dir", str(tmp),
           "--run_name", "r")
    steps = [int(float(row.split(",")[1])) for row in (tmp / "r" / "logs" / "stages.csv").read_text().splitlines()[1:]]
    return len(steps) == 2 and 0 < steps[0] < steps[1], f"stage steps {steps}"


def case_budget_resume(tmp: Path):
    sylvan("--setting", "class_incremental", "--method", "der", *FAST, "--buffer_size", "50", "--memory_budget",
           "75000", "--results_dir", str(tmp), "--run_name", "r")
    return refused(sylvan("--resume", str(tmp / "r")), "start it again with --memory_budget of at least")


def case_plugin_switch(tmp: Path):
    plugin, other = tmp / "anchor.py", tmp / "other.py"
    plugin.write_text((REPO / "examples" / "l2_anchor.py").read_text())
    other.write_text(plugin.read_text() + "\nOTHER_CODE = True\n")
    sylvan("--plugin", str(plugin), "--setting", "class_incremental", "--method", "l2_anchor", *FAST,
           "--results_dir", str(tmp), "--run_name", "r")
    (tmp / "r" / "checkpoints" / "after_stage_2.pt").unlink()
    return refused(sylvan("--resume", str(tmp / "r"), "--plugin", str(other)), "the code of the method l2_anchor")


def case_checkpoint_swapped(tmp: Path):
    run = interrupted_run(tmp)
    sylvan("--setting", "class_incremental", "--method", "rehearsal", *FAST, "--batch_size", "2", "--results_dir",
           str(tmp), "--run_name", "other")
    shutil.copy(tmp / "other" / "checkpoints" / "after_stage_0.pt", run / "checkpoints" / "after_stage_0.pt")
    return refused(sylvan("--resume", str(run)), "is a checkpoint of another run")


def case_lock_folder(tmp: Path):
    run = interrupted_run(tmp)
    (run / "run.lock").unlink()
    (run / "run.lock").mkdir()
    return refused(sylvan("--resume", str(run)), "run.lock is a folder")


def case_config_file(content: bytes, phrase: str) -> Callable[[Path], tuple[bool, str]]:
    def run(tmp: Path):
        (tmp / "config.yaml").write_bytes(content)
        return case(["--config_path", str(tmp / "config.yaml")], phrase)(tmp)
    return run


def case_plugin_exit(tmp: Path):
    (tmp / "leaving.py").write_text("import sys\nsys.exit(0)\n")
    return case(["--plugin", str(tmp / "leaving.py"), "--setting", "class_incremental", "--method", "naive"],
                "called sys.exit(0) at import")(tmp)


def case_failed_load_folders(tmp: Path):
    ok, said = case(["--setting", "class_incremental", "--method", "naive", "--dataset", "mnist", "--data_dir",
                     str(tmp / "typo" / "nested")], "downloads are off", env={"SYLVAN_OFFLINE": "1"})(tmp)
    return ok and not (tmp / "typo").exists(), said


def case_osaka_help(tmp: Path):
    out = sylvan("--setting", "osaka", "--method", "naive", "--help")
    shown = [flag for flag in ("--batch_size", "--blurry", "--class_order", "--image_cache") if flag in out.stdout]
    return out.returncode == 0 and not shown and "--n_ways" in out.stdout, f"refused options shown: {shown}"


def case_summary_csv(tmp: Path):
    summarize_runs(tmp)
    out = sylvan("--summarize", str(tmp / "runs"), "--summary_csv", str(tmp / "s.csv"))
    raw = (tmp / "s.csv").read_bytes()
    header = raw.decode().splitlines()[0]
    numeric = "final_average_accuracy mean" in header and "\u00b1" not in raw.decode()
    ok = out.returncode == 0 and b"\r" not in raw and numeric
    return ok, header[:100]


def case_wandb_offline(tmp: Path):
    env = {key: "" for key in os.environ if key.startswith("WANDB_")}
    out = sylvan("--setting", "class_incremental", "--method", "naive", *FAST, "--wandb_project", "p",
                 "--results_dir", str(tmp), env={**env, "HOME": str(tmp), "WANDB_MODE": "offline"})
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.lower().startswith("wandb")
             or "Weights & Biases" in line]
    return out.returncode == 0 and len(lines) == 1 and "wandb sync" in lines[0], lines[0][:100] if lines else "nothing"


CASES: dict[str, Callable[[Path], tuple[bool, str]]] = {
    "devices_beyond_cores": case_devices,
    "orphaned_workers": case_orphans,
    "concurrent_resume": case_concurrent_resume,
    "damaged_train_csv": case_damaged_log,
    "plugin_memory": case_plugin_memory,
    "er_ace_log_steps": case_er_ace_steps,
    "summarize_datasets": case_summarize_datasets,
    "summarize_nan": case_summarize_nan,
    "stream_length": case(["--setting", "dataset_stream", "--method", "naive", "--stream_length", "1000000"],
                          "--stream_length must be"),
    "seed": case(["--setting", "class_incremental", "--method", "naive", "--seed", "4294967296"], "--seed must be"),
    "buffer_size": case(["--setting", "class_incremental", "--method", "rehearsal", "--buffer_size", "100000000000"],
                        "more than this machine's"),
    "truncated_mnist_gz": case_truncated_mnist,
    "mnist_labels_out_of_range": case_mnist_labels,
    "disk_full_checkpoint": case_full_disk("checkpoint"),
    "disk_full_plot": case_full_disk("plot"),
    "wandb_mode_bogus": case(["--setting", "class_incremental", "--method", "naive", "--wandb_project", "p"],
                             "WANDB_MODE", env={"WANDB_MODE": "bogus"}),
    "help_pipe": case_help_pipe,
    "checkpoint_pickled_object": case_checkpoint("pickled object"),
    "checkpoint_random_bytes": case_checkpoint("random bytes"),
    "checkpoint_cut_short": case_checkpoint("cut short"),
    "checkpoint_empty": case_checkpoint("empty"),
    "offline_missing_data": case(["--setting", "class_incremental", "--method", "naive", "--dataset", "mnist",
                                  "--data_dir", "/nonexistent/data"], "downloads are off",
                                 env={"SYLVAN_OFFLINE": "1"}),
    "malformed_run_config": case_run_config,
    "help_defaults_once": case_help_defaults,
    "unresumable_method": case_unresumable,
    "unfinished_final_results": case_unfinished_finish,
    "rl_stage_log_steps": case_rl_stage_steps,
    "resume_over_budget": case_budget_resume,
    "resume_with_other_plugin_code": case_plugin_switch,
    "checkpoint_of_another_run": case_checkpoint_swapped,
    "run_lock_is_a_folder": case_lock_folder,
    "nan_in_a_float_list": case(["--setting", "osaka", "--method", "naive", "--mode_probabilities", "0.5", "nan",
                                 "0.5"], "--mode_probabilities must hold finite numbers"),
    "config_not_text": case_config_file(bytes(range(256)), "is not a text file"),
    "config_key_twice": case_config_file(b"setting: class_incremental\nmethod: naive\nmethod_options:\n  lr: 0.1\n"
                                         b"  lr: 0.5\n", "'lr' is given twice"),
    "empty_stream_name": case(["--setting", "dataset_stream", "--method", "naive", "--stream", "mnist,,digits"],
                              "is empty"),
    "mntdp_budget_up_front": case(["--setting", "dataset_stream", "--method", "mntdp", "--stream_length", "2",
                                   "--memory_budget", "1000"], "mntdp would hold at least"),
    "plugin_exits_at_import": case_plugin_exit,
    "failed_load_leaves_no_folder": case_failed_load_folders,
    "typo_suggestion": case(["--setting", "class_incremental", "--method", "rehersal"], "did you mean 'rehearsal'?"),
    "stream_typo_suggestion": case(["--setting", "dataset_stream", "--method", "naive", "--stream", "S_MINUS_OFFLINE"],
                                   "did you mean 's_minus_offline'?"),
    "osaka_help_applicable_only": case_osaka_help,
    "summary_csv_numeric": case_summary_csv,
    "wandb_offline_one_line": case_wandb_offline,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), help="run these cases alone")
    args = parser.parse_args()
    failed, skipped = 0, 0
    print(f"{'case':<28} {'holds':<7} {'seconds':>7}  what it said")
    for name in args.only or CASES:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            try:
                ok, said = CASES[name](Path(folder))
                verdict = "yes" if ok else "NO"
            except Skipped as reason:
                ok, said, verdict = True, str(reason), "skipped"
                skipped += 1
            except Exception as error:  # noqa: BLE001 - a case that breaks does not hold
                ok, said, verdict = False, f"{type(error).__name__}: {error}", "NO"
        failed += not ok
        print(f"{name:<28} {verdict:<7} {time.perf_counter() - started:7.1f}  {said[:150]}", flush=True)
    ran = len(args.only or CASES) - skipped
    print(f"{ran - failed} of {ran} cases hold" + (f" ({skipped} skipped)" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
