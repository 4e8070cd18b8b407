"""The distributed setting with real workers: 2 processes on gloo, started by the command line."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sylvan.errors import ConfigurationError, UnknownNameError
from sylvan.parallel.data_parallel import DataParallel
from sylvan.settings import ClassIncrementalSetting, DistributedSetting
from tests.cli.test_cli import REPO, sylvan
from tests.conftest import default_signal_handling

# CPU workers (gloo) wherever the tests run, a GPU machine included
COMMON = ["--dataset", "digits", "--epochs", "3", "--progress_bar", "false", "--seed", "0", "--accelerator", "cpu"]


def test_distributed_is_class_incremental_with_data_parallel_workers():
    assert issubclass(DistributedSetting, ClassIncrementalSetting)
    assert DistributedSetting.data_parallel and not ClassIncrementalSetting.data_parallel
    with pytest.raises(ConfigurationError):
        DistributedSetting(devices=0)
    with pytest.raises(ConfigurationError):
        DistributedSetting(worker_timeout=0)


def test_more_gpu_workers_than_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigurationError, match="--accelerator cpu"):
        DistributedSetting(devices=2, accelerator="auto")
    DistributedSetting(devices=1, accelerator="gpu")
    DistributedSetting(devices=2, accelerator="cpu")


def test_replay_sync_is_refused_for_a_method_without_the_distributed_buffer():
    from sylvan.methods import DER, ERACE, MIR, DERPlusPlus, GDumb, Naive, Rehearsal

    setting = DistributedSetting(replay_sync=True, accelerator="cpu")
    for method in (Naive(), GDumb()):  # GDumb's memory is retrained on, not replayed with each minibatch
        with pytest.raises(ConfigurationError, match=f"--replay_sync has no effect on {method.name}.*der.*rehearsal"):
            setting.check_method(method)
    for method in (Rehearsal(), DER(), DERPlusPlus(), ERACE(), MIR()):
        setting.check_method(method)
        DistributedSetting(replay_scope="local", accelerator="cpu").check_method(method)
    with pytest.raises(ConfigurationError, match="--replay_scope local has no effect on naive"):
        DistributedSetting(replay_scope="local", accelerator="cpu").check_method(Naive())
    with pytest.raises(ConfigurationError, match="--replay_scope local never does"):
        DistributedSetting(replay_scope="local", replay_sync=True, accelerator="cpu")
    with pytest.raises(UnknownNameError, match="replay scope.*global, local"):
        DistributedSetting(replay_scope="everywhere", accelerator="cpu")
    DistributedSetting(accelerator="cpu").check_method(Naive())  # the others left at their defaults


@pytest.mark.parametrize("method_name", ["rehearsal", "der", "gem", "agem", "gdumb", "icarl", "fdr"])
def test_every_worker_draws_its_own_buffer_decisions(monkeypatch, method_name):
    """Worker 0 keeps the run's seed (one process gives the same run); every other worker seeds its
    local memory differently, or the workers' reservoirs would fill slot k at the same point of
    each shard, in lockstep, and a draw from their union would pick samples of the same age."""
    from sylvan.methods import METHODS
    from sylvan.parallel.health import worker_rank
    from sylvan.workers import worker_seed
    from tests.conftest import tiny_options

    seeds = set()
    for rank in ("0", "1", "2"):
        monkeypatch.setenv("RANK", rank)
        setting = DistributedSetting(**{**tiny_options(DistributedSetting), "seed": 5})
        assert (worker_seed(setting.seed, worker_rank(setting)) == 5) == (rank == "0")
        method = METHODS[method_name]()
        method.configure(setting)
        memory = method.buffer if hasattr(method, "buffer") else method.memory
        memory = getattr(memory, "buffer", memory)  # fdr keeps its memory behind a channel
        seeds.add(memory.generator.initial_seed())
        if rank == "0":
            assert memory.generator.initial_seed() == 5
    assert len(seeds) == 3


def test_two_workers_match_one_process(tmp_path):
    single = sylvan("--setting", "class_incremental", "--method", "rehearsal", *COMMON, "--batch_size", "32",
                    "--results_dir", str(tmp_path), "--run_name", "single")
    assert single.returncode == 0, single.stderr
    # two workers of batch 16 make the same global batch of 32
    double = sylvan("--setting", "distributed", "--method", "rehearsal", "--devices", "2", *COMMON,
                    "--batch_size", "16", "--results_dir", str(tmp_path), "--run_name", "double")
    assert double.returncode == 0, double.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["double", "single"], "only worker 0 writes"
    # ... its folder, where worker 1 puts only its part of each checkpoint
    assert (tmp_path / "double" / "checkpoints" / "after_stage_4.worker1.pt").is_file()
    one = json.loads((tmp_path / "single" / "results.json").read_text())
    two = json.loads((tmp_path / "double" / "results.json").read_text())
    assert len(two["accuracy_matrix"]) == 5 and two["complete"]
    assert two["samples_seen"] == one["samples_seen"], "the workers together see every sample once per epoch"
    assert abs(two["final_average_accuracy"] - one["final_average_accuracy"]) < 0.12
    assert two["final_average_accuracy"] > 0.6
    # the workers' confusion counts are summed: every test sample once, each class's row as in one process
    assert [sum(row) for row in two["confusion_matrix"]] == [sum(row) for row in one["confusion_matrix"]]
    diagonal = sum(two["confusion_matrix"][c][c] for c in range(10))
    total = sum(map(sum, two["confusion_matrix"]))
    assert diagonal / total == pytest.approx(two["final_average_accuracy"], abs=0.02)
    timings = json.loads((tmp_path / "double" / "runtime.json").read_text())
    # starting the second worker (its imports, the rendezvous) is reported apart, not as training
    assert timings["worker_startup_time"] > 0
    assert timings["task_train_time"][0] + timings["worker_startup_time"] <= timings["task_wall_time"][0]
    runtime = timings["method_runtime"]
    epochs, task_sizes = 3, [n // 3 for n in one["samples_seen"]]
    per_worker = [math.ceil(n / 2) for n in task_sizes]  # each worker trains on its half of a task
    assert runtime["replay_steps"] == sum(epochs * math.ceil(n / 16) for n in per_worker)
    assert 0 <= runtime["replay_blocked_ms_per_step"] <= runtime["replay_critical_ms_per_step"]
    single_runtime = json.loads((tmp_path / "single" / "runtime.json").read_text())
    assert single_runtime["method_runtime"] == {}, "no distributed replay in one process"
    assert single_runtime["worker_startup_time"] == 0


@pytest.mark.slow
@pytest.mark.parametrize(("method", "options", "minimum"), [
    ("agem", [], 0.2),  # averages its reference gradient over the workers (weak in class-IL, as published)
    ("gem", [], 0.6),  # averages each task's memory gradient over the workers, solves the same program
    ("icarl", [], 0.6),  # chooses exemplars and class means on every worker after DDP training
    ("gdumb", ["--buffer_size", "500", "--retrain_epochs", "5"], 0.8),  # retrains on its memory under DDP
])
def test_methods_with_their_own_memory_run_on_two_workers(tmp_path, method, options, minimum):
    results, _ = complete_run_on_two_workers(tmp_path, method, options, minimum)
    assert results["task_aware_accuracy"] > 0.85


@pytest.mark.slow
def test_fdr_workers_take_the_same_two_steps(tmp_path):
    """FDR adds the gradient of its function distance after DDP has averaged the minibatch's: it
    averages that gradient over the workers itself, or their weights would drift apart."""
    complete_run_on_two_workers(tmp_path, "fdr", ["--lr", "0.1"], 0.6)
    assert_workers_end_with_the_same_network(tmp_path / "fdr")


@pytest.mark.slow
def test_mer_workers_take_the_same_meta_steps(tmp_path):
    """MER's later batches each draw from the union of the buffers, and their gradients, taken in
    `after_backward`, are averaged over the workers as DDP averages the first batch's."""
    _, runtime = complete_run_on_two_workers(tmp_path, "mer", ["--batch_num", "2", "--beta", "0.7"], 0.6)
    assert runtime["replay_steps"] > 0, "every step drew from the distributed rehearsal buffer"
    assert_workers_end_with_the_same_network(tmp_path / "mer")


