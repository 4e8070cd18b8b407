"""The osaka setting: its stream as the paper draws it (switches, modes, relabelled returns), its
pre-training phase, and the assumptions it enforces (no task label, no boundary, every batch
predicted before the method learns from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from sylvan.errors import SylvanError
from sylvan.methods import METHODS
from sylvan.methods.naive import Naive
from sylvan.settings import SETTINGS, OnlineSetting, OsakaSetting
from sylvan.settings.data.osaka_streams import MODES, class_rows, plan_stream, plan_tasks

# three pools of 5, 5 and 10 classes, 20 samples each, numbered one after the other
POOLS = [class_rows(torch.arange(n * 20) // 20, offset) for n, offset in ((5, 0), (5, 100), (10, 200))]


def plan(steps: int = 20_000, stationarity: float = 0.9, probabilities=(0.5, 0.25, 0.25), seed: int = 0):
    return plan_stream(POOLS, steps, stationarity, list(probabilities), n_ways=3, k_shots=4, seed=seed)


def classes_of(rows: torch.Tensor) -> list[int]:
    """The pool-wide class of each label of a step's rows (each label's 4 rows share a class)."""
    return [int(rows[4 * label]) // 20 for label in range(3)]


def test_the_context_switches_with_probability_one_minus_p_and_draws_its_mode_by_the_mode_probabilities():
    stream = plan()
    switches = stream.switches[1:].float().mean().item()
    assert abs(switches - 0.1) < 0.01  # 20,000 steps: the standard error is 0.002
    drawn = stream.modes[stream.switches].bincount(minlength=3).float()
    assert torch.allclose(drawn / drawn.sum(), torch.tensor([0.5, 0.25, 0.25]), atol=0.03)
    assert abs(plan(stationarity=0.98).switches[1:].float().mean().item() - 0.02) < 0.005


def test_a_context_keeps_its_classes_and_labels_until_it_switches_and_comes_back_relabelled():
    stream = plan(steps=5_000)
    contexts: dict[frozenset, set] = {}
    current = None
    for step in range(stream.steps):
        rows, mode = stream.rows[step], int(stream.modes[step])
        assert stream.labels[step].tolist() == [0] * 4 + [1] * 4 + [2] * 4  # n-way k-shot, class-major
        owners = {int(row) // 20 for row in rows[:4]}
        assert len(owners) == 1  # a label's samples are of one class
        classes = classes_of(rows)
        first = {0: 0, 1: 5, 2: 10}[mode]
        assert all(first <= c < first + len(POOLS[mode]) for c in classes)  # the mode's pool
        if not stream.switches[step]:
            assert classes == current  # same classes under the same labels
        current = classes
        if stream.switches[step]:
            key = frozenset(classes)
            assert bool(stream.revisits[step]) == (key in contexts)
            contexts.setdefault(key, set()).add(tuple(classes))
    # pools of 5 classes drawn 3 at a time come back often, and under other labels
    assert any(len(orders) > 1 for orders in contexts.values())


def test_the_plans_are_the_seeds():
    assert torch.equal(plan(steps=500).rows, plan(steps=500).rows)
    assert not torch.equal(plan(steps=500).rows, plan(steps=500, seed=1).rows)
    rows, labels = plan_tasks(POOLS[0], tasks=50, n_ways=3, shots=6, seed=0)
    assert rows.shape == labels.shape == (50, 18) and int(rows.max()) < 100
    assert all(len({int(r) // 20 for r in task[6 * i: 6 * i + 6]}) == 1 for task in rows for i in range(3))


def test_osaka_sits_under_online_with_a_pretraining_phase_and_no_boundaries_or_task_labels():
    assert OsakaSetting.parent() is OnlineSetting and SETTINGS["osaka"] is OsakaSetting
    assumptions = OsakaSetting.assumptions()
    assert assumptions["pretraining_phase"] and assumptions["single_pass"]
    assert not (assumptions["task_boundaries_known"] or assumptions["task_labels_at_train"]
                or assumptions["task_labels_at_test"])
    for name in ("naive", "rehearsal", "er_ace", "der"):
        assert METHODS[name].is_applicable(OsakaSetting)
    for name in ("maml", "anil", "continual_maml"):
        assert METHODS[name].is_applicable(OsakaSetting)
        assert not any(METHODS[name].is_applicable(s) for n, s in SETTINGS.items() if n != "osaka")
    assert not METHODS["ewc"].is_applicable(OsakaSetting)


@pytest.mark.parametrize(("options", "says"), [
    ({"nb_tasks": 5}, "--nb_tasks 5 has no effect"),
    ({"batch_size": 32}, "--n_ways x --k_shots"),
    ({"devices": 2, "accelerator": "cpu"}, "one process"),
    ({"mode_probabilities": [0.5, 0.5]}, "3 probabilities"),
    ({"mode_probabilities": [0.5, 0.4, 0.4]}, "sum to 1"),
    ({"n_ways": 6}, "from 2 to 5"),
    ({"stationarity": 1.0}, "stationarity"),
    ({"dataset": "cifar10"}, "OSAKA dataset"),
    ({"stream_stages": 11, "stream_steps": 10}, "stream_stages"),
])
def test_options_that_do_not_fit_the_stream_are_refused(options, says):
    with pytest.raises(SylvanError, match=says):
        OsakaSetting(**options)


@dataclass
class Spy(Naive):
    """Naive, recording what it is told and given, in order."""

    name: ClassVar[str] = ""  # not registered

    def configure(self, run):
        super().configure(run)
        self.events: list[tuple] = []

    def on_task_start(self, task_id):
        self.events.append(("task_start",))

    def on_task_end(self, task_id):
        self.events.append(("task_end",))

    def pretrain(self, train_data):
        self.events.append(("pretrain",))
        super().pretrain(train_data)
        self.events.append(("pretrained",))

    def predict(self, x, task_labels=None):
        self.events.append(("predict", x.clone(), task_labels))
        return super().predict(x, task_labels)

    def training_step(self, batch):
        self.events.append(("train", batch.x.clone(), batch.t))
        return super().training_step(batch)


def test_every_stream_batch_is_predicted_before_the_method_learns_from_it_and_no_task_is_announced():
    setting = OsakaSetting(stream_steps=30, pretraining_tasks=6, stream_stages=2, progress_bar=False)
    method = Spy()
    results = setting.apply(method)
    events = method.events
    kinds = [event[0] for event in events]
    assert "task_start" not in kinds and "task_end" not in kinds
    assert kinds[0] == "pretrain" and kinds.count("pretrain") == 1
    stream = events[kinds.index("pretrained") + 1:]
    trained = [index for index, event in enumerate(stream) if event[0] == "train"]
    assert len(trained) == 30
    for index in trained:
        inputs, task_labels = stream[index][1:]
        assert task_labels is None  # no task label in any batch
        # the same inputs were predicted, with no task label, after the step before and before this one
        previous = max([i for i in trained if i < index], default=-1)
        assert any(e[0] == "predict" and e[2] is None and torch.equal(e[1].cpu(), inputs.cpu())
                       for e in stream[previous + 1:index])
    assert results.stream_accuracy["steps_scored"] == 30


def test_results_report_the_accuracy_per_mode_and_after_each_switch():
    setting = OsakaSetting(stream_steps=200, pretraining_tasks=20, progress_bar=False, adaptation_window=4)
    results = setting.apply(METHODS["naive"]())
    stream = results.stream_accuracy
    counts = stream["counts"]
    assert sum(counts["total"]) == 200 * 25 and stream["modes"] == list(MODES)
    assert results.accuracy_matrix == [[stream["accuracy_per_mode"][mode] for mode in MODES]]
    assert results.online_accuracy == pytest.approx(sum(counts["correct"]) / sum(counts["total"]))
    assert all(len(curve) == 4 for curve in stream["after_switch_per_mode"].values())
    switches = np.asarray(counts["after_total"])[:, 0].sum() // 25
    assert switches == int(stages_plan(setting).switches.sum())
    assert results.forgetting is None and results.average_incremental_accuracy is None  # columns are modes
    assert "stream_accuracy" in results.metrics_dict()


def stages_plan(setting):
    return setting.stages().plan


def test_a_method_that_never_draws_the_stream_is_still_scored_on_every_batch():
    results = OsakaSetting(stream_steps=40, pretraining_tasks=4, progress_bar=False).apply(METHODS["random"]())
    assert results.stream_accuracy["steps_scored"] == 40
    assert 0.05 < results.online_accuracy < 0.4  # chance is 1 in 5


def test_a_tracked_run_writes_the_stream_figures_and_their_plot(tmp_path):
    import json

    from sylvan.run.tracking import Tracker

    tracker = Tracker(tmp_path, "run", {}, verbose=True)
    results = OsakaSetting(stream_steps=50, pretraining_tasks=4, progress_bar=False).apply(METHODS["naive"](), tracker)
    tracker.finish(results)
    written = json.loads((tracker.run_dir / "results.json").read_text())
    assert written["stream_accuracy"]["accuracy_per_mode"] == results.stream_accuracy["accuracy_per_mode"]
    assert written["online_accuracy"] == results.online_accuracy and written["forgetting"] is None
    assert (tracker.run_dir / "adaptation.png").stat().st_size > 0
    stages_log = (tracker.run_dir / "logs" / "stages.csv").read_text().splitlines()[0]
    assert "accuracy/pretraining" in stages_log and "accuracy/task_0" not in stages_log
    assert "pretraining" in results.table() and "after a switch" in results.table()


def fake_data_root(root):
    """Omniglot as torchvision lays it out (two alphabets per part, three characters each, four
    drawings of 30x30 pixels), and MNIST-format files of MNIST and Fashion-MNIST (random pixels)."""
    from PIL import Image

    from tests.settings.test_idx_files import write_idx

    rng = np.random.default_rng(0)
    for part in ("images_background", "images_evaluation"):
        for alphabet in ("Alpha", "Beta"):
            for character in ("character01", "character02", "character03"):
                folder = root / "omniglot-py" / part / alphabet / character
                folder.mkdir(parents=True)
                for drawing in range(4):
                    pixels = (rng.random((30, 30)) > 0.5).astype(np.uint8) * 255
                    Image.fromarray(pixels).convert("1").save(folder / f"{character}_{drawing:02d}.png")
    for name in ("MNIST", "FashionMNIST"):
        raw = root / name / "raw"
        raw.mkdir(parents=True)
        for prefix, count in (("train", 60), ("t10k", 40)):
            write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
            write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count, dtype=np.uint8) % 10)


def test_omniglot_is_read_as_its_characters_and_the_paper_protocol_runs_on_it(tmp_path, monkeypatch):
    from sylvan.settings.data.datasets import get_dataset

    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    fake_data_root(tmp_path)
    train, test = get_dataset("omniglot").load(str(tmp_path), None, 0)
    (x_train, y_train, _), (x_test, y_test, _) = train.get_data(), test.get_data()
    assert list(np.bincount(y_train)) == [2] * 12 and list(np.bincount(y_test)) == [2] * 12
    assert "images_background/Alpha/character01/character01_00.png" in x_train[0]
    assert x_test[0].endswith("character01_02.png") and "images_evaluation" in x_train[-1]
    setting = OsakaSetting(dataset="omniglot", data_dir=str(tmp_path), stream_steps=40, pretraining_tasks=4,
                           k_shots=1, progress_bar=False)
    stages = setting.stages()
    assert stages.stream_inputs.shape[1:] == (1, 28, 28) and len(stages.stream_inputs) == 24 + 40 + 40
    results = setting.apply(METHODS["naive"](backbone="mlp"), stages=stages)
    assert results.stream_accuracy["steps_scored"] == 40


def test_omniglot_missing_offline_is_named_with_where_its_files_go(tmp_path, monkeypatch):
    from sylvan.errors import DataUnavailableError
    from sylvan.settings.data.datasets import get_dataset

    monkeypatch.setenv("SYLVAN_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="omniglot-py/"):
        get_dataset("omniglot").load(str(tmp_path), None, 0)


def test_several_devices_are_refused_as_osaka_runs_in_one_process_whatever_the_cores(monkeypatch):
    """On a machine of one core the core count spoke first, and the test above failed there."""
    from sylvan.parallel import data_parallel

    monkeypatch.setattr(data_parallel, "usable_cores", lambda: 1)
    with pytest.raises(SylvanError, match="one process"):
        OsakaSetting(devices=2, accelerator="cpu")


def test_osaka_draws_its_accuracy_over_the_stream_by_mode_and_its_adaptation_not_a_matrix(tmp_path):
    """A stream of one stage made accuracy_curve.png a single point and the matrix one row: the
    run draws what describes it, the predict-then-train accuracy along the stream for each mode
    (from counts kept per stretch of the stream, which a resumed run carries on) and after a switch."""
    from sylvan.run.tracking import Tracker

    tracker = Tracker(tmp_path, "run", {}, verbose=False)
    setting = OsakaSetting(stream_steps=230, pretraining_tasks=4, progress_bar=False)
    results = setting.apply(METHODS["naive"](), tracker)
    tracker.finish(results)
    drawn = sorted(path.name for path in tracker.run_dir.glob("*.png"))
    assert drawn == ["adaptation.png", "stream_accuracy.png"]
    stream = results.stream_accuracy
    over = stream["over_stream"]
    counts = np.asarray(stream["counts"]["stretch_total"])
    assert counts.shape == (len(MODES), len(over["stretch_ends"]))
    assert over["stretch_ends"][-1] == 230 and counts.sum() == 230 * 25
    correct = np.asarray(stream["counts"]["stretch_correct"])
    assert (correct.sum(1) == np.asarray(stream["counts"]["correct"])).all()
    for mode, curve in over["accuracy_per_mode"].items():
        row = MODES.index(mode)
        assert curve == [None if t == 0 else c / t for c, t in zip(correct[row], counts[row])]
