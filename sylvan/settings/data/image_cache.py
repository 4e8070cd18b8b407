"""A folder of decoded image arrays (`--image_cache DIR`), so that a dataset of image files is
decoded once, not once per run and per worker.

A setting decodes the image files of the samples it keeps into one uint8 array
(`decoding.decode_images`). With a cache, that array is saved as a `.npy` file named by a hash
of the files it holds (their paths, in order, with each file's size and modification time):
a later run that keeps the same files, unchanged, reads the array back instead of decoding
them, and a changed, added or removed file gives another name, so a stale array is never read.
Processes that need the same entry at once (the data-parallel workers of a run that torchrun
or SLURM starts together) take turns on a lock of the entry (`locked`): the first decodes and
writes, the others wait and read, instead of each decoding on the same cores. The lock is the
operating system's (`flock`), released when its holder exits, crashed or not. Writes go to a
temporary file renamed into place, so a run killed while writing never leaves a partial array
under the final name. Nothing here can fail a run: an unreadable entry is decoded again, an
entry that cannot be written (no space, no permission) is skipped with a warning, and where
locks are not available the processes decode side by side.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

FORMAT = "sylvan-decoded-images-1"  # part of every key: a change of layout gives new names
SPARE_BYTES = 1 << 30  # free space left on the cache's disk after an entry is written


def entry_name(paths: Sequence[str]) -> str | None:
    """The file name under which the decoded images of `paths` (in this order) are kept, or
    None when a file cannot be looked at (decoding then reports it)."""
    digest = hashlib.sha256(FORMAT.encode())
    try:
        for path in paths:
            stat = os.stat(path)
            digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    except OSError:
        return None
    return f"{digest.hexdigest()[:40]}.npy"


@contextlib.contextmanager
def locked(folder: str | os.PathLike[str], name: str) -> Iterator[None]:
    """Hold the lock of entry `name` (a file `.NAME.lock` beside it, kept: removing it would let
    a later process lock another file of the same name) while the block runs; without waiting
    where the folder or the system cannot hold it."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        yield
        return
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # store() says why the folder cannot take the entry
        yield
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:  # a file system without locks
            pass
        yield
    finally:
        os.close(descriptor)  # releases the lock


def load(folder: str | os.PathLike[str], name: str, count: int) -> np.ndarray | None:
    """The cached uint8 images of entry `name`, (count, H, W, 3), or None when there is no such
    entry, or it is unreadable or of another shape: such an entry is removed, so that the images
    decoded again are written in its place."""
    path = Path(folder).expanduser() / name
    if not path.is_file():
        return None
    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        problem = f"cannot be read ({error})"
    else:
        if images.dtype == np.uint8 and images.ndim == 4 and images.shape[0] == count and images.shape[-1] == 3:
            return images
        problem = f"holds {images.dtype} {images.shape}, not {count} RGB images"
    warnings.warn(f"--image_cache: {path} {problem}; decoding the images again", stacklevel=2)
    with contextlib.suppress(OSError):
        path.unlink()
    return None


def store(folder: str | os.PathLike[str], name: str, images: np.ndarray) -> None:
    """Keep `images` as entry `name`, unless another process has just done so, or the folder
    cannot take it (a warning says why, and the run goes on without it)."""
    folder = Path(folder).expanduser()
    target = folder / name
    if target.is_file():
        return
    temporary = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if free < images.nbytes + SPARE_BYTES:
            warnings.warn(
                f"--image_cache: {folder} has {free / 2**30:.1f} GiB free, too little for {images.nbytes / 2**30:.2f} "
                "GiB of decoded images (and 1 GiB to spare); they are not kept", stacklevel=2,
            )
            return
        temporary = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        # created as an ordinary file is (the umask applies), so that whoever may read the folder may read it
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as file:
            np.save(file, images, allow_pickle=False)
        os.replace(temporary, target)
        temporary = None
    except OSError as error:
        warnings.warn(f"--image_cache: cannot write to {folder} ({error}); the decoded images are not kept",
                      stacklevel=2)
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
