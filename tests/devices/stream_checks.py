"""Checks every byte-stream codec shares: settings for its fuzzing, draining a buffer with its
``find_frame``, and feeding a stream in chunks the way the serial transport does."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings

FindFrame = Callable[[bytes], tuple[bytes | None, int]]


def fuzz(examples: int) -> settings:
    """Example counts sum to well over 1,000 per protocol; no deadline (CI machines stall)."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def drain(find_frame: FindFrame, stream: bytes) -> list[bytes]:
    """Every frame ``find_frame`` takes out of ``stream``; fails the test if it stops progressing."""
    found: list[bytes] = []
    buffer = stream
    for _ in range(len(stream) + 1):  # each round drops at least one byte: no hang possible
        frame, consumed = find_frame(buffer)
        if frame is None and consumed == 0:
            break
        buffer = buffer[consumed:]
        if frame is not None:
            found.append(frame)
        elif not buffer:
            break
    else:
        pytest.fail("find_frame made no progress")
    return found


def drain_at(find_frame: FindFrame, stream: bytes) -> list[tuple[int, bytes]]:
    """Like ``drain``, with the offset in ``stream`` where each frame was taken from."""
    found: list[tuple[int, bytes]] = []
    offset = 0
    for _ in range(len(stream) + 1):
        frame, consumed = find_frame(stream[offset:])
        if frame is None and consumed == 0:
            break
        if frame is not None:
            found.append((offset + consumed - len(frame), frame))
        offset += consumed
        if frame is None and offset >= len(stream):
            break
    else:
        pytest.fail("find_frame made no progress")
    return found


def lost_only_to_forgeries(pieces: list[tuple[bytes, bytes]], tail: bytes, found: list[tuple[int, bytes]]) -> list[str]:
    """What is wrong with ``found`` for a stream of (garbage, frame) ``pieces`` and a garbage
    ``tail``: every real frame
    is found at its place, except where garbage happened to form a valid frame (its checksum
    right by chance) that runs into the real one — no reader can tell such a forgery apart.
    A forgery must start in garbage. Empty when all holds."""
    real: dict[int, bytes] = {}
    garbage: list[range] = []
    at = 0
    for junk, frame in pieces:
        garbage.append(range(at, at + len(junk)))
        at += len(junk)
        real[at] = frame
        at += len(frame)
    garbage.append(range(at, at + len(tail)))
    problems = []
    forged = [(o, f) for o, f in found if real.get(o) != f]
    for o, f in forged:
        if not any(o in g for g in garbage):
            problems.append(f"a frame taken at {o} that starts in no garbage: {f.hex()}")
    taken = {o for o, f in found if real.get(o) == f}
    for o, f in real.items():
        if o not in taken and not any(fo < o < fo + len(ff) for fo, ff in forged):
            problems.append(f"the frame at {o} was lost with no forgery over it: {f.hex()}")
    return problems


def is_subsequence(wanted: list[bytes], found: list[bytes]) -> bool:
    it = iter(found)
    return all(any(f == w for f in it) for w in wanted)


def feed_in_chunks(
    find_frame: FindFrame, stream: bytes, sizes: list[int], check: Callable[[bytes], None]
) -> list[bytes]:
    """The serial transport's loop: append what arrived, take frames until find_frame waits;
    ``check`` holds each call's contract."""
    buffer = b""
    found: list[bytes] = []
    pos = 0
    for i in range(len(stream)):
        if pos >= len(stream):
            break
        size = sizes[i % len(sizes)]
        buffer += stream[pos : pos + size]
        pos += size
        while buffer:
            check(buffer)
            frame, consumed = find_frame(buffer)
            buffer = buffer[consumed:]
            if frame is None:
                break
            found.append(frame)
    return found
