"""Declarative field tables for binary BMS frames (the aiobmsble style).

A protocol module lists its fields once — name, byte offset, struct format, scale, offset — and
the same table decodes and encodes, so encode(decode(frame)) == frame by construction.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from openbms.devices.errors import FrameError


@dataclass(frozen=True)
class Field:
    """One numeric field: ``value = raw * scale + offset`` (SI units, our sign convention)."""

    name: str
    at: int  # byte offset in the payload
    fmt: str  # struct format of one value, e.g. ">H", ">h", ">I", "B"
    scale: float = 1.0
    offset: float = 0.0

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)

    def decode(self, payload: bytes) -> float:
        end = self.at + self.size
        if end > len(payload):
            raise FrameError(f"field {self.name} needs bytes {self.at}..{end - 1}, payload has {len(payload)}")
        (raw,) = struct.unpack_from(self.fmt, payload, self.at)
        return raw * self.scale + self.offset

    def encode_into(self, buffer: bytearray, value: float) -> None:
        raw = round((value - self.offset) / self.scale)
        try:
            struct.pack_into(self.fmt, buffer, self.at, raw)
        except struct.error:
            raise FrameError(f"field {self.name}: {value!r} does not fit {self.fmt}") from None


def decode_fields(fields: Iterable[Field], payload: bytes) -> dict[str, float]:
    return {f.name: f.decode(payload) for f in fields}


def encode_fields(fields: Iterable[Field], values: Mapping[str, float], size: int) -> bytes:
    buffer = bytearray(size)
    for f in fields:
        f.encode_into(buffer, values[f.name])
    return bytes(buffer)


def bits(value: int, count: int) -> list[int]:
    """Indices of the set bits of ``value`` among its lowest ``count``."""
    return [i for i in range(count) if value >> i & 1]
