"""Reading a user's file within bounds: scenario YAML, CSV profiles, OCV tables, state files.

A path on the command line or in a scenario may name anything: a FIFO blocks forever on open,
``/dev/zero`` never ends, a 10 GB file exhausts memory. Only regular files are read, and never
more than a stated number of bytes, so bad input costs a sentence, not a hang.
"""

from __future__ import annotations

import stat
from pathlib import Path


class InputLimitError(ValueError):
    """A file beyond what openbms reads: ``reason`` says why, ``line`` where (when known)."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.reason = reason
        self.line = line


def read_text_limited(path: Path, limit: int) -> str:
    """The UTF-8 text of the regular file ``path`` of at most ``limit`` bytes.

    At most ``limit`` + 1 bytes are read, in case the file grows while it is read. Raises
    OSError, UnicodeDecodeError or InputLimitError.
    """
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise InputLimitError("not a regular file (a FIFO, a device or a folder)")
    if info.st_size > limit:
        raise InputLimitError(f"the file is larger than {limit // 1000} kB")
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputLimitError(f"the file is larger than {limit // 1000} kB")
    return data.decode("utf-8")
