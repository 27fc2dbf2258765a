"""Who may act: the control token of ``openbms serve`` and the brake on guessing it.

Reading is open (a dashboard on the owner's own machine); every control needs the token. There is
no default password: the token is made on the first run (32 random bytes, URL-safe), stored in a
file only its owner may read (0600, in a 0700 folder) and printed once. It is compared in
constant time, and an origin that fails too often is refused for a while before its token is
even looked at, so the token cannot be guessed at network speed.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

TOKEN_BYTES = 32
MIN_TOKEN_CHARS = 20  # a token file holding less than this was not made by us: refused
FAILURES_ALLOWED = 5  # wrong tokens from one origin within FAILURE_WINDOW_S before it is refused
FAILURE_WINDOW_S = 60.0


class TokenError(ValueError):
    """The token file cannot be made or trusted; the message says which file and what to do."""


@dataclass(frozen=True)
class Token:
    value: str
    path: Path
    created: bool  # made by this run: print it (once)


def default_token_path() -> Path:
    """``$XDG_CONFIG_HOME/openbms/serve-token`` (``~/.config`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "openbms" / "serve-token"


def load_or_create_token(path: Path) -> Token:
    """The token in ``path``; made (and stored 0600) when the file does not exist. A file that
    others may read is refused: a token anyone on the machine can read protects nothing."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return _create(path)
    except OSError as err:
        raise TokenError(f"cannot read the token file {path}: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TokenError(f"the token file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise TokenError(
            f"the token file {path} can be read by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run `chmod 600 {path}` or delete it to make a new token"
        )
    try:
        value = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise TokenError(f"cannot read the token file {path}: {err}") from None
    if len(value) < MIN_TOKEN_CHARS or not value.isprintable() or " " in value:
        raise TokenError(f"the token file {path} does not hold a token; delete it to make a new one")
    return Token(value, path, created=False)


def _create(path: Path) -> Token:
    value = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise TokenError(f"cannot create the token file {path}: {err.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(value + "\n")
    return Token(value, path, created=True)


def token_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` is the token, in time that does not depend on how much of it matches."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))


class FailureBrake:
    """Counts wrong tokens per origin; an origin with ``allowed`` failures within ``window_s`` is
    refused until the oldest of them is older than the window. Thread-safe."""

    def __init__(self, allowed: int = FAILURES_ALLOWED, window_s: float = FAILURE_WINDOW_S) -> None:
        self.allowed = allowed
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, origin: str, now: float) -> deque[float]:
        times = self._failures.setdefault(origin, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    def retry_after_s(self, origin: str, now: float | None = None) -> float:
        """Seconds until ``origin`` may try again (0: it may now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._recent(origin, now)
            if len(times) < self.allowed:
                return 0.0
            return max(self.window_s - (now - times[0]), 0.0)

    def failed(self, origin: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent(origin, now).append(now)
            if len(self._failures) > 10_000:  # many origins: forget the quiet ones
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]
