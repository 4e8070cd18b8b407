"""Two real worker processes in a gloo process group on this machine, for the tests of what
crosses workers: each runs a module-level function of its rank inside the group, and the test
gets back what each returned (JSON-able)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Callable

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_group(rank: int, port: int, out: str, body: Callable[..., Any], args: tuple) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    result = body(rank, *args)
    Path(out, f"{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def results_on_two_workers(body: Callable[..., Any], out: Path, *args: Any) -> list[Any]:
    """`body(rank, *args)` on 2 spawned workers of one gloo group (`body` defined at a module's
    top level, so that a spawned process finds it); what each returned, in rank order, passed
    through the files the workers write under `out`."""
    mp.start_processes(_in_group, args=(free_port(), str(out), body, args), nprocs=2, start_method="spawn")
    return [json.loads((out / f"{rank}.json").read_text()) for rank in (0, 1)]