@pytest.mark.slow
def test_rwalk_workers_keep_the_same_fisher_and_scores(tmp_path):
    """RWalk builds its Fisher and scores from the gradient DDP averaged, less its penalty's, the
    same on every worker: their importances, and so their networks, stay equal."""
    complete_run_on_two_workers(tmp_path, "rwalk", [], 0.15)
    states = assert_workers_end_with_the_same_network(tmp_path / "rwalk")
    for part in ("fisher", "score", "importance"):
        for name, value in states[0][part].items():
            assert float(value.abs().sum()) > 0, f"{part}.{name} was measured"
            torch.testing.assert_close(states[1][part][name], value, msg=f"{part}.{name}")


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["mlp", "resnet18_reduced"])
def test_clser_workers_keep_the_same_semantic_memories(tmp_path, backbone):
    """CLS-ER's memories average the working network, the same on every worker under DDP; each
    worker draws whether to update them from a generator with the run's seed, so they stay equal.
    A batch-norm memory tracks running statistics of each worker's own replay: they are averaged
    over the workers after every step."""
    _, runtime = complete_run_on_two_workers(
        tmp_path, "clser", ["--lr", "0.1", "--plastic_alpha", "0.9", "--stable_alpha", "0.9", "--stable_update_freq",
                            "0.5", "--backbone", backbone], 0.5 if backbone == "mlp" else 0.3,
    )
    assert runtime["replay_steps"] > 0, "every step drew from the distributed rehearsal buffer"
    states = last_worker_states(tmp_path / "clser")
    assert states[0]["steps"] == states[1]["steps"] > 0
    for memory in ("plastic_model", "stable_model"):
        statistics = [name for name in states[0][memory] if name.endswith("running_mean")]
        assert bool(statistics) == (backbone != "mlp")
        for name in statistics:
            assert float(states[0][memory][name].abs().sum()) > 0, f"{memory}.{name} tracked the replay"
        for name, value in states[0][memory].items():
            torch.testing.assert_close(states[1][memory][name], value, msg=f"{memory}.{name}")


