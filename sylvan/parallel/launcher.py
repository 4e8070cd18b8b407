"""Starting a data-parallel run's worker processes on this machine.

Under `--devices N` with no cluster launcher (torchrun, SLURM), worker 0 starts the other N - 1
workers by running its own command again, each told its place through the environment variables
every launcher sets (`MASTER_ADDR`, `MASTER_PORT`, `NODE_RANK`, `LOCAL_RANK`, `WORLD_SIZE`);
Lightning Fabric then finds them as processes created outside it and joins them into one process
group. sylvan starts them itself, rather than through Fabric's launcher, because that launcher
watches its workers from a thread that SIGKILLs every process of the run, itself included, within
5 seconds of one of them failing: the run would end with status -9 and no word of what happened.
sylvan watches them instead: its collectives give up after `--worker_timeout` seconds, and worker 0
names the worker that died and how (`sylvan.parallel.health`).

The workers it starts end with the process that started them (`sylvan.parallel.worker_processes`).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys

import torch

from sylvan.parallel.worker_processes import FINISHING_WAIT, LAUNCHER_VARIABLE, STARTED_WORKERS, end_started_workers


def free_port() -> int:
    """A TCP port nothing listens on now, for worker 0's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def worker_command() -> list[str]:
    """The command that started this process, to start another worker with: the script and its
    arguments, or `-m module` where it was run as a module."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is None:
        return [sys.executable, os.path.abspath(sys.argv[0]), *sys.argv[1:]]
    return [sys.executable, "-m", spec.name, *sys.argv[1:]]


def start_workers(devices: int, num_nodes: int, node_rank: int = 0) -> list[subprocess.Popen]:
    """Start workers 1 .. `devices` - 1 of this node as copies of this process's command, and
    make this process worker 0 of the node; they end with it (`end_started_workers`). Each
    worker's torch threads share the node's cores."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    os.environ["NODE_RANK"] = str(node_rank)
    os.environ["LOCAL_RANK"] = "0"
    os.environ["WORLD_SIZE"] = str(devices * num_nodes)
    if "OMP_NUM_THREADS" not in os.environ:  # N workers on the node's cores, not N times them
        threads = max(1, (os.cpu_count() or 1) // devices)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    command = worker_command()
    started: list[subprocess.Popen] = []
    if not STARTED_WORKERS:  # a run from Python: ended at the interpreter's exit
        atexit.register(end_started_workers, FINISHING_WAIT)
    for local_rank in range(1, devices):
        environment = {**os.environ, "LOCAL_RANK": str(local_rank), LAUNCHER_VARIABLE: str(os.getpid())}
        started.append(subprocess.Popen(command, env=environment))
        STARTED_WORKERS.append(started[-1])
    return started
