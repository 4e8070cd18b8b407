"""Resuming an interrupted run: for every registered method, a run stopped after its first task
and resumed from the checkpoint writes the same results.json and train.csv as a run that was
never stopped, without training the first task again; and the refusals that keep a resumed run
from being silently different."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

from sylvan.analysis.metrics import Results
from sylvan.cli import load_plugins, parse_options
from sylvan.cli import run as cli_run
from sylvan.errors import ConfigurationError
from sylvan.methods import METHODS, SupervisedMethod
from sylvan.run.checkpoints import (
    checkpointed_stages,
    configuration_changes,
    latest_checkpoint,
    save_checkpoint,
    save_worker_checkpoint,
)
from sylvan.run.experiment import RunOptions, run_config, run_experiment
from sylvan.run.tracking import Tracker
from sylvan.settings import SETTINGS, ClassIncrementalSetting, Setting
from tests.conftest import REPO, tiny_method, tiny_options

load_plugins([str(REPO / "examples" / "l2_anchor.py")])

# each method on the first of these settings it applies to (task_incremental: multi_head;
# incremental_rl: dqn; osaka: the meta-learners)
SETTING_OF = {
    name: next(s for s in ("class_incremental", "task_incremental", "incremental_rl", "osaka")
               if cls.is_applicable(SETTINGS[s]))
    for name, cls in sorted(METHODS.items())
}


class Interrupted(Exception):
    pass


class InterruptingTracker(Tracker):
    """Stops the run right after the checkpoint of stage `stop` is written."""

    stop = 0

    def on_stage_end(self, results, stage, *args) -> None:
        super().on_stage_end(results, stage, *args)
        if stage == self.stop:
            raise Interrupted


def build(method_name: str, method_options: dict | None = None, **options):
    setting_cls = SETTINGS[SETTING_OF[method_name]]
    stages = {"stream_stages": 3} if setting_cls.pretraining_phase else {}  # osaka: the stream in three stages
    setting = setting_cls(**{**tiny_options(setting_cls, METHODS[method_name]), "nb_tasks": 3, "seed": 5, **stages,
                             **options})
    # on an RL setting, a continual-learning method runs as its part on an agent (`on_setting`)
    return setting, tiny_method(METHODS[method_name], **(method_options or {})).on_setting(setting)


def fits_counted(method) -> list[int]:
    calls = []
    fit = method.fit

    def counting_fit(*args, **kwargs):
        calls.append(1)
        return fit(*args, **kwargs)

    method.fit = counting_fit
    return calls


def file_or_none(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_resumed_run_equals_uninterrupted_run(tmp_path, method_name):
    assert_resumed_run_equals_uninterrupted_run(tmp_path, method_name)


@pytest.mark.parametrize("method_name", ["rehearsal", "gdumb"])
def test_resumed_run_with_augmentation_equals_uninterrupted_run(tmp_path, method_name):
    """The augmentation's generator is part of the checkpoint: the resumed run draws the same
    crops and flips as the run that was never stopped."""
    assert_resumed_run_equals_uninterrupted_run(tmp_path, method_name, augmentation="crop_flip", crop_padding=2)


def test_resumed_blurry_run_equals_uninterrupted_run(tmp_path):
    """The blurred tasks are drawn again from the seed: the resumed run trains on the same ones."""
    assert_resumed_run_equals_uninterrupted_run(tmp_path, "rehearsal", blurry=0.3)


def test_resumed_run_with_a_long_training_log_equals_uninterrupted_run(tmp_path):
    """With many logged steps per task, the checkpoint and the logged curve are those of the run
    that was never stopped."""
    assert_resumed_run_equals_uninterrupted_run(tmp_path, "rehearsal", batch_size=2)


def test_resumed_joint_run_equals_uninterrupted_run(tmp_path):
    """`from_scratch --last_task_only` trains only in the last stage, on the tasks of the stages
    the checkpoint stands for too."""
    assert_resumed_run_equals_uninterrupted_run(tmp_path, "from_scratch", {"last_task_only": True})


def assert_resumed_run_equals_uninterrupted_run(
    tmp_path: Path, method_name: str, method_options: dict | None = None, **options
) -> None:
    setting, method = build(method_name, method_options, **options)
    full = Tracker(tmp_path, "full", {}, verbose=False)
    full.write_results(setting.apply(method, full))

    setting, method = build(method_name, method_options, **options)
    cut = InterruptingTracker(tmp_path, "cut", {}, verbose=False)
    with pytest.raises(Interrupted):
        setting.apply(method, cut)
    assert not json.loads((cut.run_dir / "results.json").read_text())["complete"]

    setting, method = build(method_name, method_options, **options)
    fits = fits_counted(method)
    resumed = Tracker(tmp_path, "ignored", {}, verbose=False, resume_dir=cut.run_dir)
    results = setting.apply(method, resumed, resume=latest_checkpoint(cut.run_dir))
    resumed.write_results(results)

    assert len(fits) == 2  # tasks 1 and 2 only: task 0 came from the checkpoint
    assert (cut.run_dir / "results.json").read_text() == (full.run_dir / "results.json").read_text()
    assert file_or_none(cut.run_dir / "logs" / "train.csv") == file_or_none(full.run_dir / "logs" / "train.csv")
    assert not (tmp_path / "ignored").exists()  # the resumed run wrote into the interrupted one's folder


def test_global_generators_are_restored(tmp_path):
    """Dropout draws from torch's global generator: without restoring it, a resumed
    stable_sgd run would differ (this is what the checkpoint's "rng" entry is for)."""
    setting, method = build("stable_sgd")
    cut = InterruptingTracker(tmp_path, "cut", {}, verbose=False)
    with pytest.raises(Interrupted):
        setting.apply(method, cut)
    checkpoint = latest_checkpoint(cut.run_dir)
    setting, method = build("stable_sgd")
    restored = setting.apply(method, resume=checkpoint).accuracy_matrix
    checkpoint = latest_checkpoint(cut.run_dir)
    checkpoint.rng["torch"] = torch.Generator().manual_seed(12345).get_state()
    if checkpoint.rng.get("cuda"):  # on a GPU, dropout draws from the CUDA generators
        saved = torch.cuda.get_rng_state_all()
        torch.cuda.manual_seed_all(12345)
        checkpoint.rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.cuda.set_rng_state_all(saved)
    setting, method = build("stable_sgd")
    assert setting.apply(method, resume=checkpoint).accuracy_matrix != restored


def test_checkpoint_of_another_method_is_refused(tmp_path):
    setting, method = build("naive")
    cut = InterruptingTracker(tmp_path, "cut", {}, verbose=False)
    with pytest.raises(Interrupted):
        setting.apply(method, cut)
    setting, method = build("ewc")
    with pytest.raises(ConfigurationError, match="it is a checkpoint of naive on class_incremental"):
        setting.apply(method, resume=latest_checkpoint(cut.run_dir))


def test_missing_or_unreadable_checkpoints_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="no checkpoint"):
        latest_checkpoint(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "after_stage_0.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigurationError, match="is damaged"):
        latest_checkpoint(tmp_path)
    torch.save({"model": {}}, tmp_path / "checkpoints" / "after_stage_1.pt")  # an older layout
    with pytest.raises(ConfigurationError, match="not a checkpoint this version"):
        latest_checkpoint(tmp_path)


def test_a_run_whose_checkpoints_could_not_resume_it_is_refused_when_it_starts(tmp_path):
    """Found out at --resume, the missing state would be found out after the run was killed:
    the run is refused before it starts, unless it saves no checkpoints."""
    from dataclasses import dataclass
    from typing import ClassVar

    from sylvan.methods import Naive

    @dataclass
    class Forgetful(Naive):
        name: ClassVar[str] = ""  # unregistered

        def on_task_end(self, task_id):
            self.anchor = [p.detach().clone() for p in self.model.parameters()]

    setting, _ = build("naive")
    with pytest.raises(ConfigurationError, match="Forgetful overrides on_task_end but not load_state_dict.*"
                                                 "give --save_checkpoints false"):
        run_experiment(setting, Forgetful(), RunOptions(results_dir=str(tmp_path / "refused")))
    assert not (tmp_path / "refused").exists()
    results = run_experiment(setting, Forgetful(), RunOptions(results_dir=str(tmp_path), save_checkpoints=False))
    assert results.complete


def test_method_without_load_state_dict_is_refused():
    """State kept in a hook but not in the checkpoint would be lost on resume: refused."""

    class Forgetful(SupervisedMethod):
        def on_task_end(self, task_id):
            self.anchor = [p.detach().clone() for p in self.model.parameters()]

    class Declared(Forgetful):
        def state_dict(self):
            return {**super().state_dict(), "anchor": self.anchor}

    class Restoring(Declared):
        def load_state_dict(self, state):
            super().load_state_dict(state)
            self.anchor = state["anchor"]

    with pytest.raises(ConfigurationError, match="Forgetful overrides on_task_end but not load_state_dict"):
        Forgetful.check_resumable()
    with pytest.raises(ConfigurationError, match="Declared overrides state_dict but not load_state_dict"):
        Declared.check_resumable()
    Restoring.check_resumable()  # a subclass that restores the state answers for its bases
    for cls in METHODS.values():  # every built-in method, and the README's example
        cls.check_resumable()


class WorkerState:
    """A stand-in for a method whose state names the worker that saved it."""

    def __init__(self, worker: str) -> None:
        self.worker = worker

    def state_dict(self) -> dict[str, str]:
        return {"worker": self.worker}


def write_worker_checkpoints(run_dir: Path, stage: int, workers: int, run: str) -> None:
    """The checkpoint after `stage` as `workers` workers write it: worker 0's file and the others' parts,
    each saved with the torch generator seeded by its rank."""
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    results = Results("distributed", "rehearsal", accuracy_matrix=[[0.5, 0.0]] * (stage + 1))
    torch.manual_seed(100)
    save_checkpoint(folder / f"after_stage_{stage}.pt", stage, WorkerState(f"{run}0"), results)
    for rank in range(1, workers):
        torch.manual_seed(100 + rank)
        save_worker_checkpoint(folder, stage, rank, workers, WorkerState(f"{run}{rank}"))


def test_each_worker_resumes_from_its_own_part_of_the_checkpoint(tmp_path):
    """Every data-parallel worker holds a buffer and generators of its own: resumed, worker R takes
    them from its part of the checkpoint, and the results from worker 0's file. A stage whose parts
    are not all on disk (the job stopped while the workers wrote them) is not resumed from."""
    write_worker_checkpoints(tmp_path, 0, 3, "first")
    write_worker_checkpoints(tmp_path, 1, 3, "second")
    (tmp_path / "checkpoints" / "after_stage_1.worker2.pt").unlink()
    assert checkpointed_stages(tmp_path) == [0, 1]
    assert checkpointed_stages(tmp_path, workers=3) == [0]
    for rank in range(3):
        checkpoint = latest_checkpoint(tmp_path, rank, workers=3)
        assert checkpoint.stage == 0 and checkpoint.method_state == {"worker": f"first{rank}"}
        assert torch.equal(checkpoint.rng["torch"], torch.manual_seed(100 + rank).get_state())
        assert checkpoint.results.accuracy_matrix == [[0.5, 0.0]]
    with pytest.raises(ConfigurationError, match="written by more than 2 workers"):
        latest_checkpoint(tmp_path, 0, workers=2)
    with pytest.raises(ConfigurationError, match="lack the parts of the other workers.*R = 1 to 3"):
        latest_checkpoint(tmp_path, 0, workers=4)


@pytest.mark.parametrize("edit", [{"nb_tasks": 4}, {"buffer_size": 50}])
def test_checkpoint_that_no_longer_fits_the_configuration_is_refused(tmp_path, edit):
    """A config.yaml edited after the run started (more tasks, another buffer size) would
    resume into a run that never happened: refused with a message, not a traceback."""
    setting, method = build("rehearsal")
    cut = InterruptingTracker(tmp_path, "cut", {}, verbose=False)
    with pytest.raises(Interrupted):
        setting.apply(method, cut)
    setting_cls = type(setting)
    options = {**tiny_options(setting_cls), "nb_tasks": 3, "seed": 5}
    setting = setting_cls(**{**options, **{k: v for k, v in edit.items() if k == "nb_tasks"}})
    method = METHODS["rehearsal"](**{k: v for k, v in edit.items() if k == "buffer_size"})
    with pytest.raises(ConfigurationError, match="does not fit the run: .*(was its config.yaml edited|does not load)"):
        setting.apply(method, resume=latest_checkpoint(cut.run_dir))


def interrupted_run_folder(tmp_path: Path, name: str, **options) -> Path:
    """The folder of a 3-task `rehearsal` run (of setting `options`), written as the command line
    writes it (`run_experiment`), whose checkpoints after tasks 1 and 2 are gone: it died during task 1."""
    setting, method = build("rehearsal", **options)
    run_experiment(setting, method, RunOptions(results_dir=str(tmp_path), run_name=name))
    for stage in (1, 2):
        (tmp_path / name / "checkpoints" / f"after_stage_{stage}.pt").unlink()
    return tmp_path / name


def edit_config(run_dir: Path, section: str, option: str, value) -> None:
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config[section][option] = value
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize(("section", "option", "value", "change"), [
    ("method_options", "lr", 0.0123, "--lr: {old!r} -> 0.0123"),
    ("setting_options", "seed", 9, "--seed: 5 -> 9"),
    ("method_options", "buffer_policy", "class_balanced", "--buffer_policy: 'reservoir' -> 'class_balanced'"),
])
def test_a_config_yaml_edited_after_the_checkpoints_is_refused_with_what_changed(tmp_path, section, option, value,
                                                                                   change):
    """Resumed, such a run would be trained in part under one configuration and in part under
    another, and recorded as the second. A change the method's state does not reveal (another
    learning rate or seed) is caught too: each checkpoint keeps the configuration it was written under."""
    run_dir = interrupted_run_folder(tmp_path, "cut")
    old = yaml.safe_load((run_dir / "config.yaml").read_text())[section][option]
    edit_config(run_dir, section, option, value)
    with pytest.raises(ConfigurationError, match="its config.yaml no longer describes the run") as refused:
        cli_run(["--resume", str(run_dir)])
    assert change.format(old=old) in str(refused.value)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["after_stage_0.pt"]


def test_a_resumed_run_may_find_its_data_elsewhere(tmp_path, capsys):
    """Where the data is, and how progress is shown, change nothing the run learns: a run
    resumed on another machine may give other values, and ends as the uninterrupted run does."""
    full = interrupted_run_folder(tmp_path, "full")
    assert cli_run(["--resume", str(full)]) == 0
    run_dir = interrupted_run_folder(tmp_path, "cut")
    edit_config(run_dir, "setting_options", "data_dir", str(tmp_path / "elsewhere"))
    edit_config(run_dir, "setting_options", "progress_bar", False)
    assert cli_run(["--resume", str(run_dir)]) == 0
    assert (run_dir / "results.json").read_text() == (full / "results.json").read_text()
    assert "resuming rehearsal on class_incremental after stage 1" in capsys.readouterr().out
    history = json.loads((run_dir / "provenance.json").read_text())["history"]  # the start, then the resumption
    assert [entry["event"] for entry in history] == ["started", "resumed"]


def test_a_run_reads_back_the_configuration_it_records_for_every_method_and_setting():
    """What a run records in config.yaml and its checkpoints, parsed back as `--resume` parses it,
    is the same configuration: otherwise every resume of that pair would be refused."""
    for setting_cls in (cls for cls in SETTINGS.values() if cls is not Setting):
        for method_cls in (cls for cls in METHODS.values() if cls.is_applicable(setting_cls)):
            setting, options = setting_cls(**tiny_options(setting_cls, method_cls)), RunOptions()
            method = tiny_method(method_cls).on_setting(setting)  # on an RL setting, ewc's part on an agent
            method.validate_for(setting)
            recorded = run_config(setting, method, options)
            read_back = run_config(*parse_options(setting_cls, method_cls, yaml.safe_load(yaml.safe_dump(recorded)),
                                                  [])[:3])
            assert configuration_changes(recorded, read_back) == [], (setting_cls.name, method_cls.name)


def test_configuration_changes_compare_only_what_both_record():
    recorded = {"setting": "online", "method": "der", "setting_options": {"seed": 1, "data_dir": "a", "gone": 3},
                "method_options": {"alpha": 0.5}, "run": {"results_dir": "x"}}
    same = {"setting": "online", "method": "der", "setting_options": {"seed": 1, "data_dir": "b", "new": 2},
            "method_options": {"alpha": 0.5}, "run": {"results_dir": "y"}}
    assert configuration_changes(recorded, same) == []
    assert configuration_changes(None, same) == []  # a checkpoint of an older sylvan records none
    other = {**same, "method": "derpp", "method_options": {"alpha": 0.2}}
    assert configuration_changes(recorded, other) == ["method: der -> derpp", "--alpha: 0.5 -> 0.2"]


class PlantedCode:
    """An object whose unpickling runs code: it creates the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_holding_code_is_refused_and_its_code_never_runs(tmp_path):
    """Checkpoints are read with weights_only=True: a run folder someone shared, whose checkpoint
    carries a pickled object other than plain state, is refused with a clear message before
    anything of it runs; the run's own checkpoint (NumPy arrays included) loads."""
    run_dir = interrupted_run_folder(tmp_path, "cut")
    path = run_dir / "checkpoints" / "after_stage_0.pt"
    assert latest_checkpoint(run_dir).stage == 0  # plain state, NumPy's generator state among it
    state = torch.load(path, weights_only=False)
    marker = tmp_path / "the planted code ran"
    state["method"]["extra"] = PlantedCode(marker)
    torch.save(state, path)
    with pytest.raises(ConfigurationError, match="holds objects other than plain state.*could run code it carries"):
        latest_checkpoint(run_dir)
    assert not marker.exists()
    with pytest.raises(ConfigurationError, match="holds objects other than plain state"):
        cli_run(["--resume", str(run_dir)])
    assert not marker.exists()


def test_declared_state_is_saved_as_copies_and_restored():
    """A method declares the attributes that are state (`state_attributes`); the base's
    `state_dict` keeps copies of them and `load_state_dict` puts them back, no override needed."""
    from dataclasses import dataclass
    from typing import ClassVar

    from sylvan.methods import Naive

    @dataclass
    class Counting(Naive):
        state_attributes: ClassVar[tuple[str, ...]] = ("seen", "per_class")

        def on_task_end(self, task_id):
            super().on_task_end(task_id)
            self.seen += 1
            self.per_class[task_id] = torch.tensor([float(task_id)])

    Counting.check_resumable()  # its declared state answers for the hook it overrides
    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting))
    method = Counting()
    method.configure(setting)
    method.seen, method.per_class = 0, {}
    method.on_task_end(0)
    state = method.state_dict()
    assert state["seen"] == 1 and torch.equal(state["per_class"][0], torch.tensor([0.0]))
    method.per_class[0].add_(5)  # the checkpoint holds a copy
    assert torch.equal(state["per_class"][0], torch.tensor([0.0]))
    restored = Counting()
    restored.configure(setting)
    restored.load_state_dict(state)
    assert restored.seen == 1 and torch.equal(restored.per_class[0], torch.tensor([0.0]))


