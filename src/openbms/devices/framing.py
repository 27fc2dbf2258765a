"""One stream scanner for every protocol: find the next valid frame in a byte stream, resynchronising
after garbage.

Why one: the three codecs used to carry three copies of the same loop, and a fix to one (a later
complete frame wins over an earlier candidate still waiting for bytes, so a stray start byte with a
plausible length cannot hold up real frames) had to be made three times. A protocol now gives only
its start bytes and a *frame candidate* function; the scanner, used by every client (through the
serial transport) and every server (through the emulator), is this one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

BytesLike = bytes | bytearray | memoryview

# What a scanner hands back: (the frame, or None; how many leading bytes the caller may drop).
FrameFinder = Callable[[bytes], tuple[bytes | None, int]]

INCOMPLETE: Final = -1
"""A candidate's answer for a start that may still become a frame once more bytes arrive."""

# candidate(buffer, at) -> the end of the valid frame starting at ``at``, INCOMPLETE, or None (garbage).
Candidate = Callable[[bytes, int], int | None]


@dataclass(frozen=True)
class Framing:
    """A protocol's framing: the bytes every frame starts with, and its frame candidate function."""

    start: bytes
    candidate: Candidate

    def find_frame(self, buffer: BytesLike) -> tuple[bytes | None, int]:
        """The next complete frame in a byte stream, and how many leading bytes the caller may drop.

        Returns ``(frame, consumed)`` with the frame ending at ``consumed`` (garbage before it is
        dropped with it), or ``(None, consumed)`` where ``buffer[consumed:]`` is empty, the start of
        a plausible frame still arriving, or a trailing piece of the start bytes. A start that does
        not lead to a valid frame is skipped, and a complete valid frame later in the buffer wins
        over an earlier start still waiting for bytes, so noise that looks like a header cannot hide
        a real frame.
        """
        raw = bytes(buffer)
        pending: int | None = None
        at = raw.find(self.start)
        while at != -1:
            end = self.candidate(raw, at)
            if end == INCOMPLETE:
                pending = at if pending is None else pending
            elif end is not None:
                return raw[at:end], end
            at = raw.find(self.start, at + 1)
        if pending is not None:
            return None, pending
        return None, len(raw) - self._partial_start(raw)

    def _partial_start(self, raw: bytes) -> int:
        """Length of the longest tail of ``raw`` that begins the start bytes (a header cut in two)."""
        for size in range(min(len(self.start) - 1, len(raw)), 0, -1):
            if raw.endswith(self.start[:size]):
                return size
        return 0
