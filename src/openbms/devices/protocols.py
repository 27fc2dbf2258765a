"""Each protocol as the two ends of a wire: a client that reads a BMS, a server that answers like one.

The client sends the requests a monitor sends and assembles a ``DeviceReading``; the server (the
emulator's half) decodes a request and builds the replies a real board would give from a
``LiveState`` (a ``PackReading``) — the twin's values at that moment. Both use only the codec modules' functions, so
what the emulator says is exactly what the reader understands.

How to add a fourth protocol (the three here are the pattern; each piece is shared, not copied):

1. A codec module ``devices/<name>.py`` with a field table (``fields.Field`` rows) per register or record.
2. An alarm table: a module-level tuple of ``model.AlarmBit`` rows, voltage bits via ``model.voltage_alarm``.
3. A frame candidate function and ``FRAMING = framing.Framing(start, candidate)``; its ``find_frame`` scans.
4. A client here (requests, ``model.alarm_names`` on the alarm word, a ``DeviceReading``) in ``CLIENTS``.
5. A server here (``model.alarm_word`` for the alarms, the replies a board sends) in ``SERVERS``.
"""

from __future__ import annotations

import datetime
import functools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from openbms.bms.profile import Profile
from openbms.bms.reading import PackReading
from openbms.devices import daly, jbd, jk
from openbms.devices.errors import FrameError
from openbms.devices.framing import FrameFinder
from openbms.devices.model import DeviceReading, alarm_word
from openbms.devices.transport import SerialTransport, TransportError
from openbms.profiles import load_profile

# A write the server received: (what, fields) -> accepted? The emulator logs and decides.
ControlHook = Callable[[str, dict[str, object]], bool]
_T = TypeVar("_T")


@dataclass(frozen=True)
class BoardSettings:
    """The board's configured limits in SI units (volts, amps, °C, seconds): what a JK read-all sends
    as its settings records. ``board_settings`` takes them from the twin's BMS profile."""

    cell_overvoltage_v: float
    cell_overvoltage_release_v: float
    cell_overvoltage_delay_s: float
    cell_undervoltage_v: float
    cell_undervoltage_release_v: float
    cell_undervoltage_delay_s: float
    cell_imbalance_v: float
    discharge_overcurrent_a: float
    discharge_overcurrent_delay_s: float
    charge_overcurrent_a: float
    charge_overcurrent_delay_s: float
    balance_start_v: float
    balance_trigger_delta_v: float
    fet_overtemperature_c: float
    fet_overtemperature_release_c: float
    charge_overtemperature_c: float
    discharge_overtemperature_c: float
    charge_undertemperature_c: float
    charge_undertemperature_release_c: float
    discharge_undertemperature_c: float
    discharge_undertemperature_release_c: float
    sleep_delay_s: float
    chemistry: str = "lfp"


def board_settings(profile: Profile, capacity_ah: float, chemistry: str = "lfp") -> BoardSettings:
    """The profile's thresholds as a board stores them: current thresholds (C-rates) times the
    capacity. A protection the profile lacks falls back to the built-in LFP profile's value."""
    fallback = _lfp_profile().protections

    def prot(name: str, attr: str) -> float:
        for table in (profile.protections, fallback):
            value = getattr(table[name], attr) if name in table else None
            if value is not None:
                return float(value)
        raise ValueError(f"no {name}.{attr} in the profile or the LFP default")

    return BoardSettings(
        cell_overvoltage_v=prot("cell_overvoltage", "trip_v"),
        cell_overvoltage_release_v=prot("cell_overvoltage", "release_v"),
        cell_overvoltage_delay_s=prot("cell_overvoltage", "trip_delay_s"),
        cell_undervoltage_v=prot("cell_undervoltage", "trip_v"),
        cell_undervoltage_release_v=prot("cell_undervoltage", "release_v"),
        cell_undervoltage_delay_s=prot("cell_undervoltage", "trip_delay_s"),
        cell_imbalance_v=prot("cell_imbalance", "trip_v"),
        discharge_overcurrent_a=prot("discharge_overcurrent", "trip_c_rate") * capacity_ah,
        discharge_overcurrent_delay_s=prot("discharge_overcurrent", "trip_delay_s"),
        charge_overcurrent_a=prot("charge_overcurrent", "trip_c_rate") * capacity_ah,
        charge_overcurrent_delay_s=prot("charge_overcurrent", "trip_delay_s"),
        balance_start_v=profile.balancing.min_cell_v,
        balance_trigger_delta_v=profile.balancing.threshold_v,
        fet_overtemperature_c=prot("fet_overtemperature", "trip_c"),
        fet_overtemperature_release_c=prot("fet_overtemperature", "release_c"),
        charge_overtemperature_c=prot("charge_overtemperature", "trip_c"),
        discharge_overtemperature_c=prot("discharge_overtemperature", "trip_c"),
        charge_undertemperature_c=prot("charge_undertemperature", "trip_c"),
        charge_undertemperature_release_c=prot("charge_undertemperature", "release_c"),
        discharge_undertemperature_c=prot("discharge_undertemperature", "trip_c"),
        discharge_undertemperature_release_c=prot("discharge_undertemperature", "release_c"),
        sleep_delay_s=profile.sleep.delay_s,
        chemistry=chemistry,
    )


