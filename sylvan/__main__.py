"""`python -m sylvan` and the `sylvan` command: the command line of `sylvan.cli`, with Python's
garbage collector paused while the command starts up (`sylvan.run.garbage_collection`), before
anything is imported."""

from __future__ import annotations

from typing import NoReturn

from sylvan.run.garbage_collection import pause_for_start_up


def console() -> NoReturn:
    """Run the command line (`sylvan.cli.console`) with the start-up's collection paused."""
    pause_for_start_up()
    from sylvan.cli import console as command_line

    command_line()


if __name__ == "__main__":
    console()
