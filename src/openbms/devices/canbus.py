"""The inverter CAN link (``pylontech-can``) on a python-can bus: the twin as the battery an
inverter talks to, and a reader of a battery's broadcasts.

A device URL is ``pylontech-can:INTERFACE:CHANNEL``: ``pylontech-can:socketcan:can0`` for a
real adapter (or ``vcan0``), ``pylontech-can:virtual:NAME`` for python-can's in-process virtual
bus (tests, and two programs in one process). python-can is the ``can`` extra, imported only here.

The battery side broadcasts every ``PERIOD_S`` of wall time what the inverter needs, from the
brain's live values: the charge voltage and current limits the brain computes (derated near full,
near empty and at the temperature edges), the discharge limit, SOC, SOH, voltage, current, the
hottest cell, every fault and warning as its alarm bit, charge and discharge enable (the FETs and
their limits), force charge after a deep discharge, full charge while the SOC needs
recalibrating. It watches the inverter's 0x305 keep-alive: none for ``KEEPALIVE_TIMEOUT_S`` and
the BMS logs a warning (``inverter_link_lost``), and one when it is back.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from openbms.bms.reading import PackReading
from openbms.devices import pylontech_can as pc
from openbms.devices.errors import FrameError
from openbms.devices.transport import TransportError

CAN_PROTOCOL = "pylontech-can"
INTERFACES = ("socketcan", "virtual")
BATTERY_NAME = "OPENBMS"
READ_WINDOW_S = 2.5  # a reader waits this long for one round of the battery's messages


class CanUnavailable(TransportError):
    """python-can is not installed, or the interface cannot be opened; one sentence."""


def parse_can_port(port: str) -> tuple[str, str]:
    """``socketcan:can0`` → ("socketcan", "can0"); refused in one sentence otherwise."""
    interface, sep, channel = port.partition(":")
    if not sep or not channel or interface not in INTERFACES:
        raise CanUnavailable(
            f"{port!r} is not a CAN port; use socketcan:CHANNEL (can0, vcan0) or virtual:NAME, "
            "e.g. pylontech-can:socketcan:can0"
        )
    return interface, channel


def open_bus(interface: str, channel: str) -> Any:
    """A python-can bus on ``interface``/``channel`` at the protocol's 500 kbit/s."""
    try:
        import can
    except ImportError:
        raise CanUnavailable("the CAN link needs python-can: pip install '.[can]'") from None
    try:
        return can.Bus(interface=interface, channel=channel, bitrate=pc.BITRATE, receive_own_messages=False)
    except (OSError, can.CanError, ValueError) as err:
        raise CanUnavailable(f"cannot open CAN {interface} {channel}: {err}") from None


def broadcast_of(reading: PackReading, discharge_voltage_limit_v: float, name: str = BATTERY_NAME) -> pc.Broadcast:
    """What the battery says on the bus now, from its reading (the brain's own limits in it)."""
    faults = set(reading.faults)
    temps = [t for t in reading.temperature_c or [] if t == t]
    charge_limit = max(reading.charge_current_limit_a or 0.0, 0.0)
    discharge_limit = max(reading.discharge_current_limit_a or 0.0, 0.0)
    return pc.Broadcast(
        charge_voltage_limit_v=reading.charge_voltage_limit_v or 0.0,
        charge_current_limit_a=charge_limit,
        discharge_current_limit_a=discharge_limit,
        discharge_voltage_limit_v=discharge_voltage_limit_v,
        soc=reading.soc or 0.0,
        soh=reading.soh if reading.soh is not None else 1.0,
        pack_v=reading.pack_v or 0.0,
        current_a=reading.current_a or 0.0,
        temperature_c=max(temps) if temps else 0.0,
        protections=pc.alarms_of(faults),
        warnings=pc.alarms_of(reading.warnings or []),
        charge_enable=bool(reading.charge_fet) and charge_limit > 0,
        discharge_enable=bool(reading.discharge_fet) and discharge_limit > 0,
        force_charge=bool(faults & {"deep_discharge", "cell_undervoltage"}),
        full_charge=bool(reading.soc_uncertain),
        name=name,
    )


def frames_of(b: pc.Broadcast) -> list[Any]:
    import can

    return [can.Message(arbitration_id=i, data=payload, is_extended_id=False) for i, payload in pc.encode(b).items()]


