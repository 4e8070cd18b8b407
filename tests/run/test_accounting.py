"""What a run costs (`sylvan.run.accounting`): its training and inference FLOPs and the bytes a
method holds, checked against values computed by hand for the digits MLP (8x8 inputs,
64-100-100-10)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from sylvan.methods import METHODS
from sylvan.run import accounting
from sylvan.run.accounting import held_tensors, memory_account, storage_bytes
from sylvan.settings import ClassIncrementalSetting, TaskIncrementalSetting
from tests.conftest import REPO, loaded_from_file

MLP_WEIGHTS = 64 * 100 + 100 * 100 + 100 * 10  # multiply-adds of one forward pass per sample
MLP_PARAMETERS = MLP_WEIGHTS + 100 + 100 + 10
# the learner's table of the classes each task has shown (tasks x classes, bool)
TASK_CLASSES = 5 * 10


def digits(setting_cls=ClassIncrementalSetting, **options):
    return setting_cls(dataset="digits", nb_tasks=5, progress_bar=False, **options)


def run(method_name: str, setting=None, **method_options):
    method = METHODS[method_name](**method_options)
    results = (setting or digits()).apply(method)
    return method, results


def test_naive_holds_its_network_and_runs_it_once_per_sample():
    method, results = run("naive")
    cost = results.cost()
    assert cost["parameters"] == MLP_PARAMETERS
    assert cost["network_bytes"] == 4 * MLP_PARAMETERS
    assert cost["kept_bytes"] == TASK_CLASSES
    assert cost["inference_flops_per_sample"] == 2 * MLP_WEIGHTS  # a multiply-add is two FLOPs
    assert cost["memory_bytes"] == cost["network_bytes"] + cost["kept_bytes"]
    assert len(cost["per_stage"]["training_flops"]) == 5


def test_a_rehearsal_buffer_with_logits_is_counted_at_its_stored_dtypes():
    """der keeps, for each of its 200 slots and one spare row: the 8x8 inputs as uint8 pixels,
    the label and the task label (int64) and the 10 logits (float32). The buffer's scratch space
    and caches (attributes named with "_") are not state, and are left out."""
    method, results = run("der", buffer_size=200)
    assert method.buffer.storage["x"].dtype == torch.uint8
    rows = 200 + 1
    assert results.cost()["kept_bytes"] == rows * (64 + 8 + 8 + 4 * 10) + TASK_CLASSES
    assert results.cost()["network_bytes"] == 4 * MLP_PARAMETERS


def test_ewc_keeps_an_importance_and_an_anchor_per_weight():
    _, results = run("ewc")
    assert results.cost()["kept_bytes"] == 2 * 4 * MLP_PARAMETERS + TASK_CLASSES


def test_pnn_counts_every_column_and_lateral_connection():
    """Three columns of the MLP, and the lateral adapters of the second (from one earlier column)
    and the third (from two): each adapter scales the earlier columns' features (alpha),
    projects them to 100 units and maps those into the next layer."""
    setting = TaskIncrementalSetting(dataset="digits", nb_tasks=3, progress_bar=False)
    _, results = run("pnn", setting)
    columns = 3 * MLP_PARAMETERS
    second = (100 + 100 * 100 + 100 + 100 * 100) + (100 + 100 * 100 + 100 + 10 * 100)
    third = (200 + 100 * 200 + 100 + 100 * 100) + (200 + 100 * 200 + 100 + 10 * 100)
    assert results.cost()["parameters"] == columns + second + third
    assert results.cost()["network_bytes"] == 4 * (columns + second + third)


def test_every_step_counted_gives_the_exact_training_flops(monkeypatch):
    """Each sample's step: the forward pass, and a backward pass computing every weight's
    gradient and every layer's input gradient but the first's (the data need none)."""
    monkeypatch.setattr(accounting, "SAMPLE_EVERY", 1)
    _, results = run("naive")
    backward = 2 * MLP_WEIGHTS + 2 * (MLP_WEIGHTS - 64 * 100)
    per_sample = 2 * MLP_WEIGHTS + backward
    assert results.training_flops == [per_sample * seen for seen in results.samples_seen]


def test_sampled_steps_estimate_the_training_flops_closely():
    _, results = run("naive")
    backward = 2 * MLP_WEIGHTS + 2 * (MLP_WEIGHTS - 64 * 100)
    exact = [(2 * MLP_WEIGHTS + backward) * seen for seen in results.samples_seen]
    assert all(abs(estimate - truth) / truth < 0.01 for estimate, truth in zip(results.training_flops, exact))


def test_work_outside_the_steps_is_counted_whole(monkeypatch):
    """ewc's Fisher information, computed where a task ends, adds to the steps' FLOPs."""
    monkeypatch.setattr(accounting, "SAMPLE_EVERY", 1)
    _, naive = run("naive")
    _, ewc = run("ewc")
    assert all(e > n for e, n in zip(ewc.training_flops, naive.training_flops))


def test_trained_parameters_are_those_a_stage_changed():
    method, results = run("naive")
    assert all(0 < trained <= MLP_PARAMETERS for trained in results.trained_parameters)


def test_counting_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("SYLVAN_COUNT_FLOPS", "0")
    _, results = run("naive")
    assert results.training_flops == [0.0] * 5
    assert results.cost()["inference_flops_per_sample"] == 2 * MLP_WEIGHTS


def test_a_storage_is_counted_once_however_many_views_hold_it():
    whole = torch.zeros(10, 4)
    assert storage_bytes(iter([whole, whole[2:5], whole.view(40)])) == 160
    net = torch.nn.Linear(3, 2)
    assert storage_bytes(held_tensors({"a": net, "b": [net.weight], "c": (net,)})) == 4 * (6 + 2)


def test_the_run_context_and_its_data_are_not_counted():
    method, _ = run("naive")
    assert memory_account(method)["kept"] == TASK_CLASSES  # the method holds `run`, and it the setting's tasks


def test_what_a_plugin_method_holds_is_counted_as_a_builtin_one_is():
    """Methods added as plugins load under modules of their own names, not sylvan's: what they
    keep (the L2 anchor's copy of the weights; a store of samples in a class of the plugin's own)
    is counted all the same."""
    from sylvan.methods import METHODS

    with loaded_from_file(REPO / "examples" / "l2_anchor.py", METHODS) as plugin:
        method = plugin.L2Anchor()
        results = digits().apply(method)
    assert results.cost()["kept_bytes"] == 4 * MLP_PARAMETERS + TASK_CLASSES
    with loaded_from_file(REPO / "tests" / "plugins" / "replay_outside.py", METHODS) as plugin:
        method = plugin.ReplayOutside(store_size=50)
        results = digits().apply(method)
    assert results.cost()["kept_bytes"] == 50 * (64 * 4 + 8) + TASK_CLASSES


def test_results_json_and_the_console_hold_the_cost(tmp_path, capsys):
    from sylvan.run.experiment import RunOptions, run_experiment

    results = run_experiment(digits(), METHODS["naive"](), RunOptions(results_dir=str(tmp_path), run_name="naive"))
    recorded = json.loads((tmp_path / "naive" / "results.json").read_text())
    assert recorded["cost"] == json.loads(json.dumps(results.cost()))
    assert recorded["cost"]["inference_flops_per_sample"] == 2 * MLP_WEIGHTS
    out = capsys.readouterr().out
    assert "training compute" in out and "memory kept" in out
    with open(tmp_path / "naive" / "logs" / "cost.csv") as f:  # a row per stage
        rows = list(csv.DictReader(f))
    per_stage = recorded["cost"]["per_stage"]
    assert [int(row["stage"]) for row in rows] == list(range(5))
    for key, values in per_stage.items():
        assert [float(row[key]) for row in rows] == [float(value) for value in values], key


def dqn_on_cartpole():
    from sylvan.settings import SETTINGS
    from tests.conftest import tiny_method, tiny_options

    setting_cls = SETTINGS["incremental_rl"]
    return setting_cls(**tiny_options(setting_cls, METHODS["dqn"])), tiny_method(METHODS["dqn"])


# the Q-network of the tiny dqn on CartPole: 4 observations, 32-32 hidden units, 2 actions
Q_WEIGHTS = 4 * 32 + 32 * 32 + 32 * 2
Q_PARAMETERS = Q_WEIGHTS + 32 + 32 + 2


def test_rl_runs_record_their_cost_exactly_when_every_call_is_counted(monkeypatch):
    """With every call counted: acting greedily runs the Q-network on one observation; each
    gradient step runs it forward and backward (no gradient for the observations) and the
    target network forward, on a minibatch of `replay_size` (fewer while the memory holds fewer)."""
    monkeypatch.setattr(accounting, "SAMPLE_EVERY", 1)
    monkeypatch.setattr(accounting, "CALLS_PER_GAP", 10**9)  # the gap never grows
    setting, method = dqn_on_cartpole()
    forwards, in_fit = [], [False]
    configure, fit = method.configure, method.fit

    def configure_watching(run):
        configure(run)
        method.model.register_forward_pre_hook(  # the network itself, as it acts and as it learns
            lambda module, args: forwards.append(len(args[0])) if in_fit[0] else None)

    def fit_watched(*args):
        in_fit[0] = True
        try:
            return fit(*args)
        finally:
            in_fit[0] = False

    method.configure, method.fit = configure_watching, fit_watched
    cost = setting.apply(method).cost()
    greedy, learned = [n for n in forwards if n == 1], [n for n in forwards if n > 1]
    assert len(learned) == method.gradient_steps > 0 and greedy and max(learned) == method.replay_size
    per_sample_learnt = 3 * 2 * Q_WEIGHTS + 2 * (32 * 32 + 32 * 2)
    assert cost["training_flops"] == len(greedy) * 2 * Q_WEIGHTS + sum(learned) * per_sample_learnt
    assert cost["inference_flops_per_sample"] == 2 * Q_WEIGHTS
    assert cost["parameters"] == Q_PARAMETERS and cost["network_bytes"] == 4 * Q_PARAMETERS
    transition = 4 * 4 + 8 + 4 + 4 * 4 + 4  # observation, action (int64), reward, next observation, terminal
    # the target network, Adam's two moments and step counts, and the replay memory's rows and spare row
    assert cost["kept_bytes"] == 3 * 4 * Q_PARAMETERS + 6 * 4 + (method.buffer_size + 1) * transition


def test_rl_training_flops_are_estimated_from_sampled_calls(monkeypatch):
    """600 steps: 12 actions and 3 of the 138 gradient steps are counted (the first on the few
    transitions the memory holds then); the estimator itself is exact on strata of equal steps
    (the tests below)."""
    setting, method = dqn_on_cartpole()
    sampled = setting.apply(method).cost()["training_flops"]
    monkeypatch.setattr(accounting, "SAMPLE_EVERY", 1)
    monkeypatch.setattr(accounting, "CALLS_PER_GAP", 10**9)
    setting, method = dqn_on_cartpole()
    exact = setting.apply(method).cost()["training_flops"]
    assert sampled == pytest.approx(exact, rel=0.1)


def _loop_calls(account: accounting.ComputeAccount, flops_of_call: list[int]) -> int:
    """Run one `act` call per entry of `flops_of_call` through `account` (each a matrix product
    of that many FLOPs: 2 x 1 x k by k x 1), in a stage whose steps are sampled; how many calls
    were counted."""
    counted = 0
    for flops in flops_of_call:
        account.call_started("act")
        counting = account.call_count is not None
        torch.ones(1, flops // 2) @ torch.ones(flops // 2, 1)
        account.call_ended("act")
        counted += counting
    return counted


def test_a_loops_calls_are_sampled_more_thinly_as_the_stage_goes_on():
    account = accounting.ComputeAccount()
    account.start_stage(whole=False)
    counted = _loop_calls(account, [64] * 50_000)
    assert account.end_stage() == 64 * 50_000  # every call the same: the estimate is exact
    every = accounting.SAMPLE_EVERY
    gaps = [every * 2 ** (k // accounting.CALLS_PER_GAP) for k in range(counted)]
    assert sum(gaps[:-1]) < 50_000 <= sum(gaps)  # the gap doubles after every CALLS_PER_GAP counted calls
    assert counted < 50_000 / every / 5


def test_each_counted_call_stands_for_its_stratum():
    """FLOPs that change at a stratum's start (a greedy policy after random actions) are
    weighted by the calls each held for, not averaged over the counted calls."""
    account = accounting.ComputeAccount()
    account.start_stage(whole=False)
    switch = accounting.SAMPLE_EVERY * accounting.CALLS_PER_GAP  # where the second stratum width starts
    _loop_calls(account, [2] * switch + [200] * (3 * switch))
    assert account.end_stage() == 2 * switch + 200 * 3 * switch