@pytest.mark.slow
def test_gpm_workers_keep_the_same_memory_and_network(tmp_path):
    """Every worker holds the whole task's data when it ends: the same representation samples
    (drawn with the run's seed), so the same bases, and the averaged gradient projected alike."""
    complete_run_on_two_workers(tmp_path, "gpm", ["--lr", "0.1"], 0.15)
    states = assert_workers_end_with_the_same_network(tmp_path / "gpm")
    assert set(states[0]["bases"]) == {"features.1", "features.3", "classifier"}
    for name, bases in states[0]["bases"].items():
        torch.testing.assert_close(states[1]["bases"][name], bases, msg=name)


@pytest.mark.slow
def test_ogd_workers_keep_the_same_basis_and_network(tmp_path):
    """Every worker holds the whole task's data when it ends: the same samples (drawn with the
    run's seed), so the same output gradients and basis, and the averaged gradient projected alike."""
    complete_run_on_two_workers(tmp_path, "ogd", ["--lr", "0.1"], 0.15)
    states = assert_workers_end_with_the_same_network(tmp_path / "ogd")
    assert states[0]["basis"].shape[0] == 4 * 200
    torch.testing.assert_close(states[1]["basis"], states[0]["basis"])


@pytest.mark.slow
def test_bic_workers_learn_the_same_bias_correction(tmp_path):
    """Every worker holds the whole task's data when it ends: the same herding exemplars, the same
    validation part (drawn with the run's seed) and so the same correction of the same network."""
    complete_run_on_two_workers(tmp_path, "bic", [], 0.6)
    corrections = [state["correction"] for state in last_worker_states(tmp_path / "bic")]
    assert corrections[0]["alpha"] != 1.0 and corrections[0]["beta"] != 0.0, "a correction was learned"
    assert (corrections[0]["alpha"], corrections[0]["beta"]) == (corrections[1]["alpha"], corrections[1]["beta"])


