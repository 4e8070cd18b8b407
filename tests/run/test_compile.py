"""`--compile`: the network of the engine's fits compiled in place with `torch.compile`, the run's
results those of the eager network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sylvan.run.engine as engine
from sylvan.methods import Naive, Rehearsal
from sylvan.models import build_backbone
from sylvan.run.engine import COMPILED, compile_in_place
from sylvan.settings import ClassIncrementalSetting
from tests.conftest import tiny_options


def run(method, **options):
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), **options})
    return setting.apply(method), method


@pytest.fixture
def traced_only(monkeypatch):
    """Compilation that captures the graphs (TorchDynamo) and runs them as they are, without
    generating code: the run's numbers are the eager run's, bit for bit."""
    monkeypatch.setattr(engine, "COMPILE_OPTIONS", {"backend": "eager"})
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("method_of", [Naive, lambda: Rehearsal(buffer_size=20, replay_size=8)], ids=["naive", "er"])
def test_a_compiled_run_trains_and_evaluates_the_compiled_network_to_the_eager_runs_results(traced_only, method_of):
    eager, _ = run(method_of())
    compiled, method = run(method_of(), compile=True)
    assert method.learner.model.features in COMPILED
    assert compiled.accuracy_matrix == eager.accuracy_matrix
    assert compiled.final_average_accuracy > 0


def test_a_network_is_compiled_in_place_once_its_state_dict_unchanged(traced_only):
    network = build_backbone("mlp", (1, 8, 8), 10)
    names = list(network.state_dict())
    compile_in_place(network)
    compile_in_place(network)
    assert network.features in COMPILED and list(network.state_dict()) == names
    whole = nn.Linear(4, 2)  # a network without feature layers: its forward compiled
    compile_in_place(whole)
    assert whole in COMPILED and whole(torch.ones(1, 4)).shape == (1, 2)


def test_runs_are_not_compiled_unless_asked(traced_only):
    _, method = run(Naive())
    assert method.learner.model.features not in COMPILED


@pytest.mark.slow
def test_a_run_compiled_to_code_on_the_cpu_learns_as_the_eager_run():
    """Inductor's generated kernels (C++ on the CPU): sums in another order, so results within a
    point or two of the eager run's, not bit for bit."""
    torch._dynamo.reset()
    eager, _ = run(Naive(), dataset="digits", train_samples=None)
    compiled, _ = run(Naive(), dataset="digits", train_samples=None, compile=True)
    torch._dynamo.reset()
    assert abs(compiled.final_average_accuracy - eager.final_average_accuracy) < 0.03


@pytest.mark.slow
def test_a_compiled_run_on_two_workers_learns_as_the_eager_one_and_its_command_ends(tmp_path):
    """DDP over the compiled network (gloo, 2 processes), from the command line, which must end
    once its results are written (torch.compile leaves a thread pool open)."""
    import json

    from tests.cli.test_cli import sylvan

    accuracy = {}
    for name, compiled in (("eager", "false"), ("compiled", "true")):
        out = sylvan("--setting", "distributed", "--method", "rehearsal", "--devices", "2", "--dataset", "digits",
                     "--accelerator", "cpu", "--seed", "0", "--progress_bar", "false", "--compile", compiled,
                     "--results_dir", str(tmp_path), "--run_name", name)
        assert out.returncode == 0, out.stderr
        accuracy[name] = json.loads((tmp_path / name / "results.json").read_text())["final_average_accuracy"]
    assert abs(accuracy["compiled"] - accuracy["eager"]) < 0.03


def test_compiling_on_a_cpu_without_a_cpp_compiler_is_refused_before_the_run(monkeypatch):
    """On the CPU, torch.compile generates C++ and builds it at the first step: without a compiler
    the run would fail there, with a compiler's traceback; it is refused when the setting is made."""
    import shutil

    from sylvan.errors import ConfigurationError

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ConfigurationError, match="--compile on the CPU needs a C[+][+] compiler"):
        ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "accelerator": "cpu", "compile": True})
    ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "accelerator": "cpu"})  # not asked: fine
