"""sylvan's training loop (`sylvan.run.engine`): the order of a fit's trigger points and the
method's hooks, callbacks of one's own, and networks a method trains in a loop of its own,
set up by the run on its device and precision."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sylvan.methods import Naive
from sylvan.methods.core.base import Method
from sylvan.run.callbacks import Callback
from sylvan.run.engine import Engine
from sylvan.settings import ClassIncrementalSetting, OnlineSetting
from tests.conftest import tiny_options


class Recorder(Callback):
    """Records the trigger points of every fit it joins."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def fit_started(self, fit):
        self.events.append(f"fit {fit.epochs} {fit.planned_steps}")

    def epoch_started(self, fit):
        self.events.append(f"epoch {fit.epoch}")

    def minibatch_started(self, fit, batch):
        self.events.append(f"start {fit.step} {fit.batch_size}")

    def minibatch_ended(self, fit):
        assert fit.loss is not None and fit.loss.requires_grad
        self.events.append(f"end {fit.step}")

    def fit_ended(self, fit):
        self.events.append("fit ended")


@dataclass
class HookOrder(Naive):
    name: ClassVar[str] = ""  # unregistered

    def configure(self, run):
        super().configure(run)
        self.events: list[str] = []

    def training_step(self, batch):
        self.events.append("loss")
        return super().training_step(batch)

    def after_backward(self):
        assert all(p.grad is not None for p in self.model.parameters())
        self.events.append("after_backward")

    def after_step(self):
        self.events.append("after_step")


def test_a_fit_calls_its_trigger_points_and_the_methods_hooks_in_order():
    """Per minibatch: the callbacks' start, the loss, the gradients (after_backward), the
    optimizer's step, the callbacks' end, after_step; a callback of one's own joins every fit."""
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "epochs": 2, "batch_size": 16})
    method = HookOrder()
    setting.apply(method, callbacks=[Recorder(events := [])])
    fits = [i for i, event in enumerate(events) if event.startswith("fit ") and event != "fit ended"]
    assert len(fits) == setting.nb_tasks and events.count("fit ended") == setting.nb_tasks
    steps_per_epoch = int(events[0].split()[2].split(".")[0]) // 2
    first_fit = events[: fits[1]]
    assert first_fit[1] == "epoch 0" and first_fit[2 + 2 * steps_per_epoch] == "epoch 1"
    assert first_fit[2:6] == ["start 0 16", "end 0", "start 1 16", "end 1"]
    assert first_fit[-1] == "fit ended"
    per_step = method.events[:6]
    assert per_step == ["loss", "after_backward", "after_step"] * 2


def test_a_callback_is_called_at_the_trigger_points_it_overrides_or_is_given():
    """A callback that overrides one trigger point, and one given its method on the instance,
    are each called at every step (the loop looks up, once per fit, which do something)."""
    class EndsOnly(Callback):
        def __init__(self) -> None:
            self.ends = 0

        def minibatch_ended(self, fit):
            self.ends += 1

    ends_only, given = EndsOnly(), Callback()
    starts: list[int] = []
    given.minibatch_started = lambda fit, batch: starts.append(fit.step)
    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting))
    setting.apply(Naive(), callbacks=[ends_only, given])
    assert ends_only.ends == len(starts) > 0 and starts[:3] == [0, 1, 2]


