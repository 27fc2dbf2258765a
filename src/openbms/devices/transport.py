"""Serial transport on pyserial: one request out, one frame back, with timeouts, retries and
resynchronisation after garbage.

A port is anything pyserial opens: a device path (/dev/ttyUSB0, a pseudo-terminal), or a URL such
as ``socket://127.0.0.1:7000`` (the emulator's TCP port) or ``loop://``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable
from typing import Protocol

import serial

from openbms.devices.framing import FrameFinder

try:  # a pseudo-terminal whose other end went away raises termios.error (EIO), not OSError
    from termios import error as TermiosError
except ImportError:  # pragma: no cover - not on POSIX
    TermiosError = OSError  # type: ignore[misc,assignment]

PORT_ERRORS = (serial.SerialException, OSError, TermiosError)

MAX_BUFFER = 4096


class TransportError(RuntimeError):
    """The device did not answer in time (after retries), or the port could not be used."""


class Port(Protocol):
    def write(self, data: bytes, /) -> int | None: ...
    def read(self, size: int = 1, /) -> bytes: ...
    def reset_input_buffer(self) -> None: ...
    def close(self) -> None: ...

    @property
    def in_waiting(self) -> int: ...


def open_port(url: str, baudrate: int = 9600, timeout_s: float = 0.05) -> Port:
    """Open a serial device or URL; raise TransportError with the port named when it fails."""
    try:
        port: Port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout_s)
    except (*PORT_ERRORS, ValueError) as err:
        raise TransportError(f"cannot open {url}: {_why(err)}") from None
    return port


def _why(err: Exception) -> str:
    """Why a port did not open, plainly: pyserial repeats the path and the errno in its message."""
    code = err.errno if isinstance(err, OSError) else err.args[0] if err.args else None
    if code == errno.ENOENT:
        return "no such port; check its name (ls /dev/serial/by-id/)"
    if code == errno.EACCES:
        return "permission denied; add your user to the group that owns the port (often dialout)"
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    return str(err)


class SerialTransport:
    """Request/response over a byte stream. Garbage before, between or after frames is skipped by the
    protocol's ``find_frame`` (the one scanner of ``framing``)."""

    def __init__(self, port: Port, find_frame: FrameFinder, timeout_s: float = 1.0, retries: int = 2) -> None:
        self.port = port
        self.find_frame = find_frame
        self.timeout_s = timeout_s
        self.retries = retries
        self._buffer = b""

    def request(self, frame: bytes, accept: Callable[[bytes], bool] | None = None) -> bytes:
        """Send ``frame``; return the first complete reply that ``accept`` takes (default: any)."""
        last_error = "no answer"
        for _attempt in range(self.retries + 1):
            self._buffer = b""
            try:
                self.port.reset_input_buffer()
                self.port.write(frame)
            except PORT_ERRORS as err:
                raise TransportError(f"cannot write to the device: {err}") from None
            try:
                return self._read_reply(accept)
            except TransportError as err:
                last_error = str(err)
        raise TransportError(f"{last_error} after {self.retries + 1} attempts")

    def read_frame(self, accept: Callable[[bytes], bool] | None = None) -> bytes:
        """The next complete frame already on its way (for multi-frame replies)."""
        return self._read_reply(accept)

    def _read_reply(self, accept: Callable[[bytes], bool] | None) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        while True:
            frame, consumed = self.find_frame(self._buffer)
            if consumed:
                self._buffer = self._buffer[consumed:]
            if frame is not None:
                if accept is None or accept(frame):
                    return frame
                continue
            if time.monotonic() >= deadline:
                raise TransportError(f"no valid reply within {self.timeout_s:g} s")
            try:
                chunk = self.port.read(max(1, min(self.port.in_waiting, MAX_BUFFER)))
            except PORT_ERRORS as err:
                raise TransportError(f"cannot read from the device: {err}") from None
            if chunk:
                self._buffer = (self._buffer + chunk)[-MAX_BUFFER:]

    def close(self) -> None:
        with contextlib.suppress(*PORT_ERRORS):
            self.port.close()
