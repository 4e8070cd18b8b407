"""Bad input and faults found by trying sylvan as a new user would: each gets a clear message and
a non-zero exit, before anything is written where it can be known then, and never a traceback
or a hang."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
import torch

from sylvan.cli import main
from sylvan.methods import METHODS
from sylvan.settings import SETTINGS, OnlineSetting, Setting
from tests.cli.test_cli import REPO


def refused(capsys, *argv: str) -> str:
    """What `sylvan argv` says on stderr; it must exit with status 2."""
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_a_seed_beyond_32_bits_is_refused(tmp_path, capsys):
    err = refused(capsys, "--setting", "class_incremental", "--method", "naive", "--seed", "4294967296",
                  "--results_dir", str(tmp_path / "r"))
    assert "--seed must be from 0 to 4294967295" in err
    assert not (tmp_path / "r").exists()


def test_a_stream_too_long_to_plan_is_refused_at_once(tmp_path, capsys):
    """A million tasks took 11 GB and no end of time to plan, before a word was printed."""
    err = refused(capsys, "--setting", "dataset_stream", "--method", "naive", "--stream_length", "1000000",
                  "--results_dir", str(tmp_path / "r"))
    assert "--stream_length must be from 1 to 1000 tasks" in err


@pytest.mark.parametrize("budget", [[], ["--memory_budget", "10000000000000000"]], ids=["no_budget", "budget"])
def test_a_buffer_larger_than_the_machine_is_refused_before_the_run_folder(tmp_path, capsys, budget):
    err = refused(capsys, "--setting", "class_incremental", "--method", "rehearsal", "--buffer_size", "100000000000",
                  *budget, "--accelerator", "cpu", "--results_dir", str(tmp_path / "r"))
    assert "--buffer_size 100,000,000,000: rehearsal's buffer would allocate" in err
    assert "more than this machine's" in err and "bytes of memory" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_buffer_larger_than_the_gpu_is_refused_before_the_run_folder(tmp_path, capsys):
    """On a GPU the buffer lives in the GPU's memory, which is what it is measured against."""
    err = refused(capsys, "--setting", "class_incremental", "--method", "rehearsal", "--buffer_size", "100000000000",
                  "--accelerator", "gpu", "--results_dir", str(tmp_path / "r"))
    assert "more than this GPU's" in err and "bytes of memory" in err
    assert not (tmp_path / "r").exists()


def test_an_unknown_wandb_mode_is_refused_before_the_run_folder(tmp_path, capsys, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "bogus")
    err = refused(capsys, "--setting", "class_incremental", "--method", "naive", "--wandb_project", "p",
                  "--results_dir", str(tmp_path / "r"))
    assert "WANDB_MODE is 'bogus', which W&B does not know" in err and "offline" in err
    assert not (tmp_path / "r").exists()


def test_help_whose_reader_is_gone_ends_quietly():
    """`sylvan --help | head -1`: the pipe closes before the help is written."""
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=REPO)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and err == ""