@pytest.mark.slow
def test_il2m_workers_record_the_same_statistics(tmp_path):
    """Every worker holds the whole task's data and the same herding exemplars when it ends, with the
    same network: the same class statistics, and so the same rectified predictions."""
    complete_run_on_two_workers(tmp_path, "il2m", [], 0.5)
    states = assert_workers_end_with_the_same_network(tmp_path / "il2m")
    assert states[0]["class_stage"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    for name in ("initial_means", "current_means", "confidences"):
        torch.testing.assert_close(states[0][name], states[1][name], equal_nan=True, msg=name)
    assert bool((states[0]["current_means"][:8] > 0).all()), "the old classes' means on their exemplars"


@pytest.mark.slow
def test_lucir_workers_keep_the_same_network_with_class_balanced_finetuning(tmp_path):
    """LUCIR's loss takes the features past DDP's forward (the classifier's cosines, the teacher's
    features), holds the old classes' weight vectors on every worker alike, and finetunes its
    classifier on the exemplars, which every worker holds whole: the workers' networks stay equal."""
    complete_run_on_two_workers(tmp_path, "lucir", ["--finetune_epochs", "2"], 0.6)
    assert_workers_end_with_the_same_network(tmp_path / "lucir")


@pytest.mark.slow
def test_eeil_workers_keep_the_same_network_through_the_balanced_finetuning(tmp_path):
    """Every worker draws the same balanced part of the task (the run's seed, not the worker's)
    and the same network as the first stage left it distils the new classes: the workers'
    networks, and the class groups, stay equal."""
    complete_run_on_two_workers(tmp_path, "eeil", ["--finetune_epochs", "2"], 0.6)
    states = assert_workers_end_with_the_same_network(tmp_path / "eeil")
    assert states[0]["class_group"].tolist() == states[1]["class_group"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


@pytest.mark.slow
def test_ssil_workers_keep_the_same_network(tmp_path):
    """Every worker chooses the same exemplars from the whole task and draws its own from them
    each step; the averaged gradient keeps the networks, and so the teachers, equal."""
    complete_run_on_two_workers(tmp_path, "ssil", [], 0.6)
    assert_workers_end_with_the_same_network(tmp_path / "ssil")


@pytest.mark.slow
def test_scr_workers_keep_the_same_network_and_class_means(tmp_path):
    """SCR replays from the union of the workers' buffers and classifies by class means summed
    over every worker's buffer: the workers end with the same network and the same means, though
    each holds samples of its own."""
    complete_run_on_two_workers(tmp_path, "scr", [], 0.6)
    states = assert_workers_end_with_the_same_network(tmp_path / "scr")
    assert_workers_store_samples_of_their_own(states)
    torch.testing.assert_close(states[0]["class_means"], states[1]["class_means"], equal_nan=True)


@pytest.mark.slow
def test_cope_workers_keep_the_same_network_and_prototypes(tmp_path):
    """CoPE replays from the union of the workers' class-balanced buffers and moves its prototypes
    by the embeddings of every worker's step (their sums summed over the workers): the workers end
    with the same network and the same prototypes, though each holds samples of its own."""
    _, runtime = complete_run_on_two_workers(tmp_path, "cope", [], 0.6)
    assert runtime["replay_steps"] > 0
    states = assert_workers_end_with_the_same_network(tmp_path / "cope")
    assert_workers_store_samples_of_their_own(states)
    assert bool(states[0]["known"].all()), "every class of the stream has its prototype"
    torch.testing.assert_close(states[0]["prototypes"], states[1]["prototypes"])
    assert torch.equal(states[0]["known"], states[1]["known"])


@pytest.mark.slow
def test_co2l_workers_keep_the_same_network_and_probe(tmp_path):
    """Co2L replays from the union of the workers' buffers, distils the previous task's network,
    which DDP kept equal, and trains its probe on the union of the buffers at each task's end:
    the workers end with the same network, probe included, though each holds samples of its own."""
    complete_run_on_two_workers(tmp_path, "co2l", [], 0.6)
    states = assert_workers_end_with_the_same_network(tmp_path / "co2l")
    assert_workers_store_samples_of_their_own(states)
    assert float(states[0]["model"]["model.probe.weight"].abs().sum()) > 0


@pytest.mark.slow
def test_wa_workers_keep_the_same_network(tmp_path):
    """Each worker clips its output layer after every step and aligns it at each task's end, from
    weights DDP keeps equal: the networks, and the teachers distilled from them, stay equal."""
    # on digits' short tasks aligning helps little (the README's wa paragraph): above fine-tuning's 0.2
    complete_run_on_two_workers(tmp_path, "wa", [], 0.3)
    assert_workers_end_with_the_same_network(tmp_path / "wa")


@pytest.mark.slow
def test_a_cosine_schedule_anneals_over_the_steps_each_worker_takes(tmp_path):
    """Under DDP each worker trains on its half of the data: a cosine schedule sized by the whole
    loader would stop halfway down. gdumb anneals each retraining to --min_lr by default."""
    complete_run_on_two_workers(tmp_path, "gdumb", ["--buffer_size", "500", "--retrain_epochs", "10"], 0.8)
    with open(tmp_path / "gdumb" / "logs" / "train.csv") as f:
        rates = [float(row["train/lr"]) for row in csv.DictReader(f)]  # every 10th step's
    ends = [i for i in range(len(rates)) if i + 1 == len(rates) or rates[i + 1] > rates[i]]
    assert len(ends) == 5, "one retraining per task, each starting again from --lr"
    assert all(0.0005 <= rates[i] < 0.005 for i in ends), [rates[i] for i in ends]


def last_worker_states(run: Path) -> list[dict]:
    """The method states of the two workers' last checkpoints of the run folder `run`."""
    return [torch.load(run / "checkpoints" / name, weights_only=False)["method"]
            for name in ("after_stage_4.pt", "after_stage_4.worker1.pt")]


def assert_workers_end_with_the_same_network(run: Path) -> list[dict]:
    """The two workers' last checkpoints of the run folder `run` hold the same network; their
    method states, returned."""
    states = last_worker_states(run)
    for name, value in states[0]["model"].items():
        if name != "task_classes":  # each worker learns it from its own batches
            torch.testing.assert_close(states[1]["model"][name], value, msg=name)
    return states


def assert_workers_store_samples_of_their_own(states: list[dict]) -> None:
    """The two workers' method `states` hold buffers of different samples."""
    buffers = [state["buffer"]["storage"]["y"][: state["buffer"]["size"]] for state in states]
    assert not torch.equal(buffers[0], buffers[1]), "each worker stores samples of its own"


def complete_run_on_two_workers(tmp_path, method: str, options: list[str], minimum: float) -> tuple[dict, dict]:
    """Run `method` on digits with 2 CPU workers; check that it ends with all 5 tasks and a final
    average accuracy above `minimum`; return its results and the method's runtime report."""
    out = sylvan("--setting", "distributed", "--method", method, "--devices", "2", *COMMON, "--batch_size", "16",
                 *options, "--results_dir", str(tmp_path), "--run_name", method)
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / method / "results.json").read_text())
    assert results["complete"] and len(results["accuracy_matrix"]) == 5
    assert results["final_average_accuracy"] > minimum  # fine-tuning keeps about 0.2
    return results, json.loads((tmp_path / method / "runtime.json").read_text())["method_runtime"]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "options", "minimum"), [
    # the stored logits travel with the samples; at its Seq-MNIST alpha (0.2) DER keeps no more of
    # the old classes than fine-tuning in these few steps, in one process too
    ("der", ["--alpha", "3"], 0.5),
    ("derpp", [], 0.6),  # two independent draws from the union per step
    ("er_ace", [], 0.6),
    ("er_aml", [], 0.6),  # two draws per step (the replay, then the pool of positives and negatives)
    ("pcr", [], 0.6),  # the replay and its views
    ("lode", [], 0.6),  # each worker tells old classes from new by its own batches
    ("lode_derpp", [], 0.6),
    ("mir", [], 0.6),  # scores candidates from the union against its own virtual step on every worker
    # values candidates from the union against its own minibatch; its memory stores after each step
    ("aser", [], 0.6),
])
def test_replay_methods_replay_from_the_global_buffer_on_two_workers(tmp_path, method, options, minimum):
    _, runtime = complete_run_on_two_workers(tmp_path, method, options, minimum)
    assert runtime["replay_steps"] > 0, "every step drew from the distributed rehearsal buffer"


