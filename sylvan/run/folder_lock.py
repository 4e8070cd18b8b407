"""One process at a time in a run folder: the lock a run or a resumption holds while it writes.

Two processes writing one run folder (a run resumed twice at once, a resumption of a run that is
still going) would interleave their rows in `logs/train.csv` and overwrite each other's results
and checkpoints, each ending with status 0. The process that writes a run folder holds an
exclusive `flock` on its `run.lock` file, which names it (process id, host, command); another
that finds the lock held is refused with that name. The operating system releases the lock when
its holder ends, however it ends, so the lock of a process that is gone (killed, crashed, its
machine restarted) is taken over without a word: no stale lock ever needs removing by hand.

`flock` is advisory and local to a machine's kernel on most network file systems; it is what
POSIX systems offer. Where `fcntl` does not exist (Windows), runs are not locked.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

from sylvan.errors import ConfigurationError

LOCK_FILE = "run.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


_HELD: dict[Path, list] = {}  # run folder -> [its open lock file, the RunFolderLocks of this process holding it]


class RunFolderLock:
    """The exclusive lock on one run folder, held by this process from `acquire()` until
    `release()` or the end of the process. The lock is the process's: several trackers of one
    process (a run interrupted in a notebook, then resumed there) share it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir).resolve() / LOCK_FILE
        self.held = False

    def acquire(self) -> None:
        """Take the lock, or raise `ConfigurationError` naming the process that holds it."""
        if fcntl is None or self.held:
            return
        if self.path in _HELD:
            _HELD[self.path][1] += 1
            self.held = True
            return
        try:
            lock_file = open(self.path, "a+")
        except OSError as error:  # a read-only mount, a run.lock that is a folder
            why = f"{self.path} is a folder" if isinstance(error, IsADirectoryError) else error.strerror
            raise ConfigurationError(
                f"cannot write the run folder {self.path.parent} ({why}): a run writes its results, logs and "
                f"checkpoints there, and {LOCK_FILE}, which keeps other processes out while it does; give a folder "
                "that can be written (copy the run's folder elsewhere to resume it there)"
            ) from None
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            named = lock_file.read().strip()
            lock_file.close()
            raise ConfigurationError(
                f"the run folder {self.path.parent} is in use by {holder_of(named)}: one process at a time writes "
                "a run folder. Wait for that process to end (or stop it), then try again"
            ) from None
        lock_file.seek(0)
        lock_file.truncate()
        command = " ".join(["sylvan", *sys.argv[1:]])[:300]
        lock_file.write(f"process {os.getpid()} on {socket.gethostname()} ({command})\n")
        lock_file.flush()
        _HELD[self.path] = [lock_file, 1]
        self.held = True

    def release(self) -> None:
        """Let another process write the folder, once no part of this one holds it (the file
        stays: the next holder rewrites it)."""
        if not self.held:
            return
        self.held = False
        entry = _HELD[self.path]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self.path]
            entry[0].close()  # closing the file releases its flock


def holder_of(named: str) -> str:
    """Who holds a lock whose file names `named` (what its writer wrote: "process PID on HOST
    (...)"): that process where it may still run; where it is known to have ended (a process of
    this machine that no longer exists), a process it started, which shares its open lock file."""
    if not named:
        return "another process"
    match = re.match(r"process (\d+) on (\S+)", named)
    if match is None or match.group(2) != socket.gethostname() or process_exists(int(match.group(1))):
        return named
    return (f"a process started by the one {LOCK_FILE} names ({named}), which has ended: a process it started (a "
            f"worker, a data loader) still holds the lock; `fuser {LOCK_FILE}` in the folder names it")


def process_exists(pid: int) -> bool:
    """Whether a process `pid` runs on this machine (it may belong to another user)."""
    try:
        os.kill(pid, 0)  # a PermissionError: it runs, as another user
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