@pytest.mark.parametrize("method", sorted(METHODS))
def test_help_says_each_default_once(method, capsys):
    """An option whose help says its default in words ("default: no budget") got simple-parsing's
    "(default: None)" after it too."""
    target = METHODS[method].target_setting  # a setting, or an assumption: the first supervised setting with it
    setting = target.name if issubclass(target, Setting) else next(
        name for name, cls in SETTINGS.items() if issubclass(cls, OnlineSetting) and issubclass(cls, target))
    setting = "class_incremental" if setting in ("online", "setting") else setting
    with pytest.raises(SystemExit) as stop:
        main(["--setting", setting, "--method", method, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    options = text.split(" --")
    assert len(options) > 10
    assert [option for option in options if option.lower().count("default:") > 1] == []


def test_a_malformed_config_of_a_run_folder_is_named_as_the_runs(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("setting: [\n")
    err = refused(capsys, "--resume", str(tmp_path))
    assert f"--resume {tmp_path}: the run's configuration {tmp_path / 'config.yaml'} is not valid YAML" in err
    assert "--config_path" not in err


def limited_file_size(size: int):
    """For a subprocess: no file it writes may grow beyond `size` bytes (as on a full disk, its
    writes then fail with EFBIG)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs a file-size limit")
@pytest.mark.parametrize(("size", "options", "unwritten"), [
    (60_000, [], "checkpoints/after_stage_0.pt"),  # a checkpoint is about 110 kB
    (20_000, ["--save_checkpoints", "false"], "accuracy_matrix.png"),  # a plot is about 27 kB
], ids=["checkpoint", "plot"])
def test_a_file_that_cannot_be_written_is_named_and_the_finished_tasks_are_kept(tmp_path, size, options, unwritten):
    out = subprocess.run([sys.executable, str(REPO / "cli.py"), "--setting", "class_incremental", "--method",
                          "rehearsal", "--results_dir", str(tmp_path), "--run_name", "r", *options],
                         capture_output=True, text=True, timeout=300, preexec_fn=limited_file_size(size))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"could not write {tmp_path / 'r' / unwritten} (" in out.stderr
    assert f"The results of the tasks finished before are kept in {tmp_path / 'r'}" in out.stderr
    assert not list((tmp_path / "r").rglob("*.partial"))
    if unwritten.endswith(".png"):  # every stage's results kept; the run is not complete without its plots
        written = json.loads((tmp_path / "r" / "results.json").read_text())
        assert len(written["accuracy_matrix"]) == 5 and written["complete"] is False



@pytest.mark.parametrize("probabilities", [["nan", "0.5", "0.5"], ["0.5", "nan", "0.5"], ["0.5", "inf", "0.5"]])
def test_a_list_of_floats_holding_nan_is_refused_as_a_single_float_is(tmp_path, capsys, probabilities):
    err = refused(capsys, "--setting", "osaka", "--method", "naive", "--mode_probabilities", *probabilities,
                  "--results_dir", str(tmp_path / "r"))
    assert "--mode_probabilities must hold finite numbers, got" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_list_of_floats_holding_nan_in_a_config_file_is_refused(tmp_path, capsys):
    config = tmp_path / "osaka.yaml"
    config.write_text("setting: osaka\nmethod: naive\nsetting_options:\n  mode_probabilities: [.nan, 0.5, 0.5]\n")
    err = refused(capsys, "--config_path", str(config), "--results_dir", str(tmp_path / "r"))
    assert "--mode_probabilities must hold finite numbers, got" in err


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", bytes(range(256))])
def test_a_config_file_that_is_not_text_is_refused(tmp_path, capsys, content):
    config = tmp_path / "image.yaml"
    config.write_bytes(content)
    err = refused(capsys, "--config_path", str(config))
    assert f"--config_path {config} is not a text file" in err and "UnicodeDecodeError" not in err


def test_a_config_file_with_a_key_given_twice_is_refused_naming_it(tmp_path, capsys):
    config = tmp_path / "twice.yaml"
    config.write_text("setting: class_incremental\nmethod: naive\nmethod_options:\n  lr: 0.1\n  lr: 0.5\n")
    err = refused(capsys, "--config_path", str(config), "--results_dir", str(tmp_path / "r"))
    assert "'lr' is given twice (lines 4 and 5)" in err and str(config) in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("stream", ["mnist,,digits", "digits,", ",digits", " , "])
def test_an_empty_dataset_name_in_a_stream_is_refused(tmp_path, capsys, stream):
    err = refused(capsys, "--setting", "dataset_stream", "--method", "naive", "--stream", stream,
                  "--results_dir", str(tmp_path / "r"))
    assert f"--stream {stream!r}" in err and "empty" in err
    assert not (tmp_path / "r").exists()


def test_a_plugin_that_exits_at_import_is_a_message_and_a_non_zero_exit(tmp_path, capsys):
    plugin = tmp_path / "leaving.py"
    plugin.write_text("import sys\nsys.exit(0)\n")
    err = refused(capsys, "--plugin", str(plugin), "--setting", "class_incremental", "--method", "naive",
                  "--results_dir", str(tmp_path / "r"))
    assert f"--plugin {plugin} failed to load: it called sys.exit(0) at import" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("argv", "suggestion"), [
    (["--setting", "class_incremental", "--method", "rehersal"], "did you mean 'rehearsal'?"),
    (["--setting", "class_incremantal", "--method", "naive"], "did you mean 'class_incremental'?"),
    (["--setting", "dataset_stream", "--method", "naive", "--stream", "s_minus_ofline"],
     "did you mean 's_minus_offline'?"),
    (["--setting", "dataset_stream", "--method", "naive", "--stream", "S_MINUS_OFFLINE"],
     "did you mean 's_minus_offline'?"),
    (["--setting", "class_incremental", "--method", "naive", "--dataset", "mnst"], "did you mean 'mnist'?"),
])
def test_a_misspelled_name_gets_a_suggestion(tmp_path, capsys, argv, suggestion):
    err = refused(capsys, *argv, "--results_dir", str(tmp_path / "r"))
    assert suggestion in err


def test_a_misspelled_stream_is_named_as_a_stream_with_the_streams_listed(tmp_path, capsys):
    err = refused(capsys, "--setting", "dataset_stream", "--method", "naive", "--stream", "s_minus_ofline",
                  "--results_dir", str(tmp_path / "r"))
    assert "unknown stream or dataset 's_minus_ofline'" in err
    assert "s_long_offline" in err and "mnist" in err


def test_a_misspelled_config_key_gets_a_suggestion(tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("setting: class_incremental\nmethod: naive\nmethod_option:\n  lr: 0.1\n")
    err = refused(capsys, "--config_path", str(config))
    assert "did you mean 'method_options'?" in err
