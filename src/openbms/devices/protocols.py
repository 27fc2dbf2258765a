"""Each protocol as the two ends of a wire: a client that reads a BMS, a server that answers like one.

The client sends the requests a monitor sends and assembles a ``DeviceReading``; the server (the
emulator's half) decodes a request and builds the replies a real board would give from a
``LiveState`` — the twin's values at that moment. Both use only the codec modules' functions, so
what the emulator says is exactly what the reader understands.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from openbms.devices import daly, jbd, jk
from openbms.devices.errors import FrameError
from openbms.devices.model import DeviceReading
from openbms.devices.transport import SerialTransport

FrameFinder = Callable[[bytes], tuple[bytes | None, int]]
# A write the server received: (what, fields) -> accepted? The emulator logs and decides.
ControlHook = Callable[[str, dict[str, object]], bool]


@dataclass(frozen=True)
class LiveState:
    """What an emulated board reports, in SI units (current positive charging, SOC 0..1)."""

    cell_v: list[float]
    temperature_c: list[float]
    fet_temperature_c: float
    current_a: float
    pack_v: float
    soc: float
    charge_fet: bool
    discharge_fet: bool
    faults: list[str]
    warnings: list[str]
    balancing_mask: int
    cycles: int
    remaining_ah: float
    nominal_ah: float
    name: str = "openbms twin"
    balancer_enabled: bool = True  # the profile's balancing switch, not "bleeding now"
    charger_present: bool = False  # the board sees a charger (its detect input, or charge current)
    load_present: bool = False  # the board sees a load (its detect input, or discharge current)


class Client(Protocol):
    protocol: str
    find_frame: FrameFinder

    def read(self, transport: SerialTransport) -> DeviceReading: ...


class Server(Protocol):
    protocol: str
    find_frame: FrameFinder

    def answer(self, frame: bytes, state: LiveState, control: ControlHook) -> list[bytes]: ...


def _mask(names: list[str], table: dict[int, str]) -> int:
    wanted = set(names)
    return sum(1 << bit for bit, name in table.items() if name in wanted)


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high) if math.isfinite(value) else low


# ----------------------------------------------------------------------------- JBD
class JbdClient:
    protocol = "jbd"
    find_frame: FrameFinder = staticmethod(jbd.find_frame)

    def __init__(self) -> None:
        self._name: str | None = None

    def _ask(self, transport: SerialTransport, register: int) -> bytes:
        frame = transport.request(jbd.encode_request(register), accept=lambda f: f[1] == register)
        reply = jbd.decode_reply(frame)
        if reply.status != jbd.STATUS_OK:
            raise FrameError(f"the BMS answered register 0x{register:02X} with error status 0x{reply.status:02X}")
        return reply.data

    def read(self, transport: SerialTransport) -> DeviceReading:
        info = jbd.decode_basic_info(self._ask(transport, 0x03))
        cells = jbd.decode_cells(self._ask(transport, 0x04))
        if self._name is None:
            self._name = jbd.decode_name(self._ask(transport, 0x05))
        return jbd.to_reading(info, cells, self._name)


class JbdServer:
    protocol = "jbd"
    find_frame: FrameFinder = staticmethod(jbd.find_frame)
    _BITS = {bit: alarm.name for bit, alarm in jbd.PROTECTION_BITS.items()}

    def answer(self, frame: bytes, state: LiveState, control: ControlHook) -> list[bytes]:
        request = jbd.decode_request(frame)
        if request.write:
            if request.register == 0xE1:
                charge_on, discharge_on = jbd.decode_fet_control(request.data)
                ok = control("fet", {"register": 0xE1, "charge_on": charge_on, "discharge_on": discharge_on})
            else:
                ok = control("write", {"register": request.register})
            return [jbd.encode_reply(request.register, b"", jbd.STATUS_OK if ok else 0x80)]
        if request.register == 0x03:
            info = jbd.BasicInfo(
                pack_v=round(_clip(state.pack_v, 0, 655.35), 2),
                current_a=round(_clip(state.current_a, -327.68, 327.67), 2),
                remaining_ah=round(_clip(state.remaining_ah, 0, 655.35), 2),
                nominal_ah=round(_clip(state.nominal_ah, 0, 655.35), 2),
                cycles=state.cycles,
                date_raw=(25 << 9) | (11 << 5) | 25,
                balance_mask=state.balancing_mask,
                protection=_mask(state.faults, self._BITS),
                software_version=0x10,
                soc=round(_clip(state.soc, 0, 1), 2),
                charge_fet=state.charge_fet,
                discharge_fet=state.discharge_fet,
                cell_count=len(state.cell_v),
                temperatures_c=[round(_clip(t, -273.1, 6280), 1) for t in state.temperature_c[:8]],
            )
            return [jbd.encode_reply(0x03, jbd.encode_basic_info(info))]
        if request.register == 0x04:
            return [jbd.encode_reply(0x04, jbd.encode_cells([round(_clip(v, 0, 65.535), 3) for v in state.cell_v]))]
        if request.register == 0x05:
            return [jbd.encode_reply(0x05, jbd.encode_name(state.name))]
        return [jbd.encode_reply(request.register, b"", 0x80)]


# ----------------------------------------------------------------------------- Daly
# Fixed answers where the twin has no equivalent (dbus-serialbattery ``daly.py`` asks for both at
# start-up: ``read_capacity`` 0x50, ``read_production_date`` 0x53). The twin's cells have no
# nominal voltage: 3.2 V is the usual LFP nominal (our default chemistry); a reader only shows it.
# The production date is the one our JBD emulation reports (2025-11-25).
DALY_NOMINAL_CELL_V = 3.2
DALY_PRODUCTION_DATE = daly.Details(2025, 11, 25)


def _extremes(values: Sequence[float]) -> tuple[int, int]:
    """0-based indices of the highest and the lowest value, the first of equals (as a board scans)."""
    high = max(range(len(values)), key=values.__getitem__)
    low = min(range(len(values)), key=values.__getitem__)
    return high, low


class DalyClient:
    protocol = "daly"
    find_frame: FrameFinder = staticmethod(daly.find_frame)

    def _ask(self, transport: SerialTransport, command: int, frames: int = 1) -> list[bytes]:
        def ours(frame: bytes) -> bool:
            return frame[2] == command

        first = transport.request(daly.encode_request(command), accept=ours)
        replies = [daly.decode_reply(first).data]
        for _ in range(frames - 1):
            replies.append(daly.decode_reply(transport.read_frame(accept=ours)).data)
        return replies

    def read(self, transport: SerialTransport) -> DeviceReading:
        pack = daly.decode_pack(self._ask(transport, daly.CMD_PACK)[0])
        fets = daly.decode_fets(self._ask(transport, daly.CMD_FETS)[0])
        status = daly.decode_status(self._ask(transport, daly.CMD_STATUS)[0])
        cell_frames = -(-status.cell_count // daly.CELLS_PER_FRAME)
        cells = daly.decode_cells(self._ask(transport, daly.CMD_CELLS, cell_frames), status.cell_count)
        temp_frames = -(-status.ntc_count // daly.TEMPERATURES_PER_FRAME)
        temps = (
            daly.decode_temperatures(self._ask(transport, daly.CMD_TEMPERATURES, temp_frames), status.ntc_count)
            if status.ntc_count
            else []
        )
        balance = daly.decode_balance(self._ask(transport, daly.CMD_BALANCE)[0])
        failures = daly.decode_failures(self._ask(transport, daly.CMD_FAILURES)[0])
        return daly.to_reading(
            pack, fets=fets, status=status, cells=cells, temperatures_c=temps, balance=balance, failures=failures
        )


class DalyServer:
    protocol = "daly"
    find_frame: FrameFinder = staticmethod(daly.find_frame)

    def answer(self, frame: bytes, state: LiveState, control: ControlHook) -> list[bytes]:
        request = daly.decode_request(frame)
        cmd = request.command
        if cmd in (daly.CMD_DISCHARGE_FET, daly.CMD_CHARGE_FET):
            # One command addresses one FET: only that one goes to the control hook. Filling in
            # the other from ``state`` (the FETs as they were before the twin's next step) made
            # a second write arriving within one step undo the first (DA 01 then D9 00 left both
            # off); the twin keeps the other FET's standing command instead.
            on = daly.decode_fet_switch(request.data)
            key = "charge_on" if cmd == daly.CMD_CHARGE_FET else "discharge_on"
            ok = control("fet", {"command": cmd, key: on})
            was = state.charge_fet if cmd == daly.CMD_CHARGE_FET else state.discharge_fet
            return [daly.encode_reply(cmd, bytes((int(on if ok else was),)))]
        if cmd == daly.CMD_PACK:
            pack = daly.PackStatus(
                pack_v=round(_clip(state.pack_v, 0, 6553.5), 1),
                acquisition_v=0.0,
                current_a=round(_clip(state.current_a, -3000.0, 3000.0), 1),
                soc=round(_clip(state.soc, 0, 1), 3),
            )
            return [daly.encode_reply(cmd, daly.encode_pack(pack))]
        if cmd == daly.CMD_FETS:
            mode = 1 if state.current_a > 0.5 else 2 if state.current_a < -0.5 else 0
            fets = daly.FetStatus(mode, state.charge_fet, state.discharge_fet, 1, round(state.remaining_ah, 3))
            return [daly.encode_reply(cmd, daly.encode_fets(fets))]
        if cmd == daly.CMD_STATUS:
            status = daly.StatusInfo(
                len(state.cell_v),
                len(state.temperature_c),
                state.charger_present,
                state.load_present,
                0,
                state.cycles,
            )
            return [daly.encode_reply(cmd, daly.encode_status(status))]
        if cmd == daly.CMD_CELL_EXTREMES:
            if not state.cell_v:
                return []
            volts = [round(_clip(v, 0, 65.535), 3) for v in state.cell_v]
            high, low = _extremes(volts)
            cells = daly.CellExtremes(volts[high], high + 1, volts[low], low + 1)
            return [daly.encode_reply(cmd, daly.encode_cell_extremes(cells))]
        if cmd == daly.CMD_TEMPERATURE_EXTREMES:
            if not state.temperature_c:
                return []  # a board without sensors has no extremes to give
            temps = [round(_clip(t, -40, 215)) for t in state.temperature_c]
            high, low = _extremes(temps)
            extremes = daly.TemperatureExtremes(temps[high], high + 1, temps[low], low + 1)
            return [daly.encode_reply(cmd, daly.encode_temperature_extremes(extremes))]
        if cmd == daly.CMD_RATED:
            rated = daly.Rated(round(_clip(state.nominal_ah, 0, 4294967.295), 3), DALY_NOMINAL_CELL_V)
            return [daly.encode_reply(cmd, daly.encode_rated(rated))]
        if cmd == daly.CMD_DETAILS:
            return [daly.encode_reply(cmd, daly.encode_details(DALY_PRODUCTION_DATE))]
        if cmd == daly.CMD_BATTERY_CODE:
            return [daly.encode_reply(cmd, p) for p in daly.encode_battery_code(state.name)]
        if cmd == daly.CMD_CELLS:
            payloads = daly.encode_cells([round(_clip(v, 0, 65.535), 3) for v in state.cell_v])
            return [daly.encode_reply(cmd, p) for p in payloads]
        if cmd == daly.CMD_TEMPERATURES:
            payloads = daly.encode_temperatures([round(_clip(t, -40, 215)) for t in state.temperature_c])
            return [daly.encode_reply(cmd, p) for p in payloads]
        if cmd == daly.CMD_BALANCE:
            return [daly.encode_reply(cmd, daly.encode_balance(state.balancing_mask))]
        if cmd == daly.CMD_FAILURES:
            return [daly.encode_reply(cmd, daly.encode_failures(daly.Failures(self._flags(state))))]
        return []

    @staticmethod
    def _flags(state: LiveState) -> int:
        flags = 0
        for (byte, bit), alarm in daly.FAILURE_BITS.items():
            level_two = alarm.fault is not None and alarm.fault in state.faults
            warned = alarm.unmapped is not None and alarm.unmapped.removeprefix("warning:") in state.warnings
            if level_two or (warned and alarm.unmapped is not None and alarm.unmapped.startswith("warning:")):
                flags |= 1 << (8 * byte + bit)
        return flags


# ----------------------------------------------------------------------------- JK
JK_CHARGE_SWITCH = 0xAB  # "charging MOS tube switch" parameter record
JK_DISCHARGE_SWITCH = 0xAC


class JkClient:
    protocol = "jk"
    find_frame: FrameFinder = staticmethod(jk.find_frame)

    def read(self, transport: SerialTransport) -> DeviceReading:
        frame = transport.request(jk.encode_request(), accept=lambda f: f[8] == jk.COMMAND_READ_ALL)
        return jk.to_reading(jk.decode_frame(frame))


class JkServer:
    protocol = "jk"
    find_frame: FrameFinder = staticmethod(jk.find_frame)
    _BITS = dict(enumerate(jk.ALARM_BITS))

    def answer(self, frame: bytes, state: LiveState, control: ControlHook) -> list[bytes]:
        request = jk.decode_request(frame)
        if request.command == jk.COMMAND_WRITE and request.register in (JK_CHARGE_SWITCH, JK_DISCHARGE_SWITCH):
            # One record addresses one FET; only that one goes to the hook (see DalyServer: the
            # other taken from ``state`` let a quick second write undo the first).
            on = bool(request.value[:1] == b"\x01")
            key = "charge_on" if request.register == JK_CHARGE_SWITCH else "discharge_on"
            ok = control("fet", {"register": request.register, key: on})
            return [self._frame(request.command, {request.register: b"\x01" if ok else b"\x00"})]
        if request.command == jk.COMMAND_WRITE:
            ok = control("write", {"register": request.register})
            return [self._frame(request.command, {})] if ok else []
        if request.command != jk.COMMAND_READ_ALL:
            return []
        status = self.status_bits(state)
        version = 1
        values: dict[int, object] = {
            jk.CELLS: [round(_clip(v, 0, 65.535), 3) for v in state.cell_v],
            0x80: round(_clip(state.fet_temperature_c, -99, 100)),
            0x81: round(_clip(max(state.temperature_c, default=25.0), -99, 100)),
            0x82: round(_clip(min(state.temperature_c, default=25.0), -99, 100)),
            0x83: round(_clip(state.pack_v, 0, 655.35), 2),
            jk.CURRENT: round(_clip(state.current_a, -327.67, 327.67), 2),
            0x85: round(_clip(state.soc, 0, 1), 2),
            0x87: state.cycles,
            0x8A: len(state.cell_v),
            jk.ALARMS: _mask(state.faults, self._BITS),
            jk.STATUS: status,
            jk.PROTOCOL_VERSION: version,
        }
        records = {rid: jk.encode_value(rid, value, version) for rid, value in values.items()}  # type: ignore[arg-type]
        return [self._frame(jk.COMMAND_READ_ALL, records)]

    @staticmethod
    def status_bits(state: LiveState) -> int:
        """0x8C as a real board sends it: the two FETs and the balance switch (bit 2), nothing else.

        A healthy board with both FETs on and its balancer enabled answers 0x0007 (the recorded frame
        in tests/devices/vectors/jk.json). Bit 3 stays clear as it does there: dbus-serialbattery reads
        the flags as characters 2, 1, 0 of the binary numeral padded to three digits, so a set bit 3
        shifts each flag one place and a twin with discharge on reads as discharge off.
        """
        return (
            state.charge_fet << jk.STATUS_CHARGE_FET
            | state.discharge_fet << jk.STATUS_DISCHARGE_FET
            | state.balancer_enabled << jk.STATUS_BALANCER
        )

    @staticmethod
    def _frame(command: int, records: dict[int, bytes]) -> bytes:
        return jk.encode_frame(
            jk.JkFrame(command=command, source=jk.SOURCE_BMS, transport=jk.TRANSPORT_REPLY, records=records)
        )


CLIENTS: dict[str, type[JbdClient] | type[DalyClient] | type[JkClient]] = {
    "jbd": JbdClient,
    "daly": DalyClient,
    "jk": JkClient,
}
SERVERS: dict[str, type[JbdServer] | type[DalyServer] | type[JkServer]] = {
    "jbd": JbdServer,
    "daly": DalyServer,
    "jk": JkServer,
}
