"""The benchmarks of the DER paper's tables (class-IL and domain-IL) run end to end: on another
dataset and shorter, as a quick check, their table says that the figures are not the protocol's."""

from __future__ import annotations

import importlib
import math
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
        assert not method.buffer_options.gss_batch_gate and gated_method.buffer_options.gss_batch_gate
        options = dataclasses.replace(gated_method.buffer_options, gss_batch_gate=False)
        assert dataclasses.replace(gated_method, buffer_options=options) == method


@pytest.fixture
def der_tables(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module("der_tables")


def test_equivalence_is_two_one_sided_t_tests_against_the_margin(der_tables):
    """With 3 runs (2 degrees of freedom) Student's t has closed forms: sf(t) = (1 - t / sqrt(t^2 + 2)) / 2
    and its 95% quantile is 2.919986."""
    test = der_tables.equivalence([79.0, 80.0, 81.0], published=80.0, margin=2.0)
    error = 1 / math.sqrt(3)
    t = 2 / error
    assert test.difference == pytest.approx(0.0)
    assert test.p == pytest.approx((1 - t / math.sqrt(t * t + 2)) / 2)  # 0.0371: both tests reject at 5%
    assert (test.low, test.high) == pytest.approx((-2.919986 * error, 2.919986 * error), abs=1e-5)
    assert test.verdict == "within"

    # seeds 0 to 2 of replay-200: the interval reaches both inside and beyond the margin
    noisy = der_tables.equivalence([75.50, 78.43, 79.88], published=80.43, margin=2.0)
    assert noisy.difference == pytest.approx(-2.4933, abs=1e-4) and noisy.low < -2 < noisy.high < 2
    assert noisy.verdict == "undecided" and noisy.p > 0.5

    far = der_tables.equivalence([90.0, 91.0, 92.0], published=80.0, margin=2.0)
    assert far.low > 2 and far.verdict == "outside" and far.p > 0.99
    below = der_tables.equivalence([70.0, 71.0, 72.0], published=80.0, margin=2.0)
    assert below.high < -2 and below.verdict == "outside"

    # more seeds narrow the interval: the same spread over 24 runs decides
    many = der_tables.equivalence([78.0, 79.0, 80.0] * 8, published=80.43, margin=2.0)
    assert many.verdict == "within" and many.p < 0.05 < noisy.p

    exact = der_tables.equivalence([80.0, 80.0], published=79.0, margin=2.0)
    assert (exact.low, exact.high, exact.p, exact.verdict) == (1.0, 1.0, 0.0, "within")
    with pytest.raises(ValueError, match="at least two"):
        der_tables.equivalence([80.0], published=80.0, margin=2.0)


def test_the_table_tests_rows_with_a_published_figure_under_the_protocol_alone(der_tables, monkeypatch, capsys):
    seq_mnist = importlib.import_module("seq_mnist")
    accuracies = {"er-200": [79.0, 80.0, 81.0], "naive": [19.5, 19.6, 19.7], "mas": [20.0, 21.0, 22.0]}

    def fake_run(protocol, name, seed, data_dir, **changes):
        return {"class_il": accuracies[name][seed], "task_il": 97.0, "seconds": 1.0}

    monkeypatch.setattr(der_tables, "run_one", fake_run)
    der_tables.main(seq_mnist.SEQ_MNIST, "", ["--only", "er-200", "naive", "mas", "--seeds", "0", "1", "2"])
    out = capsys.readouterr().out
    assert "Against the published class-IL figures: is the mean within ±2 points?" in out
    rows = {line.split("|")[0].strip(): line for line in out.split("Against the published")[1].splitlines()
            if "|" in line}
    assert set(rows) == {"method", "er-200", "naive"}  # mas has no published figure
    assert rows["er-200"].split("|")[2].strip() == "-0.43" and rows["er-200"].endswith("undecided")
    assert rows["naive"].split("|")[2].strip() == "+0.00" and rows["naive"].endswith("within")

    der_tables.main(seq_mnist.SEQ_MNIST, "", ["--only", "er-200", "--seeds", "0", "1", "2", "--margin", "0.5"])
    assert "within ±0.5 points" in capsys.readouterr().out

    der_tables.main(seq_mnist.SEQ_MNIST, "", ["--only", "er-200", "--seeds", "0"])  # one seed: nothing to test
    assert "Against the published" not in capsys.readouterr().out
    der_tables.main(seq_mnist.SEQ_MNIST, "", ["--only", "er-200", "--seeds", "0", "1", "--dataset", "digits"])
    out = capsys.readouterr().out
    assert "NOT the protocol" in out and "Against the published" not in out

    with pytest.raises(SystemExit) as exit_info:
        der_tables.main(seq_mnist.SEQ_MNIST, "", ["--only", "er-200", "--margin", "0"])
    assert exit_info.value.code == 2 and "--margin must be positive" in capsys.readouterr().err
