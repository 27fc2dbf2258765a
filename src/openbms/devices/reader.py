"""Reading a real BMS: ``jbd:/dev/ttyUSB0``, ``daly:socket://127.0.0.1:7000``, ``ble:AA:BB:…``.

A reading is either fresh or absent: when the device stops answering (or answers garbage) the
reader says ``comm_error`` and how old the last good reading is, and never hands out old values
as new ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from openbms.devices.ble import BleUnavailable, read_ble
from openbms.devices.errors import FrameError
from openbms.devices.model import DeviceReading
from openbms.devices.protocols import CLIENTS
from openbms.devices.transport import SerialTransport, TransportError, open_port
from openbms.diagnose.snapshot import ActiveFault, Snapshot

PROTOCOL_CLASSES = {
    "cell_overvoltage": "auto",
    "cell_undervoltage": "charger",
    "deep_discharge": "persistent",
    "charge_overcurrent": "auto",
    "discharge_overcurrent": "load-removal",
    "short_circuit": "load-removal",
    "charge_overtemperature": "auto",
    "charge_undertemperature": "auto",
    "discharge_overtemperature": "auto",
    "discharge_undertemperature": "auto",
    "fet_overtemperature": "auto",
    "cell_imbalance": "auto",
    "sensor_fault": "latched",
    "afe_fault": "latched",
    "comm_error": "soft",
    "cell_failure": "persistent",
    "cell_overvoltage_latched": "latched",
}


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
    """('jbd' | 'daly' | 'jk' | 'ble', port) from ``protocol:port``."""
    protocol, sep, port = url.partition(":")
    if not sep or not port:
        raise DeviceError(f"{url!r} is not a device URL; use e.g. jbd:/dev/ttyUSB0 or daly:socket://127.0.0.1:7000")
    protocol = protocol.lower()
    if protocol not in (*CLIENTS, "ble"):
        raise DeviceError(f"unknown protocol {protocol!r}; choose one of {', '.join((*CLIENTS, 'ble'))}")
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
        self.baud = baud or DEFAULT_BAUD[protocol]
        self.client = CLIENTS[protocol]()
        self.transport = SerialTransport(open_port(port, self.baud), self.client.find_frame, timeout_s, retries)
        self._last_good: float | None = None

    def poll(self) -> Poll:
        try:
            reading = self.client.read(self.transport)
        except (TransportError, FrameError) as err:
            age = None if self._last_good is None else time.monotonic() - self._last_good
            return Poll(None, f"comm_error: {err}", age)
        self._last_good = time.monotonic()
        return Poll(reading)

    def close(self) -> None:
        self.transport.close()


def snapshot_from_reading(
    reading: DeviceReading | None,
    error: str | None = None,
    link: dict[str, str | int] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> Snapshot:
    """What the diagnosis sees of a real device (fewer facts than a twin). ``link`` says how it was
    asked (protocol, port, baud); ``history`` is earlier events of this board, when there are any."""
    if reading is None:
        # Silence is all that was observed: a sleeping BMS, a hung one, the wrong protocol, port or
        # baud rate and swapped wires all look alike, so the state says only "no reply".
        return Snapshot(
            source="device",
            state="no_reply",
            faults=[],
            responds=None,
            events=[
                *(history or []),
                {"kind": "warning", "warning": "no_answer", "detail": error or "", **(link or {})},
            ],
        )
    faults = [
        ActiveFault.model_validate({"fault": f, "class": PROTOCOL_CLASSES.get(f, "auto")}) for f in reading.faults
    ]
    blocking = [f for f in faults if f.fault not in ("cell_imbalance", "comm_error")]
    klasses = {f.klass for f in faults}
    state = (
        "locked"
        if "persistent" in klasses
        else "latched"
        if "latched" in klasses
        else ("protected" if blocking or reading.charge_fet is False or reading.discharge_fet is False else "normal")
    )
    return Snapshot(
        source="device",
        state=state,
        faults=faults,
        charge_fet=reading.charge_fet,
        discharge_fet=reading.discharge_fet,
        cell_v=list(reading.cell_v) if reading.cell_v else None,
        temperature_c=list(reading.temperature_c) if reading.temperature_c else None,
        fet_temperature_c=reading.fet_temperature_c,
        current_a=reading.current_a,
        pack_v=reading.pack_v,
        soc=reading.soc,
        load_connected=None if reading.current_a is None else reading.current_a < -0.5,
        charger_connected=None if reading.current_a is None else reading.current_a > 0.5,
        responds=True,
        events=list(history or []),
    )


def read_device_snapshot(url: str, baud: int | None = None, history: list[dict[str, Any]] | None = None) -> Snapshot:
    """One reading of the device at ``url`` as a snapshot; raises one of DEVICE_ERRORS. ``history``
    (``openbms.devices.history.load_history``) is what was recorded of the board before: it is what
    tells a board asleep after a cut-off from one that is merely silent."""
    protocol, port = parse_url(url)
    if protocol == "ble":
        if baud is not None:
            raise DeviceError("--baud applies to serial ports; a BLE device has no baud rate")
        return snapshot_from_reading(read_ble(port), link={"protocol": "ble", "port": port}, history=history)
    reader = DeviceReader(url, baud=baud)
    try:
        poll = reader.poll()
    finally:
        reader.close()
    link: dict[str, str | int] = {"protocol": protocol, "port": port, "baud": reader.baud}
    return snapshot_from_reading(poll.reading, poll.error, link, history)


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