@functools.cache
def _lfp_profile() -> Profile:
    return load_profile("lfp")


# What an emulated board reports: the twin's reading, as the board sees it (``Emulator.live_state``).
# One type with what a device decodes to; a value the reading leaves unknown is answered with the
# board's default (0, an empty list, the name below). The board's configured limits are no part
# of a reading: a server is built with them (``settings``).
LiveState = PackReading
BOARD_NAME = "openbms twin"  # the name a board answers with when the reading names none
# The production date every emulated board reports (JBD 0x03, Daly 0x53, JK 0xB5 as YYMM).
PRODUCTION_DATE = datetime.date(2025, 11, 25)


class Client(Protocol):
    protocol: str
    find_frame: FrameFinder

    def read(self, transport: SerialTransport) -> DeviceReading: ...


class Server(Protocol):
    protocol: str
    find_frame: FrameFinder

    def __init__(self, settings: BoardSettings | None = None) -> None: ...

    def answer(self, frame: bytes, state: LiveState, control: ControlHook) -> list[bytes]: ...


def _clip(value: float | None, low: float, high: float) -> float:
    """``value`` within [low, high]; unknown or not finite: ``low``."""
    return min(max(value, low), high) if value is not None and math.isfinite(value) else low


def _latin1(text: str, size: int) -> str:
    """``text`` cut to the ``size`` bytes a fixed-width latin-1 record holds."""
    return text.encode("latin-1", "replace")[:size].decode("latin-1")


def _num(value: float | None) -> float:
    """A value the reading leaves unknown counts as 0 on the wire."""
    return 0.0 if value is None else value


# ----------------------------------------------------------------------------- JBD
JBD_SOFTWARE_VERSION = 0x10  # what an emulated JBD reports: "1.0" (``jbd.software_version``)


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

    def _write(self, transport: SerialTransport, frame: bytes, register: int) -> bool:
        reply = jbd.decode_reply(transport.request(frame, accept=lambda f: f[1] == register))
        return reply.status == jbd.STATUS_OK

    def set_fets(self, transport: SerialTransport, charge_on: bool, discharge_on: bool) -> bool:
        """Switch the FETs (register 0xE1, inside a factory-mode session as the Xiaoxiang app
        does it: enter, write, leave without saving). True when the board accepted the write."""
        enter = jbd.encode_write(jbd.REG_ENTER_FACTORY, jbd.ENTER_FACTORY)
        if not self._write(transport, enter, jbd.REG_ENTER_FACTORY):
            return False
        try:
            return self._write(transport, jbd.encode_fet_control(charge_on, discharge_on), jbd.REG_FET_CONTROL)
        finally:
            self._write(transport, jbd.encode_write(jbd.REG_EXIT_FACTORY, jbd.EXIT_FACTORY), jbd.REG_EXIT_FACTORY)

    def read(self, transport: SerialTransport) -> DeviceReading:
        info = jbd.decode_basic_info(self._ask(transport, jbd.REG_BASIC_INFO))
        cells = jbd.decode_cells(self._ask(transport, jbd.REG_CELLS))
        if self._name is None:
            self._name = jbd.decode_name(self._ask(transport, jbd.REG_NAME))
        return jbd.to_reading(info, cells, self._name)