def test_declared_objects_restore_themselves_in_place():
    """A declared generator, network, optimizer or buffer is saved by its own state and restored
    in place (an optimizer keeps holding the parameters it steps); a trained tensor takes the
    saved values in place; a plain tensor comes back as a copy."""
    from sylvan.buffers import make_buffer
    from sylvan.methods.core.base import restored_state, saved_state

    generator = torch.Generator().manual_seed(1)
    saved_generator = saved_state(generator)
    expected = torch.rand(3, generator=generator)
    fresh = torch.Generator().manual_seed(2)
    assert restored_state(fresh, saved_generator) is fresh and torch.equal(torch.rand(3, generator=fresh), expected)

    network = torch.nn.Linear(2, 2)
    scale = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([*network.parameters(), scale], lr=0.1)
    network(torch.ones(1, 2)).sum().add(scale.sum()).backward()
    optimizer.step()
    saved = {name: saved_state(value) for name, value in
             (("network", network), ("optimizer", optimizer), ("scale", scale))}
    saved = {name: copy.deepcopy(value) for name, value in saved.items()}
    other = torch.nn.Linear(2, 2)
    other_scale = torch.zeros(1, requires_grad=True)
    other_optimizer = torch.optim.Adam([*other.parameters(), other_scale], lr=0.1)
    assert restored_state(other, saved["network"]) is other
    assert restored_state(other_optimizer, saved["optimizer"]) is other_optimizer
    assert restored_state(other_scale, saved["scale"]) is other_scale and torch.equal(other_scale, scale)
    assert torch.equal(other.weight, network.weight)
    assert other_optimizer.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]

    buffer = make_buffer("reservoir", 4)
    buffer.add(x=torch.rand(3, 2), y=torch.arange(3))
    empty = make_buffer("reservoir", 4)
    assert restored_state(empty, saved_state(buffer)) is empty and len(empty) == 3

    kept = torch.ones(2)
    copied = restored_state(torch.zeros(0), saved_state(kept))
    kept.add_(1)
    assert torch.equal(copied, torch.ones(2))


