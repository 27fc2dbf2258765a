"""Writing a file so that no reader ever sees half of it: a temporary file beside it, renamed
into place, with the permissions of a file the user created.

A neutral helper: it imports nothing of openbms, so any layer (the scenario's outputs and plot,
a diagnosis snapshot) can use it without importing another layer for it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open()`` would give a new file: what the user expects of an output file, where
    ``tempfile`` would leave it private (0600)."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    return 0o777 & ~current_umask()


def temp_file(path: Path, suffix: str = "") -> tuple[int, str]:
    """A temporary file beside ``path`` (same file system, so it can be renamed onto it) with the
    permissions of a file the user created."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, tmp


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, mode, encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["atomic_write", "current_umask", "file_mode", "folder_mode", "temp_file"]


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[str]:
    """A temporary path beside ``path`` for a writer that wants a file name (matplotlib's
    ``savefig``, pyarrow), renamed onto ``path`` only when the block ends without an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path, suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