class JbdServer:
    protocol = "jbd"
    find_frame: FrameFinder = staticmethod(jbd.find_frame)

    def __init__(self, settings: BoardSettings | None = None) -> None:
        self.settings = settings  # None: the built-in LFP profile's, at the reading's nominal_ah

    def _settings(self, state: LiveState) -> BoardSettings:
        return self.settings or board_settings(_lfp_profile(), _num(state.nominal_ah))

    def answer(self, frame: bytes, state: LiveState, control: ControlHook) -> list[bytes]:
        request = jbd.decode_request(frame)
        if request.write:
            if self._factory_session(request.register, request.data):
                # Entering or leaving factory mode writes no setting (the twin takes none unless
                # control is allowed, through the hook below): a reader that opens it only to read
                # settings, as dbus-serialbattery does at start-up, must not be refused.
                return [jbd.encode_reply(request.register, b"")]
            if request.register == jbd.REG_FET_CONTROL:
                charge_on, discharge_on = jbd.decode_fet_control(request.data)
                fields: dict[str, object] = {
                    "register": jbd.REG_FET_CONTROL,
                    "charge_on": charge_on,
                    "discharge_on": discharge_on,
                }
                ok = control("fet", fields)
            else:
                ok = control("write", {"register": request.register})
            return [jbd.encode_reply(request.register, b"", jbd.STATUS_OK if ok else jbd.STATUS_ERROR)]
        if request.register == jbd.REG_BASIC_INFO:
            info = jbd.BasicInfo(
                pack_v=round(_clip(state.pack_v, 0, 655.35), 2),
                current_a=round(_clip(state.current_a, -327.68, 327.67), 2),
                remaining_ah=round(_clip(state.remaining_ah, 0, 655.35), 2),
                nominal_ah=round(_clip(state.nominal_ah, 0, 655.35), 2),
                cycles=state.cycles or 0,
                date_raw=jbd.encode_date(PRODUCTION_DATE),
                balance_mask=state.balancing_mask,
                protection=alarm_word(jbd.PROTECTION_ALARMS, state.faults, state.warnings or []),
                software_version=JBD_SOFTWARE_VERSION,
                soc=round(_clip(state.soc, 0, 1), 2),
                charge_fet=bool(state.charge_fet),
                discharge_fet=bool(state.discharge_fet),
                cell_count=len(state.cell_v or []),
                temperatures_c=[round(_clip(t, -273.1, 6280), 1) for t in (state.temperature_c or [])[:8]],
            )
            return [jbd.encode_reply(jbd.REG_BASIC_INFO, jbd.encode_basic_info(info))]
        if request.register == jbd.REG_CELLS:
            volts = [round(_clip(v, 0, 65.535), 3) for v in state.cell_v or []]
            return [jbd.encode_reply(jbd.REG_CELLS, jbd.encode_cells(volts))]
        if request.register == jbd.REG_NAME:
            return [jbd.encode_reply(jbd.REG_NAME, jbd.encode_name(state.name or BOARD_NAME))]
        setting = self._setting(request.register, state)
        if setting is not None:
            return [jbd.encode_reply(request.register, setting)]
        return [jbd.encode_reply(request.register, b"", jbd.STATUS_ERROR)]

    @staticmethod
    def _factory_session(register: int, data: bytes) -> bool:
        if register == jbd.REG_ENTER_FACTORY:
            return data == jbd.ENTER_FACTORY
        return register == jbd.REG_EXIT_FACTORY and data in (jbd.EXIT_FACTORY, jbd.EXIT_FACTORY_SAVE)

    def _setting(self, register: int, state: LiveState) -> bytes | None:
        """The EEPROM settings a reader asks for, from the twin's profile. Answered in or out of
        factory mode (the emulator keeps no session state)."""
        s = self._settings(state)
        if register == jbd.REG_CYCLE_CAP:
            return struct.pack(">H", round(_clip(state.nominal_ah, 0, 655.35) * 100))
        if register == jbd.REG_CHGOC:
            return struct.pack(">h", round(_clip(s.charge_overcurrent_a, 0, 327.67) * 100))
        if register == jbd.REG_DSGOC:
            return struct.pack(">h", -round(_clip(s.discharge_overcurrent_a, 0, 327.68) * 100))
        if register == jbd.REG_FUNC_CONFIG:
            balance = jbd.FUNC_BALANCE_EN | jbd.FUNC_CHG_BALANCE_EN
            return struct.pack(">H", balance if state.balancer_enabled is not False else 0)
        return None