class CanBatteryPort:
    """The emulator's port for ``pylontech-can``: between control cycles it listens for the
    inverter's keep-alive and broadcasts every ``PERIOD_S`` (wall time)."""

    path: str

    def __init__(self, interface: str, channel: str, discharge_voltage_limit_v: float) -> None:
        self.bus = open_bus(interface, channel)
        self.path = f"{CAN_PROTOCOL}:{interface}:{channel}"
        self.discharge_voltage_limit_v = discharge_voltage_limit_v
        self._next_send = 0.0
        self.last_keepalive: float | None = None
        self.inverter_alive = False
        self.sent = 0

    def serve(self, emulator: Any, timeout_s: float) -> None:
        end = time.monotonic() + max(timeout_s, 0.0)
        while True:
            now = time.monotonic()
            if now >= self._next_send:
                self._broadcast(emulator)
                self._next_send = now + pc.PERIOD_S
            self._watch_keepalive(emulator, now)
            wait = min(end, self._next_send) - time.monotonic()
            message = self.bus.recv(timeout=max(wait, 0.0))
            if message is not None and message.arbitration_id == pc.ID_KEEPALIVE and not message.is_extended_id:
                self.last_keepalive = time.monotonic()
            if time.monotonic() >= end:
                return

    def _broadcast(self, emulator: Any) -> None:
        with emulator.lock:
            if not emulator.answering():
                return  # a sleeping, unpowered or hung BMS keeps the bus silent too
            reading = emulator.live_state()
        for frame in frames_of(broadcast_of(reading, self.discharge_voltage_limit_v)):
            self.bus.send(frame)
            self.sent += 1

    def _watch_keepalive(self, emulator: Any, now: float) -> None:
        alive = self.last_keepalive is not None and now - self.last_keepalive < pc.KEEPALIVE_TIMEOUT_S
        if alive == self.inverter_alive:
            return
        self.inverter_alive = alive
        if self.last_keepalive is None:
            return  # never heard: no inverter yet, nothing was lost
        with emulator.lock:
            kind = "inverter_link_back" if alive else "inverter_link_lost"
            emulator.twin._board_event(0, "warning", {"warning": kind, "timeout_s": pc.KEEPALIVE_TIMEOUT_S})

    def close(self) -> None:
        self.bus.shutdown()


@dataclass
class _Round:
    limits: dict[str, float] | None = None
    soc: dict[str, float] | None = None
    measured: dict[str, float] | None = None
    alarms: tuple[frozenset[str], frozenset[str]] | None = None
    request: dict[str, bool] | None = None
    name: str | None = None

    def complete(self) -> bool:
        return None not in (self.limits, self.soc, self.measured, self.alarms, self.request)


class CanReader:
    """Reads a battery's broadcasts (``monitor --device pylontech-can:…``): a poll collects one
    round of messages within ``READ_WINDOW_S``; a silent bus is a failed poll, never old values.
    With ``keepalive`` it sends the inverter's 0x305 after each poll, so a battery that watches for
    an inverter keeps talking."""

    def __init__(self, port: str, keepalive: bool = True) -> None:
        interface, channel = parse_can_port(port)
        self.bus = open_bus(interface, channel)
        self.keepalive = keepalive
        self._name: str | None = None
        self._lock = threading.Lock()

    def read(self) -> PackReading:
        import can

        got = _Round(name=self._name)
        end = time.monotonic() + READ_WINDOW_S
        with self._lock:
            if self.keepalive:
                self.bus.send(can.Message(arbitration_id=pc.ID_KEEPALIVE, data=bytes(8), is_extended_id=False))
            # The name comes last in a round and never changes: waited for until first seen.
            while not (got.complete() and got.name is not None) and time.monotonic() < end:
                message = self.bus.recv(timeout=max(end - time.monotonic(), 0.0))
                if message is None or message.is_extended_id:
                    continue
                _take(got, message.arbitration_id, bytes(message.data))
        if not got.complete():
            raise TransportError(f"no complete round of {CAN_PROTOCOL} messages within {READ_WINDOW_S:g} s")
        self._name = got.name or self._name
        return _reading(got)

    def close(self) -> None:
        self.bus.shutdown()


def _take(got: _Round, ident: int, payload: bytes) -> None:
    try:
        if ident == pc.ID_LIMITS:
            got.limits = pc.decode_limits(payload)
        elif ident == pc.ID_SOC:
            got.soc = pc.decode_soc(payload)
        elif ident == pc.ID_MEASURED:
            got.measured = pc.decode_measured(payload)
        elif ident == pc.ID_ALARMS:
            got.alarms = pc.decode_alarms(payload)
        elif ident == pc.ID_REQUEST:
            got.request = pc.decode_request(payload)
        elif ident == pc.ID_NAME:
            got.name = pc.decode_name(payload).strip()
    except FrameError:
        return  # a damaged frame is skipped; the round waits for the next one


def _reading(got: _Round) -> PackReading:
    assert got.limits and got.soc and got.measured and got.alarms and got.request
    protections, warnings = got.alarms
    return PackReading(
        protocol=CAN_PROTOCOL,
        temperature_c=[got.measured["temperature_c"]],
        current_a=got.measured["current_a"],
        pack_v=got.measured["pack_v"],
        soc=got.soc["soc"],
        soh=got.soc["soh"],
        charge_fet=got.request["charge_enable"],
        discharge_fet=got.request["discharge_enable"],
        faults=sorted(pc.ALARM_READS_AS[a] for a in protections),
        warnings=sorted(pc.ALARM_READS_AS[a] for a in warnings),
        name=got.name,
        charge_current_limit_a=got.limits["charge_current_limit_a"],
        discharge_current_limit_a=got.limits["discharge_current_limit_a"],
        charge_voltage_limit_v=got.limits["charge_voltage_limit_v"],
    )
