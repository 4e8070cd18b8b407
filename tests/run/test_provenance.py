"""What produced a run: `provenance.json` in the run folder, and `sylvan --version`."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

import sylvan
from sylvan.run.provenance import machine, provenance_entry, software_versions, source_revision
from sylvan.run.tracking import record_provenance
from tests.cli.test_cli import sylvan as sylvan_command

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(folder, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_the_software_is_named_with_the_versions_installed():
    versions = software_versions()
    assert versions["sylvan"] == sylvan.__version__
    assert torch.__version__.startswith(versions["torch"])
    assert list(versions)[:2] == ["sylvan", "python"] and versions["lightning"] and versions["continuum"]


@needs_git
def test_the_source_revision_is_the_checkouts_commit_marked_when_files_differ(tmp_path):
    package = tmp_path / "checkout" / "mypackage"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    git(tmp_path / "checkout", "init", "-q")
    assert source_revision(package) is None  # nothing committed yet
    git(tmp_path / "checkout", "add", ".")
    git(tmp_path / "checkout", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    commit = git(tmp_path / "checkout", "rev-parse", "HEAD")
    assert source_revision(package) == commit
    (package / "__init__.py").write_text("x = 2\n")
    assert source_revision(package) == commit + "+modified"
    installed = tmp_path / "checkout" / "venv" / "site-packages" / "otherpackage"  # inside the tree, not its own
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    assert source_revision(installed) is None
    assert source_revision(tmp_path) is None  # no checkout at all


def test_each_start_and_resumption_adds_an_entry_and_a_damaged_file_is_started_again(tmp_path):
    record_provenance(tmp_path, "started")
    record_provenance(tmp_path, "resumed")
    history = json.loads((tmp_path / "provenance.json").read_text())["history"]
    assert [entry["event"] for entry in history] == ["started", "resumed"]
    assert history[0]["software"] == software_versions() and history[0]["machine"]["cpus"] >= 1
    (tmp_path / "provenance.json").write_text('{"history": [{"event": "sta')
    record_provenance(tmp_path, "resumed")
    assert [e["event"] for e in json.loads((tmp_path / "provenance.json").read_text())["history"]] == ["resumed"]


def test_the_machine_is_described_without_initializing_cuda():
    """Initializing CUDA in the process that then forks data-parallel workers breaks them."""
    initialized = torch.cuda.is_initialized()
    described = machine()
    assert provenance_entry("started")["event"] == "started"
    assert torch.cuda.is_initialized() == initialized
    assert described["cuda_devices"] == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert ("cuda_device_names" in described) == (initialized and described["cuda_devices"] > 0)


def test_version_prints_sylvans_and_its_dependencies_versions():
    out = sylvan_command("--version")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"sylvan {sylvan.__version__}") and any(line.startswith("  torch ") for line in lines)
    refused = sylvan_command("--version", "--list")
    assert refused.returncode == 2 and "--version takes no other option" in refused.stderr


def test_reading_the_checkouts_revision_takes_no_lock_in_it(monkeypatch):
    """`git status` refreshes the index and takes .git/index.lock to do it: a run stopped there
    (at a file-size limit, by a signal) left the lock behind, and every later git command in the
    checkout failed until it was removed by hand. Every git call of the provenance takes none."""
    import subprocess

    from sylvan.run import provenance

    calls = []
    run = subprocess.run

    def recording(args, *rest, **options):
        calls.append(list(args))
        return run(args, *rest, **options)

    monkeypatch.setattr(provenance.subprocess, "run", recording)
    provenance.source_revision()
    assert calls and all(call[:2] == ["git", "--no-optional-locks"] for call in calls), calls