def test_a_run_folder_in_use_is_not_resumed_and_a_gone_holder_is_taken_over(tmp_path):
    """Two processes writing one run folder would interleave its log and overwrite each other's
    results: a resumption of a folder another process holds is refused, naming that process,
    before anything is read or written; once the holder is gone, its lock is taken over."""
    import subprocess
    import sys

    run_dir = interrupted_run_folder(tmp_path, "cut", batch_size=2)
    log_before = (run_dir / "logs" / "train.csv").read_bytes()
    holder = subprocess.Popen(  # a run or resumption of the folder, going on in another process
        [sys.executable, "-c", "import sys, time; from sylvan.run.folder_lock import RunFolderLock; "
         f"RunFolderLock({str(run_dir)!r}).acquire(); print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigurationError, match=f"in use by process {holder.pid} on .*Wait for that process"):
            cli_run(["--resume", str(run_dir)])
        assert (run_dir / "logs" / "train.csv").read_bytes() == log_before
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["after_stage_0.pt"]
    finally:
        holder.kill()
        holder.wait()
    assert f"process {holder.pid}" in (run_dir / "run.lock").read_text()  # the lock of a process that is gone
    assert cli_run(["--resume", str(run_dir)]) == 0
    assert json.loads((run_dir / "results.json").read_text())["complete"]


def test_a_resumed_run_puts_the_training_log_back_as_its_checkpoint_recorded_it(tmp_path):
    """Rows written after the last checkpoint (the interrupted stage's, or anything appended)
    are dropped on resuming; a log whose recorded part was damaged is refused, with nothing written."""
    full = interrupted_run_folder(tmp_path, "full", batch_size=2)
    assert cli_run(["--resume", str(full)]) == 0
    expected = (full / "logs" / "train.csv").read_bytes()

    run_dir = interrupted_run_folder(tmp_path, "appended", batch_size=2)
    with open(run_dir / "logs" / "train.csv", "ab") as log:
        log.write(b"999,garbage\r\nnot,a,row\r\n")
    assert cli_run(["--resume", str(run_dir)]) == 0
    assert (run_dir / "logs" / "train.csv").read_bytes() == expected

    run_dir = interrupted_run_folder(tmp_path, "damaged", batch_size=2)
    log = run_dir / "logs" / "train.csv"
    recorded = latest_checkpoint(run_dir).tracker_state["csv_bytes"]
    assert recorded > 40
    log.write_bytes(log.read_bytes()[:10] + b"garbage line\n")
    provenance = (run_dir / "provenance.json").read_text()
    with pytest.raises(ConfigurationError, match=f"train.csv holds 23 of the {recorded} bytes.*Nothing was written"):
        cli_run(["--resume", str(run_dir)])
    assert log.read_bytes().endswith(b"garbage line\n")
    assert (run_dir / "provenance.json").read_text() == provenance

    run_dir = interrupted_run_folder(tmp_path, "edited", batch_size=2)
    log = run_dir / "logs" / "train.csv"
    original = log.read_bytes()
    log.write_bytes(original[:20] + (b"9" if original[20:21] != b"9" else b"8") + original[21:])
    with pytest.raises(ConfigurationError, match="train.csv has changed since the last checkpoint"):
        cli_run(["--resume", str(run_dir)])


@pytest.mark.parametrize("damage", ["random_bytes", "cut_short", "empty"])
def test_a_damaged_checkpoint_is_named_with_the_stage_to_resume_from_instead(tmp_path, damage):
    """torch's own text for these is an "Errno 22", nothing at all, or advice to load the file
    with weights_only=False (which would run what it carries)."""
    import random

    setting, method = build("rehearsal")
    run_experiment(setting, method, RunOptions(results_dir=str(tmp_path), run_name="cut"))
    run_dir = tmp_path / "cut"
    (run_dir / "checkpoints" / "after_stage_2.pt").unlink()  # it died during the last task
    path = run_dir / "checkpoints" / "after_stage_1.pt"
    good = path.read_bytes()
    # random bytes of a fixed seed: some draws are read as a pickle's first opcodes and fail as a cut file does
    random_bytes = random.Random(0).randbytes(5000)
    path.write_bytes({"random_bytes": random_bytes, "cut_short": good[:300], "empty": b""}[damage])
    with pytest.raises(ConfigurationError) as refused:
        cli_run(["--resume", str(run_dir)])
    message = str(refused.value)
    why = {"random_bytes": "it is not a checkpoint file", "cut_short": "it is cut short or altered",
           "empty": "it is empty"}[damage]
    assert f"{path} is damaged ({why}); nothing was run" in message
    assert "to resume from the checkpoint after task 1, the latest before it" in message
    assert "weights_only" not in message and "Errno" not in message
    path.unlink()
    assert cli_run(["--resume", str(run_dir)]) == 0  # from the checkpoint after task 1, as it said


def test_a_checkpoint_holding_an_object_names_it_and_never_suggests_loading_it_anyway(tmp_path):
    run_dir = interrupted_run_folder(tmp_path, "cut")
    path = run_dir / "checkpoints" / "after_stage_0.pt"
    state = torch.load(path, weights_only=False)
    state["method"]["extra"] = PlantedCode(tmp_path / "ran")
    torch.save(state, path)
    with pytest.raises(ConfigurationError) as refused:
        cli_run(["--resume", str(run_dir)])
    message = str(refused.value)
    assert "holds objects other than plain state (" in message and "Nothing was run" in message
    assert "weights_only" not in message
    assert "getattr" in message or "Path" in message or "touch" in message  # the object, by its name
    assert not (tmp_path / "ran").exists()


class Counter:
    """A part whose state is one number, saved under a key every such part uses."""

    def __init__(self) -> None:
        self.count = 0

    def on_task_end(self) -> None:
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_each_part_saves_its_state_under_its_own_name():
    """Two parts whose states have the same key are each restored with their own (the keys are
    the parts' names); a checkpoint of the earlier flat layout still loads."""
    from dataclasses import dataclass

    from sylvan.methods import Naive

    @dataclass
    class TwoCounters(Naive):
        checkpoint_complete = True

        def configure(self, run):
            super().configure(run)
            self.tasks = self.hold("tasks", Counter)
            self.other = self.hold("other", Counter)

    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting))
    method = TwoCounters()
    method.configure(setting)
    method.on_task_end(0)
    method.other.count = 7
    state = method.state_dict()
    assert state["parts"] == {"tasks": {"count": 1}, "other": {"count": 7}}
    restored = TwoCounters()
    restored.configure(setting)
    restored.load_state_dict(state)
    assert (restored.tasks.count, restored.other.count) == (1, 7)
    flat = {key: value for key, value in state.items() if key != "parts"} | {"count": 3}
    restored.load_state_dict(flat)
    assert (restored.tasks.count, restored.other.count) == (3, 3)