@pytest.mark.slow
def test_rehearsal_with_augmentation_runs_on_two_workers(tmp_path):
    """The learner augments the minibatch, and the method the global replay it joins to it."""
    out = sylvan("--setting", "distributed", "--method", "rehearsal", "--devices", "2", *COMMON, "--batch_size", "16",
                 "--augmentation", "crop_flip", "--crop_padding", "1", "--results_dir", str(tmp_path),
                 "--run_name", "augmented", "--save_checkpoints", "false")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "augmented" / "checkpoints").exists(), "no worker writes a checkpoint part either"
    results = json.loads((tmp_path / "augmented" / "results.json").read_text())
    assert results["complete"] and len(results["accuracy_matrix"]) == 5
    assert results["task_aware_accuracy"] > 0.8


def parallel_part(**options) -> DataParallel:
    """The data-parallel part a run of `DistributedSetting(**options)` holds."""
    return DataParallel.of(DistributedSetting(accelerator="cpu", **options))


def test_workers_that_never_joined_are_named_as_such():
    """A failure before every worker joined says so; with several nodes, that each node needs the
    command started by a launcher. A failure after they joined (a worker died) says neither."""
    parallel = parallel_part(devices=1, num_nodes=2, worker_timeout=5)
    timed_out = RuntimeError("Timed out after 6 seconds waiting for clients. 1/2 clients joined.")
    message = parallel.describe_failure(timed_out)
    assert "Not all 2 workers joined within --worker_timeout 5 s" in message
    assert "With --num_nodes 2, start the same command on every node" in message
    parallel.joined = True  # as the engine records it once they joined
    message = parallel.describe_failure(RuntimeError("Connection closed by peer"))
    assert "joined" not in message and "--num_nodes" not in message


