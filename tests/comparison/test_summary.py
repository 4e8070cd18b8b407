"""`sylvan --summarize`: runs grouped by configuration across seeds, mean ± std of their figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from sylvan.comparison.summary import find_runs, group_runs, load_run, mean_std, summarize, summary_rows
from sylvan.errors import ConfigurationError
from tests.cli.test_cli import FAST, sylvan


def write_run(root: Path, name: str, seed: int, lr: float, final: float, complete: bool = True,
              data_dir: str = "data", wall_time: float = 2.0, image_cache: str | None = None,
              dataset: str = "digits") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    config = {
        "setting": "class_incremental", "method": "naive",
        "setting_options": {"seed": seed, "dataset": dataset, "data_dir": data_dir, "progress_bar": None,
                            "image_cache": image_cache},
        "method_options": {"lr": lr, "optimizer": "sgd"},
        "run": {"results_dir": str(root), "run_name": name},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    results = {"setting": "class_incremental", "method": "naive", "measure": "accuracy", "complete": complete,
               "final_average_accuracy": final, "forgetting": 1 - final, "online_accuracy": None}
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "runtime.json").write_text(json.dumps({"total_wall_time": wall_time}))
    return folder


def test_runs_differing_only_in_seed_or_paths_form_one_group(tmp_path):
    for seed, final in enumerate([0.70, 0.80, 0.90]):  # data_dir and image_cache cannot change a figure
        write_run(tmp_path / "sweep", f"a{seed}", seed, lr=0.1, final=final, data_dir=f"d{seed}",
                  image_cache=None if seed == 0 else f"cache{seed}")
    for seed, final in enumerate([0.50, 0.60]):
        write_run(tmp_path / "sweep" / "nested", f"b{seed}", seed, lr=0.01, final=final)
    write_run(tmp_path / "sweep", "stopped", 3, lr=0.1, final=0.1, complete=False)
    runs = [load_run(folder) for folder in find_runs([tmp_path / "sweep"])]
    assert len(runs) == 6
    groups, unfinished = group_runs(runs)
    assert [[run.seed for run in group.runs] for group in groups] == [[0, 1], [0, 1, 2]]  # lr 0.01, then 0.1
    assert [run.folder.name for run in unfinished] == ["stopped"]
    assert groups[1].values("final_average_accuracy") == [0.70, 0.80, 0.90]

    table = summarize([tmp_path / "sweep"], csv_path=tmp_path / "summary.csv").splitlines()
    rows = {line.split("|")[2].strip(): [cell.strip() for cell in line.split("|")] for line in table[2:4]}
    assert rows["lr=0.1"][3] == "0 1 2" and rows["lr=0.1"][4] == "80.00 ± 10.00"  # percent, sample std
    assert rows["lr=0.01"][4] == "55.00 ± 7.07" and rows["lr=0.01"][5] == "45.00 ± 7.07"  # forgetting
    assert "online_accuracy" not in table[0]  # no group has it
    assert any("left out, not finished" in line and "stopped" in line for line in table)
    assert table[-1] == "5 finished run(s) in 2 configuration(s)"
    with open(tmp_path / "summary.csv") as f:
        saved = list(csv.reader(f))
    assert saved[0][:6] == ["setting", "method", "options", "seeds", "final_average_accuracy mean",
                            "final_average_accuracy std"]
    assert len(saved) == 3


def test_the_problem_a_run_solved_is_shown_wherever_runs_differ_in_it(tmp_path):
    """naive ran on digits, der on MNIST: each pair alone has one dataset, but the rows must
    still say which, or they read as runs of one problem."""
    write_run(tmp_path, "naive", 0, lr=0.1, final=0.5, dataset="digits")
    folder = write_run(tmp_path, "der", 0, lr=0.1, final=0.9, dataset="mnist")
    (folder / "config.yaml").write_text((folder / "config.yaml").read_text().replace("method: naive", "method: der"))
    header, rows = summary_rows(group_runs([load_run(f) for f in find_runs([tmp_path])])[0])
    described = {row[1]: row[2] for row in rows}
    assert described == {"naive": "dataset=digits", "der": "dataset=mnist"}


def test_a_seed_run_again_counts_once_with_its_latest_run(tmp_path):
    """A repeat of a seed is not a new sample: counted twice, it would shrink the std."""
    import os

    runs = {name: write_run(tmp_path, name, seed, lr=0.1, final=final)
            for name, seed, final in (("z_first", 0, 0.60), ("a_again", 0, 0.70), ("other", 1, 0.90))}
    for minute, name in enumerate(("z_first", "other", "a_again")):  # the order they finished in
        os.utime(runs[name] / "results.json", (1e9 + 60 * minute, 1e9 + 60 * minute))
    groups, _ = group_runs([load_run(folder) for folder in find_runs([tmp_path])])
    assert [run.folder.name for run in groups[0].runs] == ["a_again", "other"]
    assert [(left.folder.name, kept.folder.name) for left, kept in groups[0].repeats] == [("z_first", "a_again")]
    assert groups[0].values("final_average_accuracy") == [0.70, 0.90]
    table = summarize([tmp_path]).splitlines()
    assert table[2].split("|")[3].strip() == "0 1" and "80.00 ± 14.14" in table[2]
    assert table[3] == f"left out, an earlier run of seed 0 (counted: {runs['a_again']}): {runs['z_first']}"
    assert table[-1] == "2 finished run(s) in 1 configuration(s)"


def test_a_run_that_cannot_be_read_is_left_out_with_its_reason(tmp_path):
    write_run(tmp_path, "good", 0, lr=0.1, final=0.8)
    damaged = write_run(tmp_path, "damaged", 1, lr=0.1, final=0.9)
    (damaged / "results.json").write_text("{")
    table = summarize([tmp_path]).splitlines()
    assert "80.00" in table[2] and table[-1] == "1 finished run(s) in 1 configuration(s)"
    assert any(line.startswith(f"left out, cannot read the run in {damaged}: Expecting") for line in table), table
    (tmp_path / "good" / "config.yaml").write_text("setting: [")
    with pytest.raises(ConfigurationError, match="--summarize: cannot read the run in"):
        summarize([tmp_path])  # nothing left to summarize


@pytest.mark.parametrize(("file", "edit", "reason"), [
    ("results.json", lambda d: d.update(final_average_accuracy="abc"),
     "results.json's final_average_accuracy is 'abc', not a number"),
    ("results.json", lambda d: d.update(forgetting=[1, 2]), "results.json's forgetting is [1, 2], not a number"),
    ("results.json", lambda d: d.update(final_average_accuracy=True),
     "results.json's final_average_accuracy is True, not a number"),
    ("results.json", lambda d: d.update(measure=3), "results.json's measure is 3, not a name"),
    ("results.json", lambda d: d.update(final_average_accuracy=float("nan")),
     "results.json's final_average_accuracy is NaN, not a finite number"),
    ("results.json", lambda d: d.update(forgetting=float("inf")),
     "results.json's forgetting is Infinity, not a finite number"),
    ("results.json", lambda d: d.update(cost={"memory_bytes": float("-inf")}),
     "results.json's cost memory_bytes is -Infinity, not a finite number"),
    ("results.json", lambda d: [1, 2], "results.json holds list, not an object of metrics"),
    ("config.yaml", lambda d: [1, 2], "config.yaml holds list, not a mapping of options"),
    ("config.yaml", lambda d: d.update(method=["naive"]), "config.yaml's method is ['naive'], not a name"),
    ("config.yaml", lambda d: d.update(setting_options=5), "config.yaml's setting_options is 5, not a mapping"),
])
def test_a_run_whose_files_hold_something_else_is_left_out_with_its_reason(tmp_path, file, edit, reason):
    """Files that parse but are not laid out as sylvan writes them (edited by hand, or another
    program's files under these names) are left out with the reason, not a traceback, nor a
    row of wrong figures."""
    write_run(tmp_path, "good", 0, lr=0.1, final=0.8)
    odd = write_run(tmp_path, "odd", 1, lr=0.1, final=0.9)
    path = odd / file
    data = json.loads(path.read_text()) if file.endswith(".json") else yaml.safe_load(path.read_text())
    data = edit(data) or data
    path.write_text(json.dumps(data) if file.endswith(".json") else yaml.safe_dump(data))
    table = summarize([tmp_path]).splitlines()
    assert "80.00" in table[2] and table[-1] == "1 finished run(s) in 1 configuration(s)", table
    assert f"left out, cannot read the run in {odd}: {reason}" in "\n".join(table), table


def test_a_run_with_figures_that_are_not_numbers_never_replaces_a_valid_run_of_its_seed(tmp_path):
    """A later run of seed 0 whose results.json holds NaN is left out: the valid run of seed 0 is
    counted, not replaced."""
    import os

    valid = write_run(tmp_path, "valid", 0, lr=0.1, final=0.8)
    broken = write_run(tmp_path, "broken", 0, lr=0.1, final=0.9)
    results = json.loads((broken / "results.json").read_text())
    results["final_average_accuracy"] = float("nan")
    (broken / "results.json").write_text(json.dumps(results))
    os.utime(valid / "results.json", (1e9, 1e9))  # the broken run finished later
    table = summarize([tmp_path]).splitlines()
    assert "80.00" in table[2] and table[-1] == "1 finished run(s) in 1 configuration(s)", table
    reason = "results.json's final_average_accuracy is NaN"
    assert f"left out, cannot read the run in {broken}: {reason}" in "\n".join(table)


def test_a_run_stopped_in_its_first_task_is_named_below_the_table(tmp_path):
    """A run killed before its first task ended has its config.yaml and provenance.json, and no
    results.json yet: it is named as unfinished, with the --resume that would say so, not skipped."""
    write_run(tmp_path, "finished", 0, lr=0.1, final=0.8)
    stopped = write_run(tmp_path, "stopped", 1, lr=0.1, final=0.8)
    (stopped / "results.json").unlink()
    (stopped / "provenance.json").write_text(json.dumps({"history": []}))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.yaml").write_text("setting: x\n")  # a config file, not a run's folder
    table = summarize([tmp_path]).splitlines()
    assert f"left out, not finished: {stopped} (stopped before its first task ended)" in table, table
    assert not any("notes" in line for line in table)
    assert table[-1] == "1 finished run(s) in 1 configuration(s)"


def test_mean_std_formats():
    assert mean_std([], 100) == "-"
    assert mean_std([0.5], 100) == "50.00"
    assert mean_std([1.0, 3.0], 1.0) == "2.00 ± 1.41"


def test_folders_without_runs_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="no such folder"):
        find_runs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigurationError, match="no run folder"):
        find_runs([tmp_path / "empty"])


def test_the_command_summarizes_real_runs_over_seeds(tmp_path):
    for seed in ("0", "1"):
        out = sylvan("--setting", "class_incremental", "--method", "naive", *FAST, "--epochs", "1",
                     "--seed", seed, "--results_dir", str(tmp_path / "runs"))
        assert out.returncode == 0, out.stderr
    out = sylvan("--summarize", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[2].split("|")[3].strip() == "0 1" and "±" in lines[2]
    assert lines[-1] == "2 finished run(s) in 1 configuration(s)"
    refused = sylvan("--summarize", str(tmp_path / "runs"), "--setting", "online")
    assert refused.returncode == 2 and "--summarize takes results folders" in refused.stderr
    missing = sylvan("--summarize", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr and "Traceback" not in missing.stderr


def test_a_run_that_predates_an_option_groups_with_runs_at_its_default(tmp_path):
    old = write_run(tmp_path, "old", 0, lr=0.1, final=0.70)  # records no validation_fraction, no precision
    new = write_run(tmp_path, "new", 1, lr=0.1, final=0.80)
    other = write_run(tmp_path, "other", 2, lr=0.1, final=0.90)
    for folder, fraction in ((new, 0.0), (other, 0.2)):
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["setting_options"].update(validation_fraction=fraction, precision="32-true")
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    assert load_run(old).options["validation_fraction"] == 0.0  # filled in at the default
    groups, _ = group_runs([load_run(folder) for folder in (old, new, other)])
    assert sorted([run.folder.name for run in group.runs] for group in groups) == [["old", "new"], ["other"]]  # by seed
    table = summarize([tmp_path]).splitlines()
    assert "validation_fraction=0.0" in table[2] + table[3] and "validation_fraction=0.2" in table[2] + table[3]
    assert "precision" not in table[2] + table[3]  # the same in every group


def test_options_of_an_unregistered_method_are_taken_as_recorded(tmp_path):
    folder = write_run(tmp_path, "plugin", 0, lr=0.1, final=0.5)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["method"] = "not_registered_here"
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    options = load_run(folder).options
    assert options["lr"] == 0.1 and options["optimizer"] == "sgd"
    assert "validation_fraction" in options  # the setting is registered: its defaults are filled in


def test_the_command_fills_in_a_plugins_defaults_given_the_plugin(tmp_path):
    """A run of a plugin method recorded before the plugin grew an option joins the runs that
    leave it at its default, once --plugin says where the method is defined."""
    for name, seed, recorded in (("old", 0, {}), ("new", 1, {"strength": 0.1})):
        folder = write_run(tmp_path, name, seed, lr=0.1, final=0.5)
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["method"] = "l2_anchor"
        config["method_options"].update(recorded)
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    alone = sylvan("--summarize", str(tmp_path))
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.splitlines()[-1] == "2 finished run(s) in 2 configuration(s)"
    plugin = Path(__file__).resolve().parents[2] / "examples" / "l2_anchor.py"
    told = sylvan("--plugin", str(plugin), "--summarize", str(tmp_path))
    assert told.returncode == 0, told.stderr
    assert told.stdout.splitlines()[-1] == "2 finished run(s) in 1 configuration(s)"


def test_the_table_gives_what_the_runs_cost(tmp_path):
    for seed, (flops, memory) in enumerate([(2e9, 3 * 2**20), (4e9, 5 * 2**20)]):
        folder = write_run(tmp_path, f"r{seed}", seed, lr=0.1, final=0.5)
        results = json.loads((folder / "results.json").read_text())
        results["cost"] = {"training_flops": flops, "inference_flops_per_sample": 34800.0, "memory_bytes": memory}
        (folder / "results.json").write_text(json.dumps(results))
    header, rows = summary_rows(group_runs([load_run(f) for f in find_runs([tmp_path])])[0])
    costs = dict(zip(header, rows[0]))
    assert costs["training (GFLOP)"] == "3.00 ± 1.41"
    assert costs["inference (MFLOP/sample)"] == "0.03 ± 0.00"
    assert costs["memory (MiB)"] == "4.00 ± 1.41"


def test_a_later_run_of_a_seed_that_lacks_a_figure_never_replaces_the_run_that_has_it(tmp_path):
    """A run marked complete without a figure its setting computes (forward transfer: an older
    run stopped in its work after the stream) is left out, saying what it lacks; the run of its
    seed that has the figure is counted, and the figure's column stays."""
    import os

    whole = write_run(tmp_path, "whole", 0, lr=0.1, final=0.8)
    results = json.loads((whole / "results.json").read_text())
    (whole / "results.json").write_text(json.dumps({**results, "forward_transfer": 0.05}))
    lacking = write_run(tmp_path, "lacking", 0, lr=0.1, final=0.8)
    os.utime(whole / "results.json", (1e9, 1e9))  # the run that lacks it finished later
    table = summarize([tmp_path]).splitlines()
    assert "forward_transfer" in table[0] and "5.00" in table[2], table
    assert f"left out, a run of seed 0 without forward_transfer, which another run of it has (counted: {whole}): " \
           f"{lacking}" in table
    assert table[-1] == "1 finished run(s) in 1 configuration(s)"


def test_the_summary_csv_has_numeric_mean_and_std_columns_and_unix_line_endings(tmp_path):
    for seed, final in enumerate([0.70, 0.90]):
        write_run(tmp_path / "runs", f"a{seed}", seed, lr=0.1, final=final)
    path = tmp_path / "summary.csv"
    summarize([tmp_path / "runs"], csv_path=path)
    raw = path.read_bytes()
    assert b"\r" not in raw
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    row = rows[0]
    assert float(row["final_average_accuracy mean"]) == pytest.approx(80.0)
    assert float(row["final_average_accuracy std"]) == pytest.approx(14.1421356, rel=1e-6)
    assert row["seeds"] == "0 1" and "±" not in raw.decode()