def test_state_saved_twice_under_one_key_is_refused():
    """A class that saves state of its own under a key its bases already save (which would lose
    theirs), or declares an attribute named like the parts' key, is refused."""
    from dataclasses import dataclass
    from typing import ClassVar

    from sylvan.methods import Naive
    from sylvan.methods.core.base import joined_state

    @dataclass
    class Clashing(Naive):
        checkpoint_complete = True

        def state_dict(self):
            return joined_state(super().state_dict(), model=None)

    method = Clashing()
    method.configure(ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting)))
    with pytest.raises(TypeError, match="same key: model"):
        method.state_dict()

    @dataclass
    class NamedParts(Naive):
        state_attributes: ClassVar[tuple[str, ...]] = ("parts",)

    with pytest.raises(TypeError, match="named 'parts'"):
        NamedParts.declared_state()


def test_a_checkpoint_of_another_stage_put_in_its_place_is_named_with_the_stage_to_resume_from(tmp_path):
    run_dir = interrupted_run_folder(tmp_path, "cut")
    run_experiment(*build("rehearsal"), RunOptions(results_dir=str(tmp_path), run_name="full"))
    checkpoints = run_dir / "checkpoints"
    (tmp_path / "full" / "checkpoints" / "after_stage_0.pt").replace(checkpoints / "after_stage_1.pt")  # swapped in
    with pytest.raises(ConfigurationError) as refused:
        cli_run(["--resume", str(run_dir)])
    message = str(refused.value)
    assert f"{checkpoints / 'after_stage_1.pt'} does not fit the run: it holds the checkpoint after stage 1, " \
           "not after stage 2" in message
    assert "to resume from the checkpoint after task 1, the latest before it" in message
    assert "config.yaml edited" not in message


