"""Reading a real BMS: ``jbd:/dev/ttyUSB0``, ``daly:socket://127.0.0.1:7000``, ``ble:AA:BB:…``.

A reading is either fresh or absent: when the device stops answering (or answers garbage) the
reader says ``comm_error`` and how old the last good reading is, and never hands out old values
as new ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from openbms.devices.ble import BleUnavailable, read_ble
from openbms.devices.canbus import CAN_PROTOCOL, CanReader, parse_can_port
from openbms.devices.errors import FrameError
from openbms.devices.model import DeviceReading
from openbms.devices.protocols import CLIENTS
from openbms.devices.transport import SerialTransport, TransportError, open_port


class DeviceError(ValueError):
    """A device URL that cannot be used; one sentence says why."""


# The rate each protocol's boards usually ship with (JK RS485 boards run at 115200).
DEFAULT_BAUD = {"jbd": 9600, "daly": 9600, "jk": 115200}
# What `openbms probe` tries: each protocol at its usual rate first, then at the other one.
PROBE_RATES = (9600, 115200)

# Everything opening or reading a device raises for a problem the user fixes (the URL, the port,
# the adapter); monitor and diagnose both refuse these in one sentence.
DEVICE_ERRORS = (DeviceError, TransportError, BleUnavailable)


@dataclass(frozen=True)
class Poll:
    """One poll of a device: a fresh reading, or the error and the age of the last good one."""

    reading: DeviceReading | None
    error: str | None = None
    last_good_age_s: float | None = None
    t_monotonic: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.reading is not None


def parse_url(url: str) -> tuple[str, str]:
    """('jbd' | 'daly' | 'jk' | 'pylontech-can' | 'ble', port) from ``protocol:port``."""
    protocol, sep, port = url.partition(":")
    if not sep or not port:
        raise DeviceError(f"{url!r} is not a device URL; use e.g. jbd:/dev/ttyUSB0 or daly:socket://127.0.0.1:7000")
    protocol = protocol.lower()
    known = (*CLIENTS, CAN_PROTOCOL, "ble")
    if protocol not in known:
        raise DeviceError(f"unknown protocol {protocol!r}; choose one of {', '.join(known)}")
    if protocol == CAN_PROTOCOL:
        parse_can_port(port)
    if port.startswith("socket://"):
        _check_socket(port)
    return protocol, port


def _check_socket(port: str) -> None:
    """``socket://HOST:PORT`` with a port number, said plainly before pyserial says it obscurely."""
    host, sep, number = port.removeprefix("socket://").rpartition(":")
    if not sep or not host or not number.isdigit() or not 0 < int(number) <= 65535:
        raise DeviceError(f"{port!r} needs a host and a port number (1–65535), e.g. socket://127.0.0.1:7000")


class DeviceReader:
    """Polls one serial (or TCP) device with its protocol's client."""

    def __init__(self, url: str, timeout_s: float = 1.0, retries: int = 2, baud: int | None = None) -> None:
        protocol, port = parse_url(url)
        if protocol == "ble":
            raise DeviceError("BLE devices are read with `openbms monitor --device ble:ADDRESS` via aiobmsble")
        if baud is not None and baud <= 0:
            raise DeviceError(f"--baud {baud} is not a baud rate; JBD and Daly boards use 9600, JK RS485 115200")
        self.url = url
        self.port_name = port
        self.protocol = protocol
        self._last_good: float | None = None
        self._can: CanReader | None = None
        if protocol == CAN_PROTOCOL:  # a bus, not a serial port: the battery broadcasts
            if baud is not None:
                raise DeviceError("--baud applies to serial ports; the inverter CAN bus runs at 500 kbit/s")
            self.baud = 0
            self._can = CanReader(port)
            return
        self.baud = baud or DEFAULT_BAUD[protocol]
        self.client = CLIENTS[protocol]()
        self.transport = SerialTransport(open_port(port, self.baud), self.client.find_frame, timeout_s, retries)

    def poll(self) -> Poll:
        try:
            reading = self._can.read() if self._can is not None else self.client.read(self.transport)
        except (TransportError, FrameError) as err:
            age = None if self._last_good is None else time.monotonic() - self._last_good
            return Poll(None, f"comm_error: {err}", age)
        self._last_good = time.monotonic()
        return Poll(reading)

    def set_fets(self, charge_on: bool, discharge_on: bool) -> bool:
        """Ask the board to switch its FETs (JBD and Daly; JK's RS485 writes are not supported).
        True when it accepted; raises DeviceError for a protocol without FET writes and
        TransportError/FrameError when the link fails."""
        write = None if self._can is not None else getattr(self.client, "set_fets", None)
        if write is None:
            raise DeviceError(f"switching the FETs over {self.protocol.upper()} is not supported (JBD and Daly are)")
        return bool(write(self.transport, charge_on, discharge_on))

    def close(self) -> None:
        if self._can is not None:
            self._can.close()
        else:
            self.transport.close()


def read_once(url: str, baud: int | None = None) -> tuple[Poll, dict[str, str | int]]:
    """One poll of the device at ``url`` and how it was asked (protocol, port and, on a serial
    port, baud); raises one of DEVICE_ERRORS. A silent device is a poll with an error."""
    protocol, port = parse_url(url)
    if protocol == "ble":
        if baud is not None:
            raise DeviceError("--baud applies to serial ports; a BLE device has no baud rate")
        return Poll(read_ble(port)), {"protocol": "ble", "port": port}
    reader = DeviceReader(url, baud=baud)
    try:
        poll = reader.poll()
    finally:
        reader.close()
    return poll, {"protocol": protocol, "port": port, "baud": reader.baud}


@dataclass(frozen=True)
class ProbeAttempt:
    protocol: str
    baud: int
    reading: DeviceReading | None
    error: str | None = None


def probe(port: str, timeout_s: float = 0.3, rates: tuple[int, ...] | None = None) -> Iterator[ProbeAttempt]:
    """Ask ``port`` with each protocol at each rate in turn (usual rate first) until one answers;
    yields every attempt. A port that cannot be opened raises one of DEVICE_ERRORS."""
    if port.startswith("socket://"):
        _check_socket(port)
    tries = [(p, DEFAULT_BAUD[p]) for p in CLIENTS]
    tries += [(p, b) for b in PROBE_RATES for p in CLIENTS if (p, b) not in tries]
    if rates is not None:
        tries = [(p, b) for b in rates for p in CLIENTS]
    for protocol, baud in tries:
        reader = DeviceReader(f"{protocol}:{port}", timeout_s=timeout_s, retries=0, baud=baud)
        try:
            poll = reader.poll()
        finally:
            reader.close()
        yield ProbeAttempt(protocol, baud, poll.reading, poll.error)
        if poll.ok:
            return
