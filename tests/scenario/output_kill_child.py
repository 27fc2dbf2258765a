"""``openbms`` that SIGKILLs itself at a chosen moment of replacing an output set: a script the
output-set test runs with ``sys.executable``, not a test module.

``python output_kill_child.py DIR K openbms-arguments...`` runs the command line and kills its own
process with SIGKILL just before the K-th rename or removal of a file directly in ``DIR`` (the
marker's creation, the four files' renames, the marker's removal). K = 0 never kills.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

TARGET = Path(sys.argv[1]).resolve()
KILL_AT = int(sys.argv[2])
_seen = 0
_replace, _unlink = os.replace, os.unlink


def _maybe_die(path: Any) -> None:
    global _seen
    if Path(path).resolve().parent == TARGET:
        _seen += 1
        if _seen == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
    _maybe_die(dst)
    _replace(src, dst, *args, **kwargs)


def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
    _maybe_die(path)
    _unlink(path, *args, **kwargs)


os.replace = replace  # type: ignore[assignment]
os.unlink = unlink  # type: ignore[assignment]

if __name__ == "__main__":
    from openbms.cli import app

    app(sys.argv[3:])