def test_a_checkpoint_with_a_tensor_cut_short_names_the_tensor_and_its_shapes(tmp_path):
    run_dir = interrupted_run_folder(tmp_path, "cut")
    path = run_dir / "checkpoints" / "after_stage_0.pt"
    state = torch.load(path, weights_only=False)
    network = state["method"]["model"]
    name = "model.features.1.weight"
    network[name] = network[name][:-1]  # one row short
    torch.save(state, path)
    with pytest.raises(ConfigurationError) as refused:
        cli_run(["--resume", str(run_dir)])
    message = str(refused.value)
    assert f"{path} does not fit the run: the method's state in it does not load" in message
    assert name in message and "torch.Size([99, 64])" in message and "torch.Size([100, 64])" in message
    assert "there is no earlier checkpoint to resume from: start the run again" in message


def test_resuming_a_folder_that_cannot_be_written_is_a_message(tmp_path, monkeypatch):
    """A read-only mount: the lock file cannot be opened for writing (as root, a folder's mode
    alone does not stop writing, so the file system's answer is given here)."""
    import errno

    from sylvan.run import folder_lock

    run_dir = interrupted_run_folder(tmp_path, "cut")

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(folder_lock, "open", read_only, raising=False)
    with pytest.raises(ConfigurationError, match=f"cannot write the run folder {run_dir}.*Read-only file system"):
        cli_run(["--resume", str(run_dir)])