def test_workers_started_before_the_rendezvous_failed_are_reported():
    """The workers this process started are named with their state even when they never all
    joined: the run's data-parallel part records them as it starts them."""
    parallel = parallel_part(devices=2, num_nodes=2, worker_timeout=5)
    parallel.processes = [SimpleNamespace(poll=lambda: 1)]
    timed_out = RuntimeError("Timed out after 6 seconds waiting for clients. 2/4 clients joined.")
    message = parallel.describe_failure(timed_out)
    assert "worker 1 exited with status 1." in message
    parallel.processes = [SimpleNamespace(poll=lambda: None)]
    parallel.exit_wait = 0.1  # it would not exit within any wait
    assert "worker 1 is still running." in parallel.describe_failure(RuntimeError("Connection closed by peer"))


def test_the_worker_that_died_is_named_first_and_the_one_that_noticed_after_it():
    """A worker killed by a signal (or exiting with an error) is the cause: the message names it
    and how it ended first, then the worker that lost contact with it; a worker still running
    or ended cleanly is listed after."""
    parallel = DataParallel(devices=3, num_nodes=1, worker_timeout=5, accelerator="cpu")
    parallel.joined = True
    parallel.exit_wait = 0.1
    parallel.processes = [SimpleNamespace(poll=lambda: None), SimpleNamespace(poll=lambda: -9)]
    message = parallel.describe_failure(RuntimeError("Connection closed by peer"))
    assert message.startswith("worker 2 was killed by signal 9 (SIGKILL). worker 0 lost contact with it "
                              "(Connection closed by peer).")
    assert "worker 1 is still running." in message and "lost contact with the other workers" not in message
    parallel.processes = [SimpleNamespace(poll=lambda: 0), SimpleNamespace(poll=lambda: None)]
    message = parallel.describe_failure(RuntimeError("Connection closed by peer"))
    assert message.startswith("worker 0 lost contact with the other workers")
    assert "worker 1 exited with status 0." in message and "worker 2 is still running." in message


@pytest.mark.slow
def test_a_killed_worker_stops_every_worker_and_is_named(tmp_path):
    """Worker 1 killed by SIGKILL during the run: every worker stops within the timeout, exit
    status 1, the message names worker 1 and the signal, and the finished tasks are kept."""
    start = time.monotonic()
    out = sylvan("--plugin", str(REPO / "tests" / "plugins" / "dying_worker.py"), "--setting", "distributed",
                 "--method", "dying_worker", "--kill_signal", "9", "--devices", "2", *COMMON,
                 "--worker_timeout", "30", "--results_dir", str(tmp_path), "--run_name", "killed")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "worker 1 was killed by signal 9 (SIGKILL). worker 0 lost contact with it" in out.stderr
    assert time.monotonic() - start < 120
    results = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert len(results["accuracy_matrix"]) == 2 and results["complete"] is False


