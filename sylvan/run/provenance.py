"""What produced a run: the software (sylvan's version and source revision, its dependencies'
versions), the machine, and the command. A run folder's `provenance.json` keeps one entry for the
start of the run and one for each `--resume`, so that a figure can be traced to the code and
machine that computed it, and two runs that disagree can be told apart by more than their
configuration. It is not part of `results.json`, which two runs with the same seed write
identically wherever they run."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

# the distributions whose versions decide what a run computes, as pip names them
DEPENDENCIES = ("torch", "torchvision", "lightning", "lightning-fabric", "continuum", "numpy", "scikit-learn",
                "gymnasium", "simple-parsing", "wandb")


def software_versions() -> dict[str, str | None]:
    """Python's and every dependency's installed version (None where one is not installed),
    sylvan's first."""
    from sylvan import __version__  # run from a source tree that pip did not install: its own version

    versions: dict[str, str | None] = {
        "sylvan": installed_version("sylvan") or __version__, "python": platform.python_version(),
    }
    versions.update({name: installed_version(name) for name in DEPENDENCIES})
    return versions


def installed_version(distribution: str) -> str | None:
    """The version pip installed of `distribution` (a pip name), or None where it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def source_revision(folder: str | os.PathLike[str] | None = None) -> str | None:
    """The git commit of the checkout sylvan is imported from (an editable install), followed
    by "+modified" when tracked files of the checkout differ from it; None when sylvan is not
    imported from a git checkout or git cannot tell. `folder` (a package folder whose
    `__init__.py` the checkout tracks) defaults to sylvan's."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parents[1]  # sylvan/

    def git(*args: str) -> str | None:
        try:
            # no optional lock: `status` would otherwise take .git/index.lock to refresh the index, and
            # a process stopped meanwhile (a signal, a file-size limit) would leave it in the checkout
            done = subprocess.run(["git", "--no-optional-locks", "-C", str(folder), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # a package installed into a virtualenv that lies inside some other git work tree is not
    # that tree's: its files must be tracked there
    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    commit = git("rev-parse", "--verify", "HEAD")
    if not commit:
        return None
    changes = git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+modified" if changes else "")


def machine() -> dict[str, Any]:
    """The host, its CPUs, and the CUDA devices torch sees. Their names are read only where
    CUDA is already initialized: initializing it here would keep data-parallel workers from
    being forked."""
    import torch

    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = ([torch.cuda.get_device_name(i) for i in range(devices)]
             if devices and torch.cuda.is_initialized() else None)
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "cuda_devices": devices,
        **({"cuda_device_names": names} if names else {}),
    }


def provenance_entry(event: str) -> dict[str, Any]:
    """One entry of `provenance.json`: `event` ("started" or "resumed"), when (UTC), the
    command line, the software and the machine."""
    return {
        "event": event,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else sys.argv[1:],
        "software": software_versions(),
        "source_revision": source_revision(),
        "machine": machine(),
    }


def version_text() -> str:
    """What `sylvan --version` prints: sylvan's version (and revision, from a checkout), then
    the versions of Python and the dependencies."""
    versions = software_versions()
    revision = source_revision()
    head = f"sylvan {versions.pop('sylvan') or 'unknown'}" + (f" (source revision {revision})" if revision else "")
    return "\n".join([head, *(f"  {name} {version or 'not installed'}" for name, version in versions.items())])
