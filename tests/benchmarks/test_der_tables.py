"""The benchmarks of the DER paper's tables (class-IL and domain-IL) run end to end: on another
dataset and shorter, as a quick check, their table says that the figures are not the protocol's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def benchmark(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.mark.slow
def test_seq_cifar10_recipes_run_and_print_the_published_figures():
    out = benchmark("seq_cifar10.py", "--dataset", "synthetic", "--train_samples", "200", "--epochs", "1",
                    "--only", "er-200", "joint", "pnn", "--seeds", "0", "1")
    assert out.returncode == 0, out.stderr
    assert "Seq-CIFAR-10, 2 seeds" in out.stdout
    assert "NOT the protocol (--dataset, --epochs, --train_samples given)" in out.stdout
    rows = {line.split("|")[0].strip(): line for line in out.stdout.splitlines() if "|" in line}
    assert "44.79" in rows["er-200"] and "92.20" in rows["joint"] and "95.13" in rows["pnn"]
    assert out.stdout.count("er-200 seed") == 2


@pytest.mark.slow
def test_seq_mnist_recipes_run_on_digits():
    out = benchmark("seq_mnist.py", "--dataset", "digits", "--only", "gem-200", "mir-200", "fdr-200", "--seeds", "0")
    assert out.returncode == 0, out.stderr
    assert "NOT the protocol (--dataset given)" in out.stdout and "80.11" in out.stdout and "79.43" in out.stdout


def test_a_mistake_is_a_message_and_status_2():
    out = benchmark("seq_cifar10.py", "--dataset", "nope", "--only", "naive", "--seeds", "0")
    assert out.returncode == 2
    assert "seq_cifar10: error:" in out.stderr and "nope" in out.stderr and "Traceback" not in out.stderr


def test_blurred_boundaries_are_not_the_protocol_and_are_refused_where_they_do_not_apply():
    out = benchmark("seq_mnist.py", "--dataset", "digits", "--blurry", "0.1", "--only", "naive", "--seeds", "0")
    assert out.returncode == 0, out.stderr
    assert "NOT the protocol (--dataset, --blurry given)" in out.stdout
    refused = benchmark("seq_mnist.py", "--dataset", "digits", "--blurry", "0.1", "--only", "multi_head",
                        "--seeds", "0")
    assert refused.returncode == 2 and "--blurry does not apply to task_incremental" in refused.stderr


@pytest.mark.parametrize(("script", "title", "published", "joint"), [("perm_mnist.py", "P-MNIST", "72.37", "94.33"),
                                                                     ("rot_mnist.py", "R-MNIST", "85.01", "95.76")])
def test_domain_il_recipes_run_and_print_domain_il_accuracy_alone(script, title, published, joint):
    """P-MNIST and R-MNIST report domain-IL accuracy; every task holds every class, so there is
    no task-IL column."""
    out = benchmark(script, "--dataset", "digits", "--train_samples", "300", "--only", "er-200", "joint",
                    "--seeds", "0")
    assert out.returncode == 0, out.stderr
    assert f"{title}, 1 seeds" in out.stdout and "NOT the protocol (--dataset, --train_samples given)" in out.stdout
    header = next(line for line in out.stdout.splitlines() if line.strip().startswith("method"))
    assert "domain-IL" in header and "task-IL" not in header
    row = next(line for line in out.stdout.splitlines() if line.strip().startswith("er-200 |"))
    accuracy = float(row.split("|")[1].split("±")[0])
    assert 10 < accuracy <= 100 and published in row
    line = next(line for line in out.stdout.splitlines() if "er-200 seed 0: domain-IL" in line)
    assert line.endswith("stored samples replaced)")  # a buffer's turnover: reservoir's is above 0
    assert int(line.split(", ")[-1].split()[0].replace(",", "")) > 0
    assert joint in next(line for line in out.stdout.splitlines() if line.strip().startswith("joint |"))


@pytest.mark.parametrize("script", ["seq_mnist", "seq_cifar10", "perm_mnist", "rot_mnist"])
def test_each_gss_recipe_has_a_batch_gated_row_that_differs_by_the_gate_alone(monkeypatch, script):
    import dataclasses
    import importlib

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    runs = importlib.import_module(script).RUNS
    gss = sorted(key for key in runs if key.startswith("gss-") and not key.startswith("gss-gated-"))
    assert gss and sorted(key for key in runs if key.startswith("gss-gated-")) == [
        key.replace("gss-", "gss-gated-") for key in gss]
    for key in gss:
        plain, gated = runs[key], runs[key.replace("gss-", "gss-gated-")]
        assert gated.published_accuracy == plain.published_accuracy and gated.batch_size == plain.batch_size
        method, gated_method = plain.method(), gated.method()
        assert not method.gss_batch_gate and gated_method.gss_batch_gate
        assert dataclasses.replace(gated_method, gss_batch_gate=False) == method