def test_more_cpu_workers_than_cores_are_refused():
    """Each CPU worker is a process with its own copy of torch and the data: more of them than
    the machine has cores only slow each other down and fill its memory."""
    from sylvan.parallel.data_parallel import usable_cores

    cores = usable_cores()
    DistributedSetting(accelerator="cpu", devices=cores)
    with pytest.raises(ConfigurationError, match=f"--devices {cores + 1} asks for {cores + 1} CPU worker processes "
                                                 f"on this node, which has {cores} core"):
        DistributedSetting(accelerator="cpu", devices=cores + 1)
    with pytest.raises(ConfigurationError, match="CPU worker processes"):
        ClassIncrementalSetting(accelerator="cpu", devices=cores + 1)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie of a process that ended counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("end", ["timed_out", "killed"])
def test_the_workers_a_run_started_end_with_it(tmp_path, end):
    """Worker 1 is slow to start (30 s, once it has imported what it needs). Worker 0 gives up
    waiting for it after --worker_timeout 15 s and fails; or is killed by SIGKILL while it waits,
    which no code of its sees. Either way worker 1 must end within seconds of worker 0, not live
    on after the command has returned."""
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "DYING_WORKER_PID_DIR": str(pids), "DYING_WORKER_SLOW_START": "30"}
    with open(tmp_path / "out.txt", "w") as output:  # not a pipe: its end would wait for every worker
        worker_0 = subprocess.Popen(
            [sys.executable, str(REPO / "cli.py"), "--plugin", str(REPO / "tests" / "plugins" / "dying_worker.py"),
             "--setting", "distributed", "--method", "dying_worker", "--devices", "2", *COMMON,
             "--worker_timeout", "15" if end == "timed_out" else "100", "--results_dir", str(tmp_path)],
            stdout=output, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while not (pids / "worker1.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        worker_1 = int((pids / "worker1.pid").read_text())
        if end == "killed":
            worker_0.kill()
        status = worker_0.wait(timeout=300)
    ended = time.monotonic()
    printed = (tmp_path / "out.txt").read_text()
    if end == "timed_out":
        assert status == 1 and "Not all 2 workers joined within --worker_timeout 15 s" in printed, printed
    while alive(worker_1) and time.monotonic() - ended < 5:
        time.sleep(0.1)
    assert not alive(worker_1), f"worker 1 still runs {time.monotonic() - ended:.0f} s after worker 0 ended"


@pytest.mark.slow
def test_a_missing_node_stops_the_run_after_the_worker_timeout(tmp_path):
    """--num_nodes 2 started on one machine alone: the run waits --worker_timeout for the other
    node's worker, then stops with exit status 1 and says how multi-node runs are started."""
    start = time.monotonic()
    out = sylvan("--setting", "distributed", "--method", "naive", "--devices", "1", "--num_nodes", "2",
                 "--worker_timeout", "5", *COMMON, "--results_dir", str(tmp_path))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Not all 2 workers joined within --worker_timeout 5 s" in out.stderr
    assert "start the same command on every node" in out.stderr
    assert time.monotonic() - start < 120


@pytest.mark.slow
@pytest.mark.parametrize("busy_seconds", [0, 8], ids=["at_once", "worker_0_busy"])
def test_a_dead_worker_stops_the_run_with_a_clear_error(tmp_path, busy_seconds):
    """Worker 0 names the worker that died, whether it meets the broken connection at once or
    only after 8 s of work of its own (Lightning's launcher would kill every process, worker 0
    too, 5 s after the death, with no word: `sylvan.parallel.launcher`)."""
    start = time.monotonic()
    out = sylvan("--plugin", str(REPO / "tests" / "plugins" / "dying_worker.py"), "--setting", "distributed",
                 "--method", "dying_worker", "--devices", "2", *COMMON, "--worker_timeout", "30",
                 "--busy_seconds", str(busy_seconds), "--results_dir", str(tmp_path), "--run_name", "dies")
    elapsed = time.monotonic() - start
    assert out.returncode == 1, out.stdout + out.stderr
    assert "worker 1 exited with status 17" in out.stderr
    assert "Not all 2 workers joined" not in out.stderr  # they had: one died later
    assert "Traceback" not in out.stderr.split("sylvan: run failed")[-1]
    assert elapsed < 120
    results = json.loads((tmp_path / "dies" / "results.json").read_text())
    assert len(results["accuracy_matrix"]) == 2 and results["complete"] is False


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "status", "said"), [
    (signal.SIGTERM, 143, "stopped by SIGTERM"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_to_every_worker_stops_the_run_at_once(tmp_path, stop, status, said):
    """A scheduler signals every process of the job at once. The workers stop within seconds
    (not after --worker_timeout, as when each ran Lightning's SIGTERM broadcast against the
    others' collectives), with the signal's status and a message, not a reported failure."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "--setting", "distributed", "--method", "rehearsal", "--devices", "2",
         *COMMON, "--epochs", "30", "--worker_timeout", "600", "--results_dir", str(tmp_path), "--run_name", "stopped"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_signal_handling, start_new_session=True,
    )
    try:
        for line in process.stdout:
            if line.startswith("[sylvan] stage 1/5 done"):
                time.sleep(0.5)  # into task 1's training
                os.killpg(process.pid, stop)
                break
        _, stderr = process.communicate(timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == status, stderr
    assert f"sylvan: {said}; the results of the tasks finished so far are in" in stderr
    assert "run failed" not in stderr and "Traceback" not in stderr
    kept = json.loads((tmp_path / "stopped" / "results.json").read_text())
    assert len(kept["accuracy_matrix"]) >= 1 and not kept["complete"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rehearsal", "derpp"])  # derpp: two draws per step, logits stored
def test_a_stopped_run_resumes_as_if_never_stopped(tmp_path, method):
    """A job stopped by its scheduler continues with `--resume`: every worker writes its part of
    each checkpoint (its buffer, its generators, the replay's exchange in flight between tasks),
    and the continued run writes the same results.json and train.csv as a run never stopped."""
    options = ["--setting", "distributed", "--method", method, "--devices", "2", *COMMON, "--batch_size", "16",
               "--results_dir", str(tmp_path)]
    process = subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), *options, "--run_name", "stopped"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_signal_handling, start_new_session=True,
    )
    try:
        for line in process.stdout:
            if line.startswith("[sylvan] stage 2/5 done"):
                os.killpg(process.pid, signal.SIGTERM)
                break
        _, stderr = process.communicate(timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    stopped = tmp_path / "stopped"
    assert process.returncode == 143, stderr
    assert f"continue the run with: sylvan --resume {stopped}" in stderr
    assert (stopped / "checkpoints" / "after_stage_1.worker1.pt").is_file()
    finished = len(json.loads((stopped / "results.json").read_text())["accuracy_matrix"])
    assert 2 <= finished < 5

    resumed = sylvan("--resume", str(stopped))
    assert resumed.returncode == 0, resumed.stderr
    assert f"after stage {finished}," in resumed.stdout
    whole = sylvan(*options, "--run_name", "whole")
    assert whole.returncode == 0, whole.stderr
    assert (stopped / "results.json").read_text() == (tmp_path / "whole" / "results.json").read_text()
    assert (stopped / "logs" / "train.csv").read_text() == (tmp_path / "whole" / "logs" / "train.csv").read_text()


@pytest.mark.slow
def test_a_resumed_two_worker_run_of_experts_records_the_uninterrupted_runs_cost(tmp_path):
    """hard_moe shares its experts out among the workers (`owns(job)`): resumed, the first stage
    asked which jobs were this worker's before the workers had joined, and each trained every
    expert of that stage (the owners' weights then overwrote the copies, so accuracies agreed,
    the training FLOPs did not)."""
    import shutil

    common = ["--setting", "class_incremental", "--method", "hard_moe", "--devices", "2", "--accelerator", "cpu",
              "--epochs", "1", "--seed", "8", "--progress_bar", "false", "--results_dir", str(tmp_path)]
    full = sylvan(*common, "--run_name", "full")
    assert full.returncode == 0, full.stderr
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    for stale in (tmp_path / "cut" / "checkpoints").glob("after_stage_[234]*"):
        stale.unlink()
    resumed = sylvan("--resume", str(tmp_path / "cut"))
    assert resumed.returncode == 0, resumed.stderr
    whole, cut = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("full", "cut"))
    assert cut["accuracy_matrix"] == whole["accuracy_matrix"]
    assert cut["cost"] == whole["cost"]