class TwoExperts(Method):
    """A user's method with a network per pair of tasks (an expert for even tasks, one for odd
    ones), each trained in a loop of its own: no device or precision code of its own."""

    name: ClassVar[str] = ""  # unregistered
    target_setting: ClassVar[type] = ClassIncrementalSetting

    def configure(self, run):
        super().configure(run)
        features = int(torch.tensor(run.input_shape).prod())
        self.experts = [nn.Sequential(nn.Flatten(), nn.Linear(features, run.num_classes)) for _ in range(2)]
        self.task = 0
        self.training_dtypes: set[torch.dtype] = set()  # of the experts' layers' outputs, in training
        for expert in self.experts:
            expert[1].register_forward_hook(self.record_dtype)
        self.devices: set[torch.device] = set()

    def on_task_start(self, task_id):
        self.task = task_id

    def fit(self, train_data, val_data=None):
        expert = self.experts[self.task % 2].train()
        network, optimizer = self.run.setup(expert, torch.optim.SGD(expert.parameters(), lr=0.1))
        for x, y, *_ in train_data:
            x, y = x.to(self.run.device), y.to(self.run.device)
            logits = network(x)
            self.devices.update(p.device for p in network.parameters())
            optimizer.zero_grad()
            self.run.backward(F.cross_entropy(logits, y))
            optimizer.step()

    def record_dtype(self, layer, inputs, output):
        if layer.training:
            self.training_dtypes.add(output.dtype)

    def predict(self, x, task_labels=None):
        with torch.no_grad():
            for expert in self.experts:
                expert.eval()
            # an expert is on the run's device once its first fit set it up, on the CPU before
            scores = [expert(x.to(next(expert.parameters()).device)).float().to(x.device) for expert in self.experts]
            return torch.stack(scores).max(0).values

    def state_dict(self):
        return {**super().state_dict(), "experts": [expert.state_dict() for expert in self.experts]}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for expert, weights in zip(self.experts, state["experts"]):
            expert.load_state_dict(weights)


@pytest.mark.parametrize(("precision", "dtype"), [("32-true", torch.float32), ("bf16-mixed", torch.bfloat16)])
def test_a_method_with_two_networks_gets_both_set_up_by_the_run(precision, dtype):
    setting = ClassIncrementalSetting(**tiny_options(ClassIncrementalSetting), precision=precision)
    method = TwoExperts()
    results = setting.apply(method)
    assert method.training_dtypes == {dtype}  # the run's precision, with no autocast of its own
    assert method.devices == {setting.device}
    assert results.accuracy_matrix[-1][-1] > 0.3  # it learned the last task (chance: 0.1)


def test_the_online_meter_is_the_only_callback_a_fit_on_memory_leaves_out():
    """`measure_online=False` (a method's fit on its own memory) leaves out what measures the
    stream, and keeps the rest: the FLOP count, the log, one's own callbacks."""
    from sylvan.run.context import RunContext

    setting = OnlineSetting(**tiny_options(OnlineSetting))
    own = Recorder([])
    run = RunContext(setting, callbacks=[own])
    run.online_meter = object()
    assert run.fit_callbacks()[:2] == [run.online_meter, own]
    kept = run.fit_callbacks(measure_online=False)
    assert kept[0] is own and run.online_meter not in kept and len(kept) == 2


def test_the_ddp_rehearsal_strategy_is_registered_with_fabric():
    from lightning.fabric.strategies import STRATEGY_REGISTRY

    from sylvan.parallel.fabric_rehearsal import FabricRehearsalStrategy

    assert STRATEGY_REGISTRY["ddp_rehearsal"]["strategy"] is FabricRehearsalStrategy
    strategy = STRATEGY_REGISTRY.get("ddp_rehearsal")
    assert isinstance(strategy, FabricRehearsalStrategy) and strategy.replay.buffer.capacity == 200


def test_the_ddp_rehearsal_strategy_is_registered_with_the_standalone_fabric_the_engine_runs_on():
    from sylvan.parallel.fabric_package import fabric
    from sylvan.parallel.rehearsal_ddp import RehearsalDDPStrategy

    strategies = fabric().strategies
    assert strategies.STRATEGY_REGISTRY["ddp_rehearsal"]["strategy"] is RehearsalDDPStrategy
    assert issubclass(RehearsalDDPStrategy, strategies.DDPStrategy)



