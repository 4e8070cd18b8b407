"""The accuracy-cost trade-off of summarized runs (`sylvan --summarize DIR --pareto FILE.png`)."""

from __future__ import annotations

import csv
import json

import pytest

from sylvan.comparison.pareto import Point, pareto_optimal
from sylvan.comparison.summary import summarize
from sylvan.errors import ConfigurationError
from tests.comparison.test_summary import write_run


def point(setting: str, accuracy: float, flops: float, memory: float = 1.0) -> Point:
    return Point(setting, f"{accuracy}@{flops}", 1, (accuracy, 0.0),
                 {"training_flops": (flops, 0.0), "memory_bytes": (memory, 0.0)})


def test_a_configuration_is_optimal_unless_another_of_its_setting_is_as_good_for_less():
    points = [
        point("a", 0.5, 1), point("a", 0.6, 2),
        point("a", 0.4, 3),  # less accurate and costlier than both
        point("a", 0.5, 1),  # the same as the first: neither is better
        point("a", 0.6, 5),  # as accurate as the second, for more
        point("b", 0.1, 10),  # alone on its setting
    ]
    assert pareto_optimal(points, "training_flops") == [True, True, False, True, False, True]


def write_costed_run(root, name, seed, method, accuracy, flops, memory, dataset="digits"):
    folder = write_run(root, name, seed, lr=0.1, final=accuracy, dataset=dataset)
    config = (folder / "config.yaml").read_text().replace("method: naive", f"method: {method}")
    (folder / "config.yaml").write_text(config)
    results = json.loads((folder / "results.json").read_text())
    results["method"] = method
    results["cost"] = {"training_flops": flops, "inference_flops_per_sample": 1.0, "memory_bytes": memory}
    (folder / "results.json").write_text(json.dumps(results))


def test_summarize_draws_the_trade_off_and_writes_its_figures(tmp_path):
    for seed in (0, 1):
        write_costed_run(tmp_path / "runs", f"naive{seed}", seed, "naive", 0.2 + seed / 100, 1e9, 7e4)
        write_costed_run(tmp_path / "runs", f"der{seed}", seed, "der", 0.45 - seed / 100, 2e9, 9e4)
        write_costed_run(tmp_path / "runs", f"ewc{seed}", seed, "ewc", 0.19, 1.5e9, 2e5)
    out = summarize([tmp_path / "runs"], pareto_path=tmp_path / "plots" / "pareto.png")
    png, table = tmp_path / "plots" / "pareto.png", tmp_path / "plots" / "pareto.csv"
    assert f"the accuracy-cost trade-off: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {row["configuration"]: row for row in csv.DictReader(table.open())}
    assert rows.keys() == {"naive", "der", "ewc"}
    assert float(rows["der"]["accuracy"]) == pytest.approx(0.445)
    assert float(rows["der"]["accuracy std"]) == pytest.approx(0.01 / 2**0.5)  # over the two seeds
    assert {name: (row["pareto optimal in training_flops"], row["pareto optimal in memory_bytes"])
            for name, row in rows.items()} == {"naive": ("True", "True"), "der": ("True", "True"),
                                               "ewc": ("False", "False")}


def test_configurations_are_compared_only_with_those_of_the_same_problem(tmp_path):
    """der on digits is less accurate and costlier than naive on MNIST: another problem, not a
    better configuration of its own. Each problem is a front (and a panel) of its own, named."""
    write_costed_run(tmp_path / "runs", "naive", 0, "naive", 0.9, 1e9, 7e4, dataset="mnist")
    write_costed_run(tmp_path / "runs", "der", 0, "der", 0.5, 2e9, 9e4, dataset="digits")
    write_costed_run(tmp_path / "runs", "ewc", 0, "ewc", 0.4, 3e9, 2e5, dataset="digits")
    summarize([tmp_path / "runs"], pareto_path=tmp_path / "pareto.png")
    rows = {row["configuration"]: row for row in csv.DictReader((tmp_path / "pareto.csv").open())}
    assert {name: row["problem"] for name, row in rows.items()} == {
        "naive": "class_incremental dataset=mnist", "der": "class_incremental dataset=digits",
        "ewc": "class_incremental dataset=digits"}
    assert {name: row["pareto optimal in training_flops"] for name, row in rows.items()} == {
        "naive": "True", "der": "True", "ewc": "False"}


@pytest.mark.parametrize("memory", [(7e4, 9e4, 2e5), (7.0e4, 7.5e4, 8.0e4)], ids=["decades", "one_decade"])
def test_each_cost_axis_labels_its_values_whether_they_span_decades_or_not(memory):
    """Costs within one decade on a log axis got no labelled tick at all (its minor ticks are
    unlabelled): every axis must label at least two ticks across its points."""
    from sylvan.comparison.pareto import figure

    points = [point("a", 0.5 + i / 10, 1e9 * (1 + i), m) for i, m in enumerate(memory)]
    optimal = {cost: pareto_optimal(points, cost) for cost in ("training_flops", "memory_bytes")}
    fig = figure(points, optimal)
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        labelled = [tick for tick in ax.get_xticklabels() if tick.get_text() and low <= tick.get_position()[0] <= high]
        assert len(labelled) >= 2, (ax.get_title(), [t.get_text() for t in ax.get_xticklabels()])


def test_the_trade_off_needs_runs_that_recorded_their_cost(tmp_path):
    write_run(tmp_path, "old", 0, lr=0.1, final=0.5)
    with pytest.raises(ConfigurationError, match="none of the summarized runs recorded its cost"):
        summarize([tmp_path], pareto_path=tmp_path / "pareto.png")
    with pytest.raises(ConfigurationError, match="give a .png file"):
        summarize([tmp_path], pareto_path=tmp_path / "pareto.pdf")


def test_the_command_line_takes_pareto_with_summarize_only(capsys):
    from sylvan.cli import run

    with pytest.raises(ConfigurationError, match="--summarize takes results folders"):
        run(["--pareto", "pareto.png"])


def test_wandb_options_with_summarize_need_the_pareto_plot(tmp_path):
    from sylvan.cli import run

    write_costed_run(tmp_path, "naive0", 0, "naive", 0.2, 1e9, 7e4)
    with pytest.raises(ConfigurationError, match="give --pareto FILE.png and --wandb_project"):
        run(["--summarize", str(tmp_path), "--wandb_project", "sylvan-test"])
    with pytest.raises(ConfigurationError, match="give --pareto FILE.png and --wandb_project"):
        run(["--summarize", str(tmp_path), "--pareto", str(tmp_path / "p.png"), "--wandb_group", "g"])


@pytest.mark.slow
def test_the_trade_off_is_logged_to_wandb_as_a_table(tmp_path, monkeypatch, capsys):
    from sylvan.cli import run

    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for seed in (0, 1):
        write_costed_run(tmp_path / "runs", f"naive{seed}", seed, "naive", 0.2, 1e9, 7e4)
        write_costed_run(tmp_path / "runs", f"der{seed}", seed, "der", 0.45, 2e9, 9e4)
    png = tmp_path / "plots" / "pareto.png"
    assert run(["--summarize", str(tmp_path / "runs"), "--pareto", str(png), "--wandb_project", "sylvan-test"]) == 0
    assert "the trade-off logged to Weights & Biases" in capsys.readouterr().out
    tables = list((tmp_path / "plots" / "wandb").glob("offline-run-*/files/media/table/pareto/table_*.table.json"))
    assert len(tables) == 1
    logged = json.loads(tables[0].read_text())
    assert logged["columns"][:2] == ["problem", "configuration"]
    assert sorted(row[1] for row in logged["data"]) == ["der", "naive"]