# ----------------------------------------------------------------------------- Daly
# Fixed answers where the twin has no equivalent (dbus-serialbattery ``daly.py`` asks for both at
# start-up: ``read_capacity`` 0x50, ``read_production_date`` 0x53). The twin's cells have no
# nominal voltage: 3.2 V is the usual LFP nominal (our default chemistry); a reader only shows it.
# The production date is the one every emulated board reports.
DALY_NOMINAL_CELL_V = 3.2
DALY_PRODUCTION_DATE = daly.Details(PRODUCTION_DATE.year, PRODUCTION_DATE.month, PRODUCTION_DATE.day)


def _extremes(values: Sequence[float]) -> tuple[int, int]:
    """0-based indices of the highest and the lowest value, the first of equals (as a board scans)."""
    high = max(range(len(values)), key=values.__getitem__)
    low = min(range(len(values)), key=values.__getitem__)
    return high, low


class DalyClient:
    protocol = "daly"
    find_frame: FrameFinder = staticmethod(daly.find_frame)

    def __init__(self) -> None:
        # Rated values (0x50) and battery code (0x57) do not change: asked once, as
        # dbus-serialbattery does at start-up. A board that does not answer them is read without
        # them (None in the reading), and they are not asked again.
        self._static: tuple[daly.Rated | None, str | None] | None = None

    def _ask(self, transport: SerialTransport, command: int, frames: int = 1) -> list[bytes]:
        def ours(frame: bytes) -> bool:
            return frame[2] == command

        first = transport.request(daly.encode_request(command), accept=ours)
        replies = [daly.decode_reply(first).data]
        for _ in range(frames - 1):
            replies.append(daly.decode_reply(transport.read_frame(accept=ours)).data)
        return replies

    def set_fets(self, transport: SerialTransport, charge_on: bool, discharge_on: bool) -> bool:
        """Switch the FETs (0xDA charge, then 0xD9 discharge; each reply echoes the FET's state).
        True when both replies say what was asked."""
        ok = True
        for command, on in ((daly.CMD_CHARGE_FET, charge_on), (daly.CMD_DISCHARGE_FET, discharge_on)):

            def ours(frame: bytes, wanted: int = command) -> bool:
                return frame[2] == wanted

            reply = daly.decode_reply(transport.request(daly.encode_fet_switch(command, on), accept=ours))
            ok = ok and daly.decode_fet_switch(reply.data) == on
        return ok

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
        if self._static is None:
            self._static = (self._optional(transport, self._rated), self._optional(transport, self._code))
        rated, name = self._static
        return daly.to_reading(
            pack,
            fets=fets,
            status=status,
            cells=cells,
            temperatures_c=temps,
            balance=balance,
            failures=failures,
            rated=rated,
            name=name,
        )

    def _rated(self, transport: SerialTransport) -> daly.Rated:
        return daly.decode_rated(self._ask(transport, daly.CMD_RATED)[0])

    def _code(self, transport: SerialTransport) -> str:
        return daly.decode_battery_code(self._ask(transport, daly.CMD_BATTERY_CODE, daly.CODE_FRAMES))

    @staticmethod
    def _optional(transport: SerialTransport, ask: Callable[[SerialTransport], _T]) -> _T | None:
        try:
            return ask(transport)
        except (TransportError, FrameError):
            return None


