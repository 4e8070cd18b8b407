"""Shared fixtures: tiny settings for fast runs, and the MNIST copy for tests that need it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]

# Under pytest-xdist (`python -m pytest -n auto`) each worker is one process per core: torch's own
# threads in every worker would contend for the same cores, and spin while they wait (on 2 cores,
# 2 workers of 2 threads each took 22 minutes where one process took 9). So each worker computes
# on one thread, and the commands the tests start inherit it through OMP_NUM_THREADS.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

TINY = dict(dataset="synthetic", train_samples=120, nb_tasks=2, progress_bar=False, seed=0)


# reinforcement-learning settings: two short CartPole tasks, short episodes
TINY_RL = dict(nb_tasks=2, steps_per_task=300, eval_episodes=2, max_episode_steps=60, accelerator="cpu", seed=0)
# an environment of each kind of actions an RL method may handle
RL_ENVS = {"discrete": "CartPole-v1", "continuous": "Pendulum-v1"}
# methods whose defaults would not learn within TINY_RL's steps
TINY_METHOD_OPTIONS = {
    "dqn": dict(learning_starts=50, buffer_size=200, exploration_steps=200, target_update_interval=50,
                hidden_size=32),
    "sac": dict(learning_starts=50, buffer_size=200, replay_size=32, hidden_size=32),
    "ppo": dict(n_steps=64, batch_size=32, n_epochs=2, hidden_size=32),
    "eeil": dict(finetune_epochs=2),  # its balanced finetuning, 30 epochs by default
}


def tiny_options(setting_cls: type, method_cls: type | None = None) -> dict:
    """Options that make any setting run in about a second (for an RL setting, on an environment
    with the kind of actions `method_cls` handles, where it is given)."""
    from sylvan.settings import ContinualRLSetting
    from sylvan.settings.continual_rl import action_spaces_of

    if issubclass(setting_cls, ContinualRLSetting):
        kind = action_spaces_of(method_cls)[0] if method_cls is not None else "discrete"
        return {**TINY_RL, "env": RL_ENVS[kind]}
    options = dict(TINY)
    fields = getattr(setting_cls, "__dataclass_fields__", {})
    if "stream_steps" in fields:  # a stream of contexts (osaka): short, on the digits pools
        return dict(dataset="digits", stream_steps=60, pretraining_tasks=8, progress_bar=False, seed=0,
                    **({"devices": 1} if "devices" in fields else {}))
    if "stream_length" in fields:  # a stream of datasets: two generated tasks of synthetic data
        del options["dataset"], options["nb_tasks"]
        options.update(stream_length=2, stream_sources="synthetic", forward_transfer=False)
    if "epochs" in fields:
        options["epochs"] = 1
    if "devices" in fields:  # in-process tests run one worker; multi-worker runs use subprocesses
        options["devices"] = 1
    return options


def tiny_method(method_cls: type, **options):
    """`method_cls` with options that let it learn within the tiny settings' few steps."""
    return method_cls(**{**TINY_METHOD_OPTIONS.get(method_cls.name, {}), **options})


def counted_steps(method) -> list[int]:
    """The size of every minibatch `method` trains on, recorded as its `training_step` is called."""
    sizes: list[int] = []
    step = method.training_step

    def counting_step(batch):
        sizes.append(len(batch.y))
        return step(batch)

    method.training_step = counting_step
    return sizes


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable data root holding MNIST/raw, copied from SYLVAN_TEST_DATA (default:
    ../shared/data beside the repository). Skips when the files are absent."""
    source = Path(os.environ.get("SYLVAN_TEST_DATA", REPO.parent / "shared" / "data"))
    raw = source / "MNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST files not found under {source} (set SYLVAN_TEST_DATA)")
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(source / "MNIST", root / "MNIST")
    return root


@pytest.fixture(autouse=True)
def isolated_distributed_state():
    """In-process runs of the distributed setting (one worker) set launcher variables
    (MASTER_PORT, LOCAL_RANK, WORLD_SIZE, ...) and a process group; undo both after each test,
    so that later tests, and the workers they start in subprocesses, begin clean."""
    environment = dict(os.environ)
    yield
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    os.environ.clear()
    os.environ.update(environment)


def default_signal_handling() -> None:
    """For a subprocess that a test signals: SIGINT and SIGTERM as a terminal or a scheduler
    leaves them, whatever this process inherited or a run in it changed (ignored signals stay
    ignored in children)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def loaded_from_file(path: Path, registry: dict) -> Iterator[ModuleType]:
    """The module in `path`, loaded by its file as a plugin, a script or a notebook loads it;
    the classes it registered in `registry` are removed afterwards (the method x setting matrix
    is generated from the registries)."""
    registered = dict(registry)
    spec = importlib.util.spec_from_file_location(f"loaded_from_file_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]
        registry.clear()
        registry.update(registered)
