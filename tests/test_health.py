"""Worker health: which errors mean a lost peer, how a worker's end is described, and the signal
behind an error raised while a worker shut down on one."""

from __future__ import annotations

import signal
from types import SimpleNamespace

from sylvan.errors import StoppedBySignal
from sylvan.parallel.health import exit_description, failure_report, is_distributed_failure
from sylvan.run.signals import interruption_behind


def test_an_exit_status_or_a_signal_is_described():
    assert exit_description(17) == "exited with status 17"
    assert exit_description(-signal.SIGKILL) == "was killed by signal 9 (SIGKILL)"
    assert exit_description(-200) == "was killed by signal 200"


def test_lost_peers_are_told_from_other_errors():
    assert is_distributed_failure(RuntimeError("Connection closed by peer"))
    assert is_distributed_failure(RuntimeError("[../gloo/transport] Timed out waiting"))
    assert not is_distributed_failure(ValueError("--lr must be > 0"))


def test_the_signal_behind_a_broken_connection_is_found():
    try:
        try:
            raise StoppedBySignal(signal.SIGTERM)
        except KeyboardInterrupt as stop:
            raise RuntimeError("Connection closed by peer") from stop
    except RuntimeError as error:
        assert isinstance(interruption_behind(error), StoppedBySignal)
    assert interruption_behind(RuntimeError("Connection closed by peer")) is None


def test_two_dead_workers_are_both_named_before_the_one_that_noticed():
    children = [SimpleNamespace(poll=lambda: -signal.SIGKILL), SimpleNamespace(poll=lambda: 3)]
    lines = failure_report(RuntimeError("Connection reset\nmore"), children, exit_wait=0.0)
    assert lines == ["worker 1 was killed by signal 9 (SIGKILL).", "worker 2 exited with status 3.",
                     "worker 0 lost contact with them (Connection reset)."]