def test_a_run_lock_that_is_a_folder_is_a_message(tmp_path):
    run_dir = interrupted_run_folder(tmp_path, "cut")
    (run_dir / "run.lock").unlink()
    (run_dir / "run.lock").mkdir()
    with pytest.raises(ConfigurationError, match=f"cannot write the run folder {run_dir}.*run.lock is a folder"):
        cli_run(["--resume", str(run_dir)])


def test_a_lock_whose_named_process_has_ended_does_not_name_it_as_the_holder(tmp_path):
    """The process run.lock names may be gone while another holds the lock (one it started, which
    shares the open file): the message says so, instead of naming a process that is not there."""
    import subprocess
    import sys

    run_dir = interrupted_run_folder(tmp_path, "cut")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    import socket

    (run_dir / "run.lock").write_text(f"process {dead} on {socket.gethostname()} (sylvan --resume x)\n")
    holder = subprocess.Popen(  # holds the lock without writing its name (as a child of the writer would)
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f.fileno(), fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)",
         str(run_dir / "run.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigurationError) as refused:
            cli_run(["--resume", str(run_dir)])
    finally:
        holder.kill()
        holder.wait()
    message = str(refused.value)
    assert f"process {dead}" in message and "has ended" in message and "still holds" in message
    assert f"in use by process {dead}" not in message


def test_a_checkpoint_of_another_run_is_named_as_such(tmp_path):
    """Copied from another run folder of the same configuration, a checkpoint was refused as if
    the folder's train.csv had changed."""
    run_dir = interrupted_run_folder(tmp_path, "cut")
    other = interrupted_run_folder(tmp_path, "other")
    (other / "checkpoints" / "after_stage_0.pt").replace(run_dir / "checkpoints" / "after_stage_0.pt")
    with pytest.raises(ConfigurationError) as refused:
        cli_run(["--resume", str(run_dir)])
    message = str(refused.value)
    assert f"{run_dir / 'checkpoints' / 'after_stage_0.pt'} is a checkpoint of another run" in message
    assert "train.csv" not in message