def test_importing_fabric_leaves_cudas_availability_check_as_torch_makes_it():
    """Importing Lightning Fabric sets PYTORCH_NVML_BASED_CUDA_CHECK=1 for the whole process, and
    with it every `torch.cuda.is_available()` (which each optimizer step of torch calls) loads NVML
    again, about 150 us on a machine without CUDA: three times an environment step with sac. sylvan
    forks no worker, so the engine's import of Fabric leaves the variable as it found it."""
    import subprocess
    import sys

    code = ("import os; from sylvan.parallel.fabric_package import fabric; fabric(); "
            "print(os.environ.get('PYTORCH_NVML_BASED_CUDA_CHECK'))")
    environment = {k: v for k, v in os.environ.items() if k != "PYTORCH_NVML_BASED_CUDA_CHECK"}
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    assert found.stdout.strip() == "None"
    environment["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # a user's own choice stays
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    assert found.stdout.strip() == "1"


def test_a_minibatch_reaches_the_method_through_ddps_forward_as_the_loader_served_it():
    """With several workers the method's loss goes through Fabric's module wrapper, which casts
    the floating-point tensors it is given to the precision's input dtype (bfloat16 under
    bf16-mixed); in one process it does not. The engine hands the minibatch in a `HeldBatch`,
    which the wrapper leaves alone: the method sees float32 inputs either way."""
    from lightning_fabric.plugins.precision.amp import MixedPrecision

    from sylvan.run.engine import HeldBatch

    precision = MixedPrecision("bf16-mixed", "cpu")
    batch = (torch.rand(2, 3), torch.tensor([0, 1]))
    (converted,), _ = precision.convert_input(((batch,), {}))
    assert converted[0].dtype == torch.bfloat16  # what a bare minibatch would become
    held = HeldBatch(batch)
    (passed,), _ = precision.convert_input(((held,), {}))
    assert passed is held and passed.batch[0].dtype == torch.float32


def test_a_learner_is_set_up_on_the_strategy_once_per_run(monkeypatch):
    """Each fit of a run trains the same learner: it is wrapped (DDP with several workers) once,
    not at every fit, and again only where its parameters changed (a part frozen or grown)."""
    from sylvan.parallel.fabric_package import fabric

    Fabric = fabric().Fabric
    wrapped: list[nn.Module] = []
    setup_module = Fabric.setup_module
    monkeypatch.setattr(Fabric, "setup_module", lambda self, module, *a, **k: (
        wrapped.append(module), setup_module(self, module, *a, **k))[1])
    setting = ClassIncrementalSetting(**{**tiny_options(ClassIncrementalSetting), "nb_tasks": 3})
    setting.apply(Naive())
    assert len(wrapped) == 1, "three tasks' fits, one set-up"

    engine = Engine("cpu", "32-true")
    module = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    first = engine.learner_set_up(module)
    assert engine.learner_set_up(module) is first
    module[0].requires_grad_(False)
    assert engine.learner_set_up(module) is not first, "DDP reduces the parameters it was made with"
    module.append(nn.Linear(2, 2))
    assert engine.learner_set_up(module) is not first and len(wrapped) == 4


@pytest.mark.parametrize("precision", ["32-true", "bf16-true", "bf16-mixed"])
def test_in_one_process_a_set_up_module_runs_at_the_precision_without_fabrics_per_call_check(precision):
    """In one process `Engine.setup` gives Fabric's wrapper whose forward pass converts and
    autocasts as Fabric's does, but registers no hook on its outputs (the check that the backward
    pass goes through Fabric, paid per forward and per backward pass); the module itself is left
    as it was, and its gradients are those of the plain module's."""
    from lightning_fabric.wrappers import _FabricModule

    engine = Engine("cpu", precision)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    fabric = Engine("cpu", precision).fabric
    reference = fabric.setup(copy.deepcopy(module))  # Fabric's own wrapper
    wrapped, optimizer = engine.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
    assert isinstance(wrapped, _FabricModule) and type(wrapped) is not _FabricModule
    assert type(wrapped.module) is nn.Sequential  # the wrapped module keeps its class
    x = torch.randn(5, 3)
    output, expected = wrapped(x), reference(x)
    assert output.dtype == expected.dtype and torch.equal(output, expected)
    assert output._backward_hooks is None and expected._backward_hooks  # Fabric's hooks its output
    engine.backward(output.float().sum())
    reference_module = reference.module
    fabric.backward(reference(x).float().sum())
    for mine, theirs in zip(module.parameters(), reference_module.parameters()):
        assert torch.equal(mine.grad, theirs.grad)
