"""The command's exit status, as Python would give it (the exit itself: tests/cli/test_cli.py)."""

from __future__ import annotations

from sylvan.cli.process_exit import exit_status


def test_exit_status_is_the_one_python_gives_system_exit(capsys):
    assert exit_status(None) == 0 and exit_status(0) == 0
    assert exit_status(2) == 2 and exit_status(143) == 143
    assert exit_status("sylvan: stopped") == 1
    assert capsys.readouterr().err == "sylvan: stopped\n"