class DalyServer:
    protocol = "daly"
    find_frame: FrameFinder = staticmethod(daly.find_frame)

    def __init__(self, settings: BoardSettings | None = None) -> None:
        self.settings = settings  # None: the built-in LFP profile's, at the reading's nominal_ah

    def _settings(self, state: LiveState) -> BoardSettings:
        return self.settings or board_settings(_lfp_profile(), _num(state.nominal_ah))

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
            was = bool(state.charge_fet if cmd == daly.CMD_CHARGE_FET else state.discharge_fet)
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
            current_a = _num(state.current_a)
            mode = 1 if current_a > 0.5 else 2 if current_a < -0.5 else 0
            fets = daly.FetStatus(
                mode, bool(state.charge_fet), bool(state.discharge_fet), 1, round(_num(state.remaining_ah), 3)
            )
            return [daly.encode_reply(cmd, daly.encode_fets(fets))]
        if cmd == daly.CMD_STATUS:
            status = daly.StatusInfo(
                len(state.cell_v or []),
                len(state.temperature_c or []),
                bool(state.charger_present),
                bool(state.load_present),
                0,
                state.cycles or 0,
            )
            return [daly.encode_reply(cmd, daly.encode_status(status))]
        if cmd == daly.CMD_CELL_EXTREMES:
            if not state.cell_v:
                return []
            volts = [round(_clip(v, 0, 65.535), 3) for v in state.cell_v or []]
            high, low = _extremes(volts)
            cells = daly.CellExtremes(volts[high], high + 1, volts[low], low + 1)
            return [daly.encode_reply(cmd, daly.encode_cell_extremes(cells))]
        if cmd == daly.CMD_TEMPERATURE_EXTREMES:
            if not state.temperature_c:
                return []  # a board without sensors has no extremes to give
            temps = [round(_clip(t, -40, 215)) for t in state.temperature_c or []]
            high, low = _extremes(temps)
            extremes = daly.TemperatureExtremes(temps[high], high + 1, temps[low], low + 1)
            return [daly.encode_reply(cmd, daly.encode_temperature_extremes(extremes))]
        if cmd == daly.CMD_RATED:
            rated = daly.Rated(round(_clip(state.nominal_ah, 0, 4294967.295), 3), DALY_NOMINAL_CELL_V)
            return [daly.encode_reply(cmd, daly.encode_rated(rated))]
        if cmd == daly.CMD_DETAILS:
            return [daly.encode_reply(cmd, daly.encode_details(DALY_PRODUCTION_DATE))]
        if cmd == daly.CMD_BATTERY_CODE:
            return [daly.encode_reply(cmd, p) for p in daly.encode_battery_code(state.name or BOARD_NAME)]
        if cmd == daly.CMD_CELLS:
            payloads = daly.encode_cells([round(_clip(v, 0, 65.535), 3) for v in state.cell_v or []])
            return [daly.encode_reply(cmd, p) for p in payloads]
        if cmd == daly.CMD_TEMPERATURES:
            payloads = daly.encode_temperatures([round(_clip(t, -40, 215)) for t in state.temperature_c or []])
            return [daly.encode_reply(cmd, p) for p in payloads]
        if cmd == daly.CMD_BALANCE:
            return [daly.encode_reply(cmd, daly.encode_balance(state.balancing_mask))]
        if cmd == daly.CMD_FAILURES:
            return [daly.encode_reply(cmd, daly.encode_failures(daly.Failures(self._flags(state))))]
        return []

    @staticmethod
    def _flags(state: LiveState) -> int:
        """0x98: level 2 for the twin's faults, level 1 for its warnings (``daly.FAILURE_ALARMS``)."""
        return alarm_word(daly.FAILURE_ALARMS, state.faults, state.warnings or [])


# ----------------------------------------------------------------------------- JK
Rec = jk.RecordId  # JK record ids by name
JK_CHARGE_SWITCH = Rec.CHARGE_FET_SWITCH  # "charging MOS tube switch" parameter record
JK_DISCHARGE_SWITCH = Rec.DISCHARGE_FET_SWITCH


class JkClient:
    protocol = "jk"
    find_frame: FrameFinder = staticmethod(jk.find_frame)

    def read(self, transport: SerialTransport) -> DeviceReading:
        frame = transport.request(jk.encode_request(), accept=lambda f: f[8] == jk.COMMAND_READ_ALL)
        return jk.to_reading(jk.decode_frame(frame))


