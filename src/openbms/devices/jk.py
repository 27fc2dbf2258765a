"""JK BMS RS485 / UART "GPS port" protocol: the 0x4E 0x57 frame with id–value records.

Layout (public sources; the byte offsets below are confirmed by the example exchange in both):

* syssi/esphome-jk-bms ``docs/protocol-design-uart-ttl-gps-port.md`` — the register table (record id,
  byte count, meaning), the warning bits of 0x8B, the status bits of 0x8C and a recorded request and
  14-cell response (copied in ``tests/devices/vectors/jk.json``).
* syssi/esphome-jk-bms ``components/jk_modbus/jk_modbus.cpp`` — framing: length = bytes after the two
  start bytes, checksum = 16-bit sum of every byte before the 4-byte checksum field, whose upper two
  bytes are sent as zero ("crc unused"); frame source and frame type codes.
* syssi/esphome-jk-bms ``components/jk_bms/jk_bms.cpp`` — scales (mV, 10 mV, 10 mA, minutes for 0xB6),
  the "100 − value" negative-temperature rule, the current encoding of protocol version 0x01 and the
  signed (two's complement) low-temperature settings 0xA5–0xA8.

Frame::

    4E 57 | length u16 | terminal id u32 | command u8 | source u8 | transport type u8 |
    data | record number u32 | 0x68 | checksum u32 (upper 16 bits 0, lower = sum of all bytes before)

In a response the data is a run of records ``id value`` whose value length is fixed per id (table
``RECORDS``) except 0x79, which carries its own byte count. Lengths are not on the wire, so an id we do
not know makes the rest of the frame unreadable: that is a ``FrameError``, never a guess. In a request
the data is a register byte (0x00 = all) and, for a write, the value.

Current (0x84), positive = charging as everywhere in openbms: protocol version 0x01 (record 0xC0)
sends sign-magnitude with bit 15 set = charging, 10 mA per count (0x80D0 = +2.08 A, 0x07D0 = −20 A);
version 0x00 — the documented default, also assumed when 0xC0 is absent — sends ``10000 − I/10 mA``
(raw 9500 = +5 A charging, 11000 = −10 A discharging). Another version: the current is unknown (None).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Literal

from openbms.bms.events import FAULT_NAMES
from openbms.devices import model
from openbms.devices.errors import FrameError
from openbms.devices.fields import Field
from openbms.devices.framing import INCOMPLETE, Framing
from openbms.devices.model import AlarmBit, DeviceReading, VoltageScope, voltage_alarm

PROTOCOL = "jk"

START = b"\x4e\x57"
END = 0x68
_HEADER = 11  # start 2, length 2, terminal id 4, command, source, transport
_TRAILER = 9  # record number 4, end 1, checksum 4
MIN_FRAME_LEN = _HEADER + _TRAILER  # a frame with an empty data section

# Command word, frame source and frame ("transport") type codes (jk_modbus.cpp comments).
COMMAND_ACTIVATE = 0x01
COMMAND_WRITE = 0x02
COMMAND_READ = 0x03
COMMAND_PASSWORD = 0x05
COMMAND_READ_ALL = 0x06
SOURCE_BMS = 0x00
SOURCE_BLUETOOTH = 0x01
SOURCE_GPS = 0x02
SOURCE_COMPUTER = 0x03
TRANSPORT_READ = 0x00  # a request: "read data"
TRANSPORT_REPLY = 0x01
TRANSPORT_UPLOAD = 0x02  # "BMS active upload"
REGISTER_ALL = 0x00
# Values of record 0xC0: how the current (0x84) is encoded (jk_bms.cpp; see the module docstring).
PROTOCOL_V0 = 0x00
PROTOCOL_V1 = 0x01


class RecordId(IntEnum):
    """Every record id of the register table (protocol-design-uart-ttl-gps-port.md), by name."""

    CELLS = 0x79
    FET_TEMPERATURE = 0x80
    BOX_TEMPERATURE = 0x81
    BATTERY_TEMPERATURE = 0x82
    PACK_VOLTAGE = 0x83
    CURRENT = 0x84
    SOC = 0x85
    TEMPERATURE_SENSOR_COUNT = 0x86
    CYCLES = 0x87
    TOTAL_CYCLE_CAPACITY = 0x89
    CELL_COUNT = 0x8A
    ALARMS = 0x8B
    STATUS = 0x8C
    PACK_OVERVOLTAGE_PROTECTION = 0x8E
    PACK_UNDERVOLTAGE_PROTECTION = 0x8F
    CELL_OVERVOLTAGE_PROTECTION = 0x90
    CELL_OVERVOLTAGE_RELEASE = 0x91
    CELL_OVERVOLTAGE_DELAY = 0x92
    CELL_UNDERVOLTAGE_PROTECTION = 0x93
    CELL_UNDERVOLTAGE_RELEASE = 0x94
    CELL_UNDERVOLTAGE_DELAY = 0x95
    CELL_IMBALANCE_PROTECTION = 0x96
    DISCHARGE_OVERCURRENT_PROTECTION = 0x97
    DISCHARGE_OVERCURRENT_DELAY = 0x98
    CHARGE_OVERCURRENT_PROTECTION = 0x99
    CHARGE_OVERCURRENT_DELAY = 0x9A
    BALANCE_START = 0x9B
    BALANCE_TRIGGER_DELTA = 0x9C
    BALANCER_ENABLED = 0x9D
    FET_OVERTEMPERATURE_PROTECTION = 0x9E
    FET_OVERTEMPERATURE_RELEASE = 0x9F
    BOX_OVERTEMPERATURE_PROTECTION = 0xA0
    BOX_OVERTEMPERATURE_RELEASE = 0xA1
    TEMPERATURE_DIFFERENCE_PROTECTION = 0xA2
    CHARGE_OVERTEMPERATURE_PROTECTION = 0xA3
    DISCHARGE_OVERTEMPERATURE_PROTECTION = 0xA4
    CHARGE_UNDERTEMPERATURE_PROTECTION = 0xA5
    CHARGE_UNDERTEMPERATURE_RELEASE = 0xA6
    DISCHARGE_UNDERTEMPERATURE_PROTECTION = 0xA7
    DISCHARGE_UNDERTEMPERATURE_RELEASE = 0xA8
    CELL_COUNT_SETTING = 0xA9
    NOMINAL_CAPACITY = 0xAA
    CHARGE_FET_SWITCH = 0xAB
    DISCHARGE_FET_SWITCH = 0xAC
    CURRENT_CALIBRATION = 0xAD
    BOARD_ADDRESS = 0xAE
    BATTERY_TYPE = 0xAF
    SLEEP_WAIT = 0xB0
    LOW_CAPACITY_ALARM_SOC = 0xB1
    PASSWORD = 0xB2
    DEDICATED_CHARGER_SWITCH = 0xB3
    DEVICE_ID = 0xB4
    MANUFACTURE_DATE = 0xB5
    RUNTIME = 0xB6
    SOFTWARE_VERSION = 0xB7
    CURRENT_CALIBRATION_START = 0xB8
    ACTUAL_CAPACITY = 0xB9
    MANUFACTURER_ID = 0xBA
    RESTART = 0xBB
    FACTORY_RESET = 0xBC
    REMOTE_UPGRADE = 0xBD
    GPS_OFF_LOW_VOLTAGE = 0xBE
    GPS_ON_RECOVERY_VOLTAGE = 0xBF
    PROTOCOL_VERSION = 0xC0


# The ids the codec itself reads, under their old short names.
CELLS: Final = RecordId.CELLS
CURRENT: Final = RecordId.CURRENT
ALARMS: Final = RecordId.ALARMS
STATUS: Final = RecordId.STATUS
PROTOCOL_VERSION: Final = RecordId.PROTOCOL_VERSION

Kind = Literal["number", "temperature", "current", "text", "cells"]
Value = int | float | str | list[float] | None


@dataclass(frozen=True)
class Record:
    """What one record id means: name (with its SI unit), value length on the wire and how to read it.

    ``size`` is the fixed number of value bytes after the id; 0x79 (``kind="cells"``) is the one record
    whose value is preceded by its own byte count, so its ``size`` is 0 here.
    """

    name: str
    size: int
    kind: Kind = "number"
    fmt: str = ""
    scale: float = 1.0

    @property
    def field(self) -> Field:
        return Field(self.name, 0, self.fmt, self.scale)


def _u8(name: str, scale: float = 1.0) -> Record:
    return Record(name, 1, "number", "B", scale)


def _u16(name: str, scale: float = 1.0) -> Record:
    return Record(name, 2, "number", ">H", scale)


def _i16(name: str) -> Record:
    return Record(name, 2, "number", ">h")


def _u32(name: str, scale: float = 1.0) -> Record:
    return Record(name, 4, "number", ">I", scale)


def _temp(name: str) -> Record:
    return Record(name, 2, "temperature", ">H")


def _text(name: str, size: int) -> Record:
    return Record(name, size, "text")


# Record id -> meaning, from the register table of protocol-design-uart-ttl-gps-port.md (byte counts
# as listed there; scales as decoded in jk_bms.cpp). Names carry SI units; "soc" and the low-capacity
# alarm level are fractions 0..1 (docs/behaviour.md §1).
RECORDS: dict[int, Record] = {
    RecordId.CELLS: Record("cell_v", 0, "cells"),  # count byte (3 per cell), then cell number u8, mV u16
    RecordId.FET_TEMPERATURE: _temp("fet_temperature_c"),  # power tube (MOS)
    RecordId.BOX_TEMPERATURE: _temp("box_temperature_c"),  # "temperature in the battery box" = sensor 1
    RecordId.BATTERY_TEMPERATURE: _temp("battery_temperature_c"),  # sensor 2
    RecordId.PACK_VOLTAGE: _u16("pack_v", 0.01),
    RecordId.CURRENT: Record("current_a", 2, "current", ">H"),
    RecordId.SOC: _u8("soc", 0.01),
    RecordId.TEMPERATURE_SENSOR_COUNT: _u8("temperature_sensor_count"),
    RecordId.CYCLES: _u16("cycles"),
    RecordId.TOTAL_CYCLE_CAPACITY: _u32("total_cycle_capacity_ah"),
    RecordId.CELL_COUNT: _u16("cell_count"),
    RecordId.ALARMS: _u16("alarm_bits"),
    RecordId.STATUS: _u16("status_bits"),
    RecordId.PACK_OVERVOLTAGE_PROTECTION: _u16("pack_overvoltage_protection_v", 0.01),
    RecordId.PACK_UNDERVOLTAGE_PROTECTION: _u16("pack_undervoltage_protection_v", 0.01),
    RecordId.CELL_OVERVOLTAGE_PROTECTION: _u16("cell_overvoltage_protection_v", 0.001),
    RecordId.CELL_OVERVOLTAGE_RELEASE: _u16("cell_overvoltage_release_v", 0.001),
    RecordId.CELL_OVERVOLTAGE_DELAY: _u16("cell_overvoltage_delay_s"),
    RecordId.CELL_UNDERVOLTAGE_PROTECTION: _u16("cell_undervoltage_protection_v", 0.001),
    RecordId.CELL_UNDERVOLTAGE_RELEASE: _u16("cell_undervoltage_release_v", 0.001),
    RecordId.CELL_UNDERVOLTAGE_DELAY: _u16("cell_undervoltage_delay_s"),
    RecordId.CELL_IMBALANCE_PROTECTION: _u16("cell_imbalance_protection_v", 0.001),
    RecordId.DISCHARGE_OVERCURRENT_PROTECTION: _u16("discharge_overcurrent_protection_a"),
    RecordId.DISCHARGE_OVERCURRENT_DELAY: _u16("discharge_overcurrent_delay_s"),
    RecordId.CHARGE_OVERCURRENT_PROTECTION: _u16("charge_overcurrent_protection_a"),
    RecordId.CHARGE_OVERCURRENT_DELAY: _u16("charge_overcurrent_delay_s"),
    RecordId.BALANCE_START: _u16("balance_start_v", 0.001),
    RecordId.BALANCE_TRIGGER_DELTA: _u16("balance_trigger_delta_v", 0.001),
    RecordId.BALANCER_ENABLED: _u8("balancer_enabled"),
    RecordId.FET_OVERTEMPERATURE_PROTECTION: _u16("fet_overtemperature_protection_c"),
    RecordId.FET_OVERTEMPERATURE_RELEASE: _u16("fet_overtemperature_release_c"),
    RecordId.BOX_OVERTEMPERATURE_PROTECTION: _u16("box_overtemperature_protection_c"),
    RecordId.BOX_OVERTEMPERATURE_RELEASE: _u16("box_overtemperature_release_c"),
    RecordId.TEMPERATURE_DIFFERENCE_PROTECTION: _u16("temperature_difference_protection_c"),
    RecordId.CHARGE_OVERTEMPERATURE_PROTECTION: _u16("charge_overtemperature_protection_c"),
    RecordId.DISCHARGE_OVERTEMPERATURE_PROTECTION: _u16("discharge_overtemperature_protection_c"),
    RecordId.CHARGE_UNDERTEMPERATURE_PROTECTION: _i16("charge_undertemperature_protection_c"),  # signed, no 100 offset
    RecordId.CHARGE_UNDERTEMPERATURE_RELEASE: _i16("charge_undertemperature_release_c"),
    RecordId.DISCHARGE_UNDERTEMPERATURE_PROTECTION: _i16("discharge_undertemperature_protection_c"),
    RecordId.DISCHARGE_UNDERTEMPERATURE_RELEASE: _i16("discharge_undertemperature_release_c"),
    RecordId.CELL_COUNT_SETTING: _u8("cell_count_setting"),
    RecordId.NOMINAL_CAPACITY: _u32("nominal_capacity_ah"),
    RecordId.CHARGE_FET_SWITCH: _u8("charge_fet_switch"),
    RecordId.DISCHARGE_FET_SWITCH: _u8("discharge_fet_switch"),
    RecordId.CURRENT_CALIBRATION: _u16("current_calibration_a", 0.001),  # sent in mA
    RecordId.BOARD_ADDRESS: _u8("board_address"),
    RecordId.BATTERY_TYPE: _u8("battery_type"),  # 0 LFP, 1 ternary (NMC), 2 LTO
    RecordId.SLEEP_WAIT: _u16("sleep_wait_s"),
    RecordId.LOW_CAPACITY_ALARM_SOC: _u8("low_capacity_alarm_soc", 0.01),
    RecordId.PASSWORD: _text("password", 10),
    RecordId.DEDICATED_CHARGER_SWITCH: _u8("dedicated_charger_switch"),
    RecordId.DEVICE_ID: _text("device_id", 8),
    RecordId.MANUFACTURE_DATE: _text("manufacture_date", 4),
    RecordId.RUNTIME: _u32("runtime_s", 60.0),  # sent in minutes
    RecordId.SOFTWARE_VERSION: _text("software_version", 15),
    RecordId.CURRENT_CALIBRATION_START: _u8("current_calibration_start"),
    RecordId.ACTUAL_CAPACITY: _u32("actual_capacity_ah"),
    RecordId.MANUFACTURER_ID: _text("manufacturer_id", 24),
    # Write-only registers: never in a read-all answer, listed so their lengths are known.
    RecordId.RESTART: _u8("restart"),
    RecordId.FACTORY_RESET: _u8("factory_reset"),
    RecordId.REMOTE_UPGRADE: _u8("remote_upgrade"),
    RecordId.GPS_OFF_LOW_VOLTAGE: _u16("gps_off_low_voltage_v", 0.001),
    RecordId.GPS_ON_RECOVERY_VOLTAGE: _u16("gps_on_recovery_voltage_v", 0.001),
    RecordId.PROTOCOL_VERSION: _u8("protocol_version"),
}

# The records of a real board's read-all answer, in its order (the recorded 14-cell answer in
# tests/devices/vectors/jk.json): every readable id from 0x79 to 0xBA (0x88 and 0x8D are not
# in the table), then 0xC0: the table's ids in order without the write-only ones.
# Readers such as dbus-serialbattery look values up at fixed offsets of this layout.
WRITE_ONLY: frozenset[int] = frozenset(
    {
        RecordId.RESTART,
        RecordId.FACTORY_RESET,
        RecordId.REMOTE_UPGRADE,
        RecordId.GPS_OFF_LOW_VOLTAGE,
        RecordId.GPS_ON_RECOVERY_VOLTAGE,
    }
)
READ_ALL_RECORDS: tuple[int, ...] = tuple(rid for rid in RecordId if rid not in WRITE_ONLY)

# A frame holds each record at most once, so no real frame is longer than this: a longer length field
# is garbage (find_frame skips it instead of waiting for bytes that will never make sense).
MAX_FRAME_LEN = _HEADER + _TRAILER + 2 + 255 + sum(1 + r.size for i, r in RECORDS.items() if i != CELLS)


# 0x8B warning bits -> our names (bit order of the doc's table ^1 and of ERRORS[] in jk_bms.cpp).
# docs/behaviour.md §3 names go to DeviceReading.faults, the rest to unmapped_alarms.
# JK has one "battery over temperature" and one "battery low temperature" bit for both directions; the
# charge-side limits (lfp profile defaults 45 °C / 0 °C) are always passed before the discharge-side ones
# (60 °C / −20 °C), so the charge-side fault is the one the bit certainly implies. Whether discharge is
# blocked too shows in the discharge FET bit of 0x8C.
def _alarm(bit: int, text: str, name: str) -> AlarmBit:
    """A 0x8B bit: a docs/behaviour.md §3 name is a fault, any other name an unmapped alarm."""
    return AlarmBit(bit, text, fault=name) if name in FAULT_NAMES else AlarmBit(bit, text, unmapped=name)


ALARM_BITS: Final[tuple[AlarmBit, ...]] = (
    _alarm(0, "low capacity", "low_capacity"),  # a warning; no fault of ours for low SOC
    _alarm(1, "MOS tube over-temperature", "fet_overtemperature"),
    # Bits 2-3 come from the total voltage (0x8E / 0x8F) but name the direction they block: the one
    # pack-vs-cell policy (``model.voltage_alarm``) makes them the cell faults.
    voltage_alarm(2, "charging over-voltage", "over", VoltageScope.DIRECTION),
    voltage_alarm(3, "discharge under-voltage", "under", VoltageScope.DIRECTION),
    _alarm(4, "battery over-temperature", "charge_overtemperature"),  # see above
    _alarm(5, "charging over-current", "charge_overcurrent"),
    _alarm(6, "discharge over-current", "discharge_overcurrent"),
    _alarm(7, "cell pressure difference", "cell_imbalance"),  # cell voltage difference
    _alarm(8, "over-temperature in the battery box", "box_overtemperature"),  # sensor 1, not the cells'
    _alarm(9, "battery low temperature", "charge_undertemperature"),  # see above
    voltage_alarm(10, "monomer over-voltage", "over", VoltageScope.CELL),
    voltage_alarm(11, "monomer under-voltage", "under", VoltageScope.CELL),
    _alarm(12, "309_A protection", "protection_309_a"),  # undocumented meaning
    _alarm(13, "309_A protection", "protection_309_b"),  # the doc says "309_A" again; a distinct bit
    _alarm(14, "reserved", "reserved_bit_14"),
    _alarm(15, "reserved", "reserved_bit_15"),
)

FAULT_VOCABULARY = frozenset(FAULT_NAMES)

# 0x8C status bits (esphome-jk-bms protocol doc). Bits 4..15 are reserved.
STATUS_CHARGE_FET = 0
STATUS_DISCHARGE_FET = 1
STATUS_BALANCER = 2  # balance switch state (enabled), not "bleeding now"
# The doc calls bit 3 "battery dropped: 1 normal, 0 offline", but the doc's own recorded answer from
# a working board (tests/devices/vectors/jk.json) has 0x8C = 0x0007: bit 3 clear. We trust the
# recording: a healthy board leaves bit 3 at 0, and we neither rely on it nor send it.
STATUS_DROPPED = 3


@dataclass(frozen=True)
class JkFrame:
    """A decoded response: the envelope and the raw value bytes of every record, in wire order.

    Raw bytes keep ``encode_frame(decode_frame(x)) == x`` exact; ``values()`` gives SI values.
    """

    command: int
    source: int
    transport: int
    records: dict[int, bytes]
    record_number: int = 0
    terminal_id: int = 0

    @property
    def protocol_version(self) -> int:
        raw = self.records.get(PROTOCOL_VERSION)
        return raw[0] if raw else 0

    def value(self, record_id: int) -> Value:
        """The SI value of one record (the current needs the frame's own protocol version)."""
        raw = self.records.get(record_id)
        if raw is None:
            return None
        return decode_value(record_id, raw, self.protocol_version)

    def values(self) -> dict[str, Value]:
        """Every record by table name, for a monitor or log that shows all settings too."""
        return {RECORDS[rid].name: self.value(rid) for rid in self.records}


@dataclass(frozen=True)
class JkRequest:
    """A decoded request (for an emulator): what is asked for, and the value of a write."""

    command: int
    terminal_id: int = 0
    register: int = REGISTER_ALL
    value: bytes = b""
    source: int = SOURCE_COMPUTER
    transport: int = TRANSPORT_READ
    record_number: int = 0


# --- values -------------------------------------------------------------------------------------


def _record(record_id: int) -> Record:
    rec = RECORDS.get(record_id)
    if rec is None:
        raise FrameError(f"unknown JK record id 0x{record_id:02x}: its length is not known")
    return rec


def _current_from_raw(raw: int, version: int) -> float | None:
    if version == PROTOCOL_V1:
        magnitude = (raw & 0x7FFF) / 100
        return magnitude if raw & 0x8000 or magnitude == 0 else -magnitude
    if version == PROTOCOL_V0:
        return (10000 - raw) / 100
    return None


def _current_to_raw(current_a: float, version: int) -> int:
    counts = round(current_a * 100)
    if version == PROTOCOL_V1:
        raw = (0x8000 | counts) if counts >= 0 else -counts
        if abs(counts) > 0x7FFF:
            raise FrameError(f"current {current_a} A does not fit 15 bits of 10 mA")
        return raw
    if version == PROTOCOL_V0:
        raw = 10000 - counts
        if not 0 <= raw <= 0xFFFF:
            raise FrameError(f"current {current_a} A does not fit the 10000-offset encoding")
        return raw
    raise FrameError(f"unknown JK protocol version {version}: cannot encode the current")


def decode_value(record_id: int, raw: bytes, protocol_version: int = 0) -> Value:
    """One record's value in SI units: cells in cell-number order, text (latin-1) without NUL padding."""
    rec = _record(record_id)
    if rec.kind == "cells":
        if len(raw) % 3:
            raise FrameError(f"0x79 holds {len(raw)} bytes, not 3 per cell")
        cells = sorted((raw[i], int.from_bytes(raw[i + 1 : i + 3], "big")) for i in range(0, len(raw), 3))
        return [mv / 1000 for _, mv in cells]
    if len(raw) != rec.size:
        raise FrameError(f"record 0x{record_id:02x} ({rec.name}) has {len(raw)} bytes, not {rec.size}")
    if rec.kind == "text":
        return raw.decode("latin-1").rstrip("\x00")
    number = rec.field.decode(raw)
    if rec.kind == "temperature":  # 101 = −1 °C ... 140 = −40 °C
        return int(100 - number if number > 100 else number)
    if rec.kind == "current":
        return _current_from_raw(int(number), protocol_version)
    # Rounded to well below the resolution so 3050 mV reads 3.05, not 3.0500000000000003.
    return int(number) if rec.scale == 1 else round(number, 9)


def encode_value(record_id: int, value: Value | bytes, protocol_version: int = 0) -> bytes:
    """The raw bytes of one record value; ``bytes`` pass through (length checked)."""
    rec = _record(record_id)
    if isinstance(value, bytes):
        raw = value
    elif rec.kind == "cells":
        if not isinstance(value, list):
            raise FrameError("0x79 takes a list of cell voltages")
        millivolts = Field("cell_v", 0, ">H", 0.001)
        raw = b"".join(bytes([n]) + _encode_number(millivolts, v) for n, v in enumerate(value, 1))
    elif rec.kind == "text":
        if not isinstance(value, str):
            raise FrameError(f"{rec.name} takes text")
        try:
            text = value.encode("latin-1")
        except UnicodeEncodeError:
            raise FrameError(f"{rec.name}: {value!r} is not latin-1") from None
        if len(text) > rec.size:
            raise FrameError(f"{rec.name}: {value!r} is longer than {rec.size} bytes")
        raw = text.ljust(rec.size, b"\x00")
    elif rec.kind == "temperature":
        t = _finite(rec.name, value)
        if t > 100:
            raise FrameError(f"{rec.name}: {t} °C is above the 100 °C the encoding can carry")
        raw = _encode_number(rec.field, t if t >= 0 else 100 - t)
    elif rec.kind == "current":
        raw = struct.pack(">H", _current_to_raw(_finite(rec.name, value), protocol_version))
    else:
        raw = _encode_number(rec.field, _finite(rec.name, value))
    if rec.kind == "cells":
        if len(raw) % 3 or len(raw) > 255:
            raise FrameError(f"0x79 holds {len(raw)} bytes: not 3 per cell, or more than 85 cells")
    elif len(raw) != rec.size:
        raise FrameError(f"record 0x{record_id:02x} ({rec.name}) needs {rec.size} bytes, got {len(raw)}")
    return raw


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FrameError(f"{name} takes a finite number, not {value!r}")
    return float(value)


def _encode_number(field: Field, value: float) -> bytes:
    buffer = bytearray(field.size)
    field.encode_into(buffer, _finite(field.name, value))
    return bytes(buffer)


# --- frames -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Envelope:
    terminal_id: int
    command: int
    source: int
    transport: int
    data: bytes
    record_number: int


def _unwrap(frame: bytes) -> _Envelope:
    """Check everything but the data section: start, length, end byte and checksum."""
    if len(frame) < MIN_FRAME_LEN:
        raise FrameError(f"a JK frame has at least {MIN_FRAME_LEN} bytes, got {len(frame)}")
    if frame[:2] != START:
        raise FrameError(f"a JK frame starts with 4E 57, not {frame[:2].hex(' ')}")
    length = int.from_bytes(frame[2:4], "big")
    if length + 2 != len(frame):
        raise FrameError(f"length field says {length + 2} bytes, frame has {len(frame)}")
    if frame[-5] != END:
        raise FrameError(f"end byte is 0x{frame[-5]:02x}, not 0x68")
    checksum = int.from_bytes(frame[-4:], "big")
    expected = sum(frame[:-4]) & 0xFFFF
    if checksum != expected:
        raise FrameError(f"checksum 0x{checksum:08x}, computed 0x{expected:08x}")
    return _Envelope(
        terminal_id=int.from_bytes(frame[4:8], "big"),
        command=frame[8],
        source=frame[9],
        transport=frame[10],
        data=frame[_HEADER:-_TRAILER],
        record_number=int.from_bytes(frame[-9:-5], "big"),
    )


def _wrap(terminal_id: int, command: int, source: int, transport: int, data: bytes, record_number: int) -> bytes:
    for name, value, limit in (
        ("terminal id", terminal_id, 0xFFFFFFFF),
        ("command", command, 0xFF),
        ("source", source, 0xFF),
        ("transport", transport, 0xFF),
        ("record number", record_number, 0xFFFFFFFF),
    ):
        if not 0 <= value <= limit:
            raise FrameError(f"{name} {value} does not fit its field")
    length = 2 + (_HEADER - 4) + len(data) + _TRAILER
    if length > 0xFFFF:
        raise FrameError(f"data section of {len(data)} bytes does not fit a frame")
    head = START + struct.pack(">HIBBB", length, terminal_id, command, source, transport)
    body = head + data + struct.pack(">IB", record_number, END)
    return body + struct.pack(">I", sum(body) & 0xFFFF)


def _parse_records(data: bytes) -> dict[int, bytes]:
    records: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        rid = data[i]
        rec = _record(rid)
        if rid in records:
            raise FrameError(f"record 0x{rid:02x} appears twice")
        i += 1
        if rec.kind == "cells":
            if i >= len(data):
                raise FrameError("0x79 has no byte count")
            size = data[i]
            i += 1
            if size % 3:
                raise FrameError(f"0x79 holds {size} bytes, not 3 per cell")
        else:
            size = rec.size
        if i + size > len(data):
            raise FrameError(f"record 0x{rid:02x} needs {size} bytes, {len(data) - i} left")
        records[rid] = data[i : i + size]
        i += size
    return records


def decode_frame(frame: bytes | bytearray | memoryview) -> JkFrame:
    """Decode one complete response frame (exactly its bytes); FrameError for anything else."""
    env = _unwrap(bytes(frame))
    return JkFrame(
        command=env.command,
        source=env.source,
        transport=env.transport,
        records=_parse_records(env.data),
        record_number=env.record_number,
        terminal_id=env.terminal_id,
    )


def encode_frame(frame: JkFrame) -> bytes:
    """The wire bytes of a response; records go out in the order of ``frame.records``."""
    parts = []
    for rid, raw in frame.records.items():
        checked = encode_value(rid, raw)
        parts.append(bytes([rid, len(checked)]) + checked if rid == CELLS else bytes([rid]) + checked)
    return _wrap(frame.terminal_id, frame.command, frame.source, frame.transport, b"".join(parts), frame.record_number)


def encode_request(
    command: int = COMMAND_READ_ALL,
    terminal_id: int = 0,
    register: int = REGISTER_ALL,
    value: bytes = b"",
    source: int = SOURCE_COMPUTER,
    transport: int = TRANSPORT_READ,
    record_number: int = 0,
) -> bytes:
    """A request as a PC sends it; the defaults are the documented "read all data" request."""
    if not 0 <= register <= 0xFF:
        raise FrameError(f"register {register} does not fit a byte")
    return _wrap(terminal_id, command, source, transport, bytes([register]) + bytes(value), record_number)


def decode_request(frame: bytes | bytearray | memoryview) -> JkRequest:
    """Decode a request (what an emulated BMS receives): a register byte, then a write's value."""
    env = _unwrap(bytes(frame))
    if not env.data:
        raise FrameError("a JK request names a register; this one has no data")
    return JkRequest(
        command=env.command,
        terminal_id=env.terminal_id,
        register=env.data[0],
        value=env.data[1:],
        source=env.source,
        transport=env.transport,
        record_number=env.record_number,
    )


def _candidate(buffer: bytes, at: int) -> int | None:
    """End of the valid frame starting at ``at``; INCOMPLETE if it may be one still arriving; None if
    garbage. A length outside MIN_FRAME_LEN..MAX_FRAME_LEN is garbage at once, so noise that looks
    like a header never makes the scanner wait for bytes that cannot make sense."""
    if len(buffer) - at < 4:
        return INCOMPLETE
    total = int.from_bytes(buffer[at + 2 : at + 4], "big") + 2
    if not MIN_FRAME_LEN <= total <= MAX_FRAME_LEN:
        return None
    if len(buffer) - at < total:
        return INCOMPLETE
    try:
        _unwrap(buffer[at : at + total])
    except FrameError:
        return None
    return at + total


FRAMING: Final = Framing(START, _candidate)


def find_frame(buffer: bytes | bytearray | memoryview) -> tuple[bytes | None, int]:
    """The first complete, checksum-valid frame in ``buffer`` and how many bytes to drop
    (``Framing.find_frame``: resynchronises on 4E 57 and keeps a trailing 0x4E that may begin the
    next header). Progress: with ``len(buffer) >= MAX_FRAME_LEN`` a ``None`` answer always drops at
    least one byte."""
    return FRAMING.find_frame(buffer)


# --- reading ------------------------------------------------------------------------------------


def alarm_names(alarm_bits: int) -> tuple[list[str], list[str]]:
    """The set bits of 0x8B as (docs/behaviour.md §3 faults, unmapped alarms), each once, in bit order."""
    return model.alarm_names(ALARM_BITS, alarm_bits)


def to_reading(frame: JkFrame) -> DeviceReading:
    """Our view of a read-all answer. Records that are absent stay None.

    ``temperature_c`` is [box sensor (0x81), battery sensor (0x82)] — JK's sensors 1 and 2; the FET
    temperature (0x80) is not a cell temperature, so it is not in that list (``frame.value(0x80)``).
    ``balancing`` stays None: bit 2 of 0x8C says the balancer is enabled, not which cells bleed.
    ``remaining_ah`` stays None: the answer carries the SOC (0x85), not a remaining charge.
    ``name`` is the device id (0xB4), ``firmware`` the software version (0xB7).
    """

    def number(rid: int) -> float | None:
        v = frame.value(rid)
        return float(v) if isinstance(v, int | float) else None

    status = number(STATUS)
    status_bits = int(status) if status is not None else None
    alarm = number(ALARMS)
    faults, unmapped = alarm_names(int(alarm)) if alarm is not None else ([], [])
    cells = frame.value(CELLS)
    temperatures = [
        t for t in (number(RecordId.BOX_TEMPERATURE), number(RecordId.BATTERY_TEMPERATURE)) if t is not None
    ]
    cycles = number(RecordId.CYCLES)
    nominal = number(RecordId.NOMINAL_CAPACITY)
    name = frame.value(RecordId.DEVICE_ID)
    firmware = frame.value(RecordId.SOFTWARE_VERSION)
    return DeviceReading(
        protocol=PROTOCOL,
        cell_v=cells if isinstance(cells, list) else None,
        temperature_c=temperatures or None,
        fet_temperature_c=number(RecordId.FET_TEMPERATURE),
        current_a=number(CURRENT),
        pack_v=number(RecordId.PACK_VOLTAGE),
        soc=number(RecordId.SOC),
        charge_fet=None if status_bits is None else bool(status_bits >> STATUS_CHARGE_FET & 1),
        discharge_fet=None if status_bits is None else bool(status_bits >> STATUS_DISCHARGE_FET & 1),
        faults=faults,
        unmapped_alarms=unmapped,
        balancing=None,
        cycles=None if cycles is None else int(cycles),
        nominal_ah=nominal or None,
        name=(name.strip() or None) if isinstance(name, str) else None,
        firmware=(firmware.strip() or None) if isinstance(firmware, str) else None,
    )