class JkServer:
    protocol = "jk"
    find_frame: FrameFinder = staticmethod(jk.find_frame)

    def __init__(self, settings: BoardSettings | None = None) -> None:
        self.settings = settings  # None: the built-in LFP profile's, at the reading's nominal_ah

    def _settings(self, state: LiveState) -> BoardSettings:
        return self.settings or board_settings(_lfp_profile(), _num(state.nominal_ah))

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
        version = jk.PROTOCOL_V1
        values = self.read_all_values(state)
        records = {rid: jk.encode_value(rid, values[rid], version) for rid in jk.READ_ALL_RECORDS}
        return [self._frame(jk.COMMAND_READ_ALL, records)]

    # Values with no equivalent in the twin: plausible fixed values, most as the recorded board
    # (tests/devices/vectors/jk.json) sends them, so a reader sees an ordinary board.
    FIXED: dict[int, jk.Value] = {
        Rec.TEMPERATURE_SENSOR_COUNT: 2,  # box (0x81) and battery (0x82), as we send them
        Rec.BOX_OVERTEMPERATURE_PROTECTION: 100,  # °C (no box sensor limit in the profile)
        Rec.BOX_OVERTEMPERATURE_RELEASE: 100,  # °C (recorded board)
        Rec.TEMPERATURE_DIFFERENCE_PROTECTION: 20,  # °C (recorded board)
        Rec.CHARGE_FET_SWITCH: 1,  # setting: on (the live FET state is in 0x8C)
        Rec.DISCHARGE_FET_SWITCH: 1,  # setting: on
        Rec.CURRENT_CALIBRATION: 1.041,  # A (recorded board; the twin's shunt needs none)
        Rec.BOARD_ADDRESS: 1,  # (recorded board)
        Rec.LOW_CAPACITY_ALARM_SOC: 0.2,  # 20 % SOC (recorded board)
        Rec.PASSWORD: "123456",  # the JK factory default, as the recorded board
        Rec.DEDICATED_CHARGER_SWITCH: 0,  # off (recorded board)
        Rec.MANUFACTURE_DATE: PRODUCTION_DATE.strftime("%y%m"),  # YYMM, as our JBD and Daly report
        Rec.SOFTWARE_VERSION: "H6.X__S6.1.3S__",  # the recorded board's, a format readers know
        Rec.CURRENT_CALIBRATION_START: 0,  # off (recorded board)
        Rec.MANUFACTURER_ID: "OPENBMS-TWIN-0000000001",  # 24 bytes; a real one is a serial
    }
    BATTERY_TYPES = {"lfp": 0, "nmc": 1, "lto": 2}  # 0xAF: 0 LFP, 1 ternary, 2 LTO

    def read_all_values(self, state: LiveState) -> dict[int, jk.Value]:
        """Every record of a real board's read-all answer (``jk.READ_ALL_RECORDS``), in SI units:
        live values from the twin, settings from its profile, fixed values where it has none."""
        s = self._settings(state)
        series = len(state.cell_v or [])

        def u16(value: float, scale: float = 1.0) -> float:
            """Clipped to what an unsigned 16-bit record of this scale carries."""
            return round(_clip(value, 0, 0xFFFF * scale) / scale) * scale

        def celsius(value: float) -> int:
            return round(_clip(value, -32768, 32767))

        values: dict[int, jk.Value] = {
            jk.CELLS: [round(_clip(v, 0, 65.535), 3) for v in state.cell_v or []],
            Rec.FET_TEMPERATURE: round(_clip(state.fet_temperature_c, -99, 100)),
            Rec.BOX_TEMPERATURE: round(_clip(max(state.temperature_c or [], default=25.0), -99, 100)),
            Rec.BATTERY_TEMPERATURE: round(_clip(min(state.temperature_c or [], default=25.0), -99, 100)),
            Rec.PACK_VOLTAGE: round(u16(_num(state.pack_v), 0.01), 2),
            jk.CURRENT: round(_clip(state.current_a, -327.67, 327.67), 2),
            Rec.SOC: round(_clip(state.soc, 0, 1), 2),
            Rec.CYCLES: round(u16(state.cycles or 0)),
            # Total cycle capacity: the Ah discharged over the board's life, ~ cycles × capacity.
            Rec.TOTAL_CYCLE_CAPACITY: round(_clip((state.cycles or 0) * _num(state.nominal_ah), 0, 0xFFFFFFFF)),
            Rec.CELL_COUNT: series,
            jk.ALARMS: alarm_word(jk.ALARM_BITS, state.faults, state.warnings or []),
            jk.STATUS: self.status_bits(state),
            # pack limits = series × cell limit
            Rec.PACK_OVERVOLTAGE_PROTECTION: round(u16(series * s.cell_overvoltage_v, 0.01), 2),
            Rec.PACK_UNDERVOLTAGE_PROTECTION: round(u16(series * s.cell_undervoltage_v, 0.01), 2),
            Rec.CELL_OVERVOLTAGE_PROTECTION: round(u16(s.cell_overvoltage_v, 0.001), 3),
            Rec.CELL_OVERVOLTAGE_RELEASE: round(u16(s.cell_overvoltage_release_v, 0.001), 3),
            Rec.CELL_OVERVOLTAGE_DELAY: u16(math.ceil(s.cell_overvoltage_delay_s)),
            Rec.CELL_UNDERVOLTAGE_PROTECTION: round(u16(s.cell_undervoltage_v, 0.001), 3),
            Rec.CELL_UNDERVOLTAGE_RELEASE: round(u16(s.cell_undervoltage_release_v, 0.001), 3),
            Rec.CELL_UNDERVOLTAGE_DELAY: u16(math.ceil(s.cell_undervoltage_delay_s)),
            Rec.CELL_IMBALANCE_PROTECTION: round(u16(s.cell_imbalance_v, 0.001), 3),
            Rec.DISCHARGE_OVERCURRENT_PROTECTION: u16(s.discharge_overcurrent_a),
            Rec.DISCHARGE_OVERCURRENT_DELAY: u16(math.ceil(s.discharge_overcurrent_delay_s)),
            Rec.CHARGE_OVERCURRENT_PROTECTION: u16(s.charge_overcurrent_a),
            Rec.CHARGE_OVERCURRENT_DELAY: u16(math.ceil(s.charge_overcurrent_delay_s)),
            Rec.BALANCE_START: round(u16(s.balance_start_v, 0.001), 3),
            Rec.BALANCE_TRIGGER_DELTA: round(u16(s.balance_trigger_delta_v, 0.001), 3),
            Rec.BALANCER_ENABLED: int(state.balancer_enabled is not False),
            Rec.FET_OVERTEMPERATURE_PROTECTION: u16(s.fet_overtemperature_c),
            Rec.FET_OVERTEMPERATURE_RELEASE: u16(s.fet_overtemperature_release_c),
            Rec.CHARGE_OVERTEMPERATURE_PROTECTION: u16(s.charge_overtemperature_c),
            Rec.DISCHARGE_OVERTEMPERATURE_PROTECTION: u16(s.discharge_overtemperature_c),
            Rec.CHARGE_UNDERTEMPERATURE_PROTECTION: celsius(s.charge_undertemperature_c),
            Rec.CHARGE_UNDERTEMPERATURE_RELEASE: celsius(s.charge_undertemperature_release_c),
            Rec.DISCHARGE_UNDERTEMPERATURE_PROTECTION: celsius(s.discharge_undertemperature_c),
            Rec.DISCHARGE_UNDERTEMPERATURE_RELEASE: celsius(s.discharge_undertemperature_release_c),
            Rec.CELL_COUNT_SETTING: min(series, 0xFF),
            Rec.NOMINAL_CAPACITY: round(_clip(state.nominal_ah, 0, 0xFFFFFFFF)),
            Rec.BATTERY_TYPE: self.BATTERY_TYPES.get(s.chemistry.split("_")[0], 0),
            Rec.SLEEP_WAIT: u16(s.sleep_delay_s),
            Rec.DEVICE_ID: _latin1(state.name or BOARD_NAME, 8),
            Rec.RUNTIME: round(_clip(state.uptime_s, 0, 0xFFFFFFFF * 60) / 60) * 60,  # sent in minutes
            Rec.ACTUAL_CAPACITY: round(_clip(state.nominal_ah, 0, 0xFFFFFFFF)),  # actual capacity: the twin's
            jk.PROTOCOL_VERSION: jk.PROTOCOL_V1,
        }
        values.update(self.FIXED)
        return values

    @staticmethod
    def status_bits(state: LiveState) -> int:
        """0x8C as a real board sends it: the two FETs and the balance switch (bit 2), nothing else.

        A healthy board with both FETs on and its balancer enabled answers 0x0007 (the recorded frame
        in tests/devices/vectors/jk.json). Bit 3 stays clear as it does there: dbus-serialbattery reads
        the flags as characters 2, 1, 0 of the binary numeral padded to three digits, so a set bit 3
        shifts each flag one place and a twin with discharge on reads as discharge off.
        """
        return (
            bool(state.charge_fet) << jk.STATUS_CHARGE_FET
            | bool(state.discharge_fet) << jk.STATUS_DISCHARGE_FET
            | (state.balancer_enabled is not False) << jk.STATUS_BALANCER
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
