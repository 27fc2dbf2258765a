"""Daly smart BMS, UART / RS485 at 9600 8N1: fixed 13-byte frames.

Why this module exists: Daly boards are, with JBD, what most DIY packs carry; their UART port is
the monitoring link a user plugs in. We decode what they report onto our vocabulary
(``DeviceReading``, docs/behaviour.md §3 fault names) and encode the same frames so the twin can impersonate a
Daly board and the decoders can be tested against their own output.

Frame layout (Daly UART/485 protocol document as implemented in softwarecrash/Daly2MQTT
``src/daly-bms-uart.cpp``; cross-checked with Louisvdw/dbus-serialbattery
``etc/dbus-serialbattery/bms/daly.py``)::

    A5 | address | command | 08 | data[8] | checksum = sum(bytes 0..11) & 0xFF

The host addresses the board as 0x40 on UART/RS485 (0x80 through the BLE/"upper computer" port)
and the board answers from 0x01. Requests carry 8 data bytes too: zeros for reads, the switch
state for the FET commands. Multi-frame replies (0x95 cells, 0x96 temperatures) are a series of
such frames, each with its 1-based frame number in data[0].

Every decoder here raises ``FrameError`` for bad bytes and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from openbms.devices.errors import FrameError
from openbms.devices.fields import Field, bits, decode_fields, encode_fields
from openbms.devices.framing import INCOMPLETE, Framing
from openbms.devices.model import (
    WARNING_PREFIX,
    AlarmBit,
    DeviceReading,
    VoltageScope,
    VoltageSide,
    alarm_names,
    voltage_alarm,
)

BytesLike = bytes | bytearray | memoryview
T = TypeVar("T")

START: Final = 0xA5
HOST_ADDRESS: Final = 0x40  # UART / RS485 host
BLE_ADDRESS: Final = 0x80  # host behind the BLE module
BMS_ADDRESS: Final = 0x01  # every reply
REQUEST_ADDRESSES: Final = frozenset({HOST_ADDRESS, BLE_ADDRESS})
DATA_LEN: Final = 8
FRAME_LEN: Final = 13

CMD_RATED: Final = 0x50
CMD_DETAILS: Final = 0x53
CMD_BATTERY_CODE: Final = 0x57
CMD_PACK: Final = 0x90
CMD_CELL_EXTREMES: Final = 0x91
CMD_TEMPERATURE_EXTREMES: Final = 0x92
CMD_FETS: Final = 0x93
CMD_STATUS: Final = 0x94
CMD_CELLS: Final = 0x95
CMD_TEMPERATURES: Final = 0x96
CMD_BALANCE: Final = 0x97
CMD_FAILURES: Final = 0x98
CMD_DISCHARGE_FET: Final = 0xD9
CMD_CHARGE_FET: Final = 0xDA

CELLS_PER_FRAME: Final = 3
CODE_FRAMES: Final = 5  # 0x57: the battery code comes as 5 numbered frames of 7 characters
CODE_CHARS_PER_FRAME: Final = 7
TEMPERATURES_PER_FRAME: Final = 7
MAX_BALANCE_CELLS: Final = 48  # 6 bitmap bytes in 0x97

_CURRENT_ZERO: Final = 30000  # 0x90 current is offset by 30000 in 0.1 A
_CELSIUS_OFFSET: Final = -40.0  # every Daly temperature byte is degC + 40


def checksum(span: BytesLike) -> int:
    return sum(bytes(span)) & 0xFF


def _frame(address: int, command: int, data: BytesLike) -> bytes:
    payload = bytes(data)
    if len(payload) > DATA_LEN:
        raise FrameError(f"Daly payload of {len(payload)} bytes exceeds {DATA_LEN}")
    if not 0 <= command <= 0xFF:
        raise FrameError(f"Daly command {command} does not fit one byte")
    head = bytes((START, address, command, DATA_LEN)) + payload.ljust(DATA_LEN, b"\0")
    return head + bytes((checksum(head),))


def _unframe(frame: BytesLike) -> tuple[int, int, bytes]:
    """Check one complete frame; return address, command and the 8 data bytes."""
    raw = bytes(frame)
    if len(raw) != FRAME_LEN:
        raise FrameError(f"Daly frame is {len(raw)} bytes, not {FRAME_LEN}")
    if raw[0] != START:
        raise FrameError(f"Daly frame starts with 0x{raw[0]:02X}, not 0xA5")
    if raw[3] != DATA_LEN:
        raise FrameError(f"Daly length byte is {raw[3]}, not {DATA_LEN}")
    if raw[12] != checksum(raw[:12]):
        raise FrameError(f"Daly checksum 0x{raw[12]:02X}, expected 0x{checksum(raw[:12]):02X}")
    return raw[1], raw[2], raw[4:12]


def _decode(fields: Sequence[Field], data: BytesLike) -> dict[str, float]:
    """Decode 8 data bytes; 9 decimals drop the binary noise of raw x scale (3.3000000000000003)."""
    return {k: round(v, 9) for k, v in decode_fields(fields, _data(data)).items()}


def _data(data: BytesLike) -> bytes:
    raw = bytes(data)
    if len(raw) != DATA_LEN:
        raise FrameError(f"Daly data must be {DATA_LEN} bytes, got {len(raw)}")
    return raw


# --- requests and replies ----------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A host's request as the board (or our emulator) sees it."""

    command: int
    address: int
    data: bytes


@dataclass(frozen=True)
class Reply:
    """One 13-byte reply frame from the board (address 0x01)."""

    command: int
    data: bytes


def encode_request(command: int, data: BytesLike = b"", address: int = HOST_ADDRESS) -> bytes:
    """A request frame; ``data`` is zero-padded to 8 bytes (reads send all zeros)."""
    if address not in REQUEST_ADDRESSES:
        raise FrameError(f"0x{address:02X} is not a Daly host address")
    return _frame(address, command, data)


def decode_request(frame: BytesLike) -> Request:
    address, command, data = _unframe(frame)
    if address not in REQUEST_ADDRESSES:
        raise FrameError(f"Daly request from address 0x{address:02X}, not a host (0x40 / 0x80)")
    return Request(command=command, address=address, data=data)


def encode_reply(command: int, data: BytesLike) -> bytes:
    """A reply frame from the board; ``data`` is zero-padded to 8 bytes."""
    return _frame(BMS_ADDRESS, command, data)


def decode_reply(frame: BytesLike) -> Reply:
    address, command, data = _unframe(frame)
    if address != BMS_ADDRESS:
        raise FrameError(f"Daly reply from address 0x{address:02X}, not the board (0x01)")
    return Reply(command=command, data=data)


# --- 0xD9 / 0xDA: FET switches -----------------------------------------------------------------


def encode_fet_switch(command: int, on: bool, address: int = HOST_ADDRESS) -> bytes:
    """Request frame for 0xD9 (discharge FET) or 0xDA (charge FET): data[0] 1 = on, 0 = off."""
    if command not in (CMD_DISCHARGE_FET, CMD_CHARGE_FET):
        raise FrameError(f"0x{command:02X} is not a Daly FET command")
    return encode_request(command, bytes((int(on),)), address)


def decode_fet_switch(data: BytesLike) -> bool:
    """True when a 0xD9 / 0xDA request asks for the FET on; anything but 0 / 1 is malformed."""
    raw = _data(data)
    if raw[0] > 1:
        raise FrameError(f"Daly FET switch value {raw[0]} is neither 0 (off) nor 1 (on)")
    return raw[0] == 1


# --- 0x90: pack voltage, current, SOC ----------------------------------------------------------

# Sources disagree on the sign of the 0x90 current (see tests/devices/vectors/daly.json `note`):
# the vendor document's example is raw 30113 = 11.3 A *discharging*, and dbus-serialbattery
# computes (raw - 30000) / -10 with an INVERT_CURRENT_MEASUREMENT option; Daly2MQTT reports
# (raw - 30000) / 10 unchanged. We default to the document (raw above 30000 = discharge, so
# negative in our charge-positive convention) and make the opposite a per-device option.
_PACK_FIELDS: Final = (
    Field("pack_v", 0, ">H", 0.1),
    Field("acquisition_v", 2, ">H", 0.1),
    Field("soc", 6, ">H", 0.001),  # 0.1 % -> fraction
)
_CURRENT: Final = Field("current_a", 4, ">H", -0.1, _CURRENT_ZERO / 10)
_CURRENT_INVERTED: Final = Field("current_a", 4, ">H", 0.1, -_CURRENT_ZERO / 10)


@dataclass(frozen=True)
class PackStatus:
    pack_v: float
    acquisition_v: float  # the document's second total voltage ("acquisition"); 0 in its example
    current_a: float  # positive charging
    soc: float  # 0..1


def _pack_fields(invert_current: bool) -> tuple[Field, ...]:
    return (*_PACK_FIELDS, _CURRENT_INVERTED if invert_current else _CURRENT)


def decode_pack(data: BytesLike, *, invert_current: bool = False) -> PackStatus:
    """0x90. ``invert_current`` for boards that count raw > 30000 as charging."""
    values = _decode(_pack_fields(invert_current), data)
    return PackStatus(**values)


def encode_pack(status: PackStatus, *, invert_current: bool = False) -> bytes:
    fields = _pack_fields(invert_current)
    return encode_fields(fields, vars(status), DATA_LEN)


# --- 0x91 / 0x92: extremes ---------------------------------------------------------------------

# Layouts as read by Louisvdw/dbus-serialbattery ``etc/dbus-serialbattery/bms/daly.py``
# (``read_cell_voltage_range_data``: ``unpack_from(">hbhb")``, mV, 1-based cell numbers;
# ``read_temperature_range_data``: ``unpack_from(">bbbb")``, max, its sensor, min, its sensor, each
# temperature degC + 40) and by dreadnought/python-daly-bms ``dalybms/daly_bms.py``
# (``get_cell_voltage_range`` / ``get_temperature_range``: highest value and cell/sensor first).

_CELL_EXTREMES: Final = (
    Field("max_cell_v", 0, ">H", 0.001),
    Field("max_cell", 2, "B"),
    Field("min_cell_v", 3, ">H", 0.001),
    Field("min_cell", 5, "B"),
)


@dataclass(frozen=True)
class CellExtremes:
    max_cell_v: float
    max_cell: int  # 1-based
    min_cell_v: float
    min_cell: int


def decode_cell_extremes(data: BytesLike) -> CellExtremes:
    v = _decode(_CELL_EXTREMES, data)
    return CellExtremes(v["max_cell_v"], int(v["max_cell"]), v["min_cell_v"], int(v["min_cell"]))


def encode_cell_extremes(extremes: CellExtremes) -> bytes:
    return encode_fields(_CELL_EXTREMES, vars(extremes), DATA_LEN)


_TEMPERATURE_EXTREMES: Final = (
    Field("max_c", 0, "B", 1.0, _CELSIUS_OFFSET),
    Field("max_sensor", 1, "B"),
    Field("min_c", 2, "B", 1.0, _CELSIUS_OFFSET),
    Field("min_sensor", 3, "B"),
)


@dataclass(frozen=True)
class TemperatureExtremes:
    max_c: float
    max_sensor: int  # 1-based
    min_c: float
    min_sensor: int


def decode_temperature_extremes(data: BytesLike) -> TemperatureExtremes:
    v = _decode(_TEMPERATURE_EXTREMES, data)
    return TemperatureExtremes(v["max_c"], int(v["max_sensor"]), v["min_c"], int(v["min_sensor"]))


def encode_temperature_extremes(extremes: TemperatureExtremes) -> bytes:
    return encode_fields(_TEMPERATURE_EXTREMES, vars(extremes), DATA_LEN)


# --- 0x93: FET state and remaining capacity ----------------------------------------------------

_FETS: Final = (
    Field("state", 0, "B"),  # 0 idle, 1 charging, 2 discharging
    Field("charge_fet", 1, "B"),
    Field("discharge_fet", 2, "B"),
    Field("life", 3, "B"),  # the board's 0..255 heartbeat ("BMS life")
    Field("remaining_ah", 4, ">I", 0.001),  # mAh
)


@dataclass(frozen=True)
class FetStatus:
    state: int
    charge_fet: bool
    discharge_fet: bool
    life: int
    remaining_ah: float


def decode_fets(data: BytesLike) -> FetStatus:
    v = _decode(_FETS, data)
    return FetStatus(
        int(v["state"]), bool(v["charge_fet"]), bool(v["discharge_fet"]), int(v["life"]), v["remaining_ah"]
    )


def encode_fets(fets: FetStatus) -> bytes:
    return encode_fields(_FETS, vars(fets), DATA_LEN)


# --- 0x94: counts and cycles -------------------------------------------------------------------

# data[2] and data[3] are whole bytes, 0 or 1, not bits: dreadnought/python-daly-bms
# ``dalybms/daly_bms.py`` ``get_status`` names them "charger_running" / "load_running", and
# dbus-serialbattery ``daly.py`` ``read_status_data`` unpacks them as booleans (``">bb??bhx"``)
# into ``charger_connected`` / ``load_connected``. data[4] is the DIO byte: python-daly-bms reads
# bits 0..3 as DI1..DI4 and bits 4..7 as DO1..DO4.
_STATUS: Final = (
    Field("cell_count", 0, "B"),
    Field("ntc_count", 1, "B"),
    Field("charger", 2, "B"),  # 1 = charger connected
    Field("load", 3, "B"),  # 1 = load connected
    Field("dio", 4, "B"),  # digital I/O bits
    Field("cycles", 5, ">H"),
)


@dataclass(frozen=True)
class StatusInfo:
    cell_count: int
    ntc_count: int
    charger: bool
    load: bool
    dio: int
    cycles: int


def decode_status(data: BytesLike) -> StatusInfo:
    v = _decode(_STATUS, data)
    return StatusInfo(
        int(v["cell_count"]),
        int(v["ntc_count"]),
        bool(v["charger"]),
        bool(v["load"]),
        int(v["dio"]),
        int(v["cycles"]),
    )


def encode_status(status: StatusInfo) -> bytes:
    return encode_fields(_STATUS, vars(status), DATA_LEN)


# --- 0x50 / 0x53 / 0x57: rated values, production date, battery code ---------------------------

# Read once at start-up by dbus-serialbattery ``daly.py`` (the version with ``command_rated_params``,
# ``command_batt_details`` and ``command_batt_code``): ``read_capacity`` unpacks 0x50 as
# ``">LL"`` (rated capacity in mAh, then a cell voltage it names ``cell_volt`` and does not use;
# we read it as the nominal cell voltage in mV); ``read_production_date`` unpacks 0x53 as
# ``">BBBBB"`` and uses data[2..4] as year - 2000, month, day (data[0..1] unread);
# ``read_battery_code`` expects 5 frames for 0x57, each ``">B7s"``: frame number 1..5, then 7
# characters of the battery code.
_RATED: Final = (
    Field("capacity_ah", 0, ">I", 0.001),  # mAh
    Field("nominal_cell_v", 4, ">I", 0.001),  # mV
)


@dataclass(frozen=True)
class Rated:
    capacity_ah: float
    nominal_cell_v: float


def decode_rated(data: BytesLike) -> Rated:
    """0x50: rated capacity and nominal cell voltage."""
    return Rated(**_decode(_RATED, data))


def encode_rated(rated: Rated) -> bytes:
    return encode_fields(_RATED, vars(rated), DATA_LEN)


_DETAILS: Final = (
    Field("year", 2, "B", 1.0, 2000.0),
    Field("month", 3, "B"),
    Field("day", 4, "B"),
)


@dataclass(frozen=True)
class Details:
    """0x53 as far as our source reads it: the production date."""

    year: int
    month: int
    day: int


def decode_details(data: BytesLike) -> Details:
    v = _decode(_DETAILS, data)
    return Details(int(v["year"]), int(v["month"]), int(v["day"]))


def encode_details(details: Details) -> bytes:
    return encode_fields(_DETAILS, vars(details), DATA_LEN)


def encode_battery_code(code: str) -> list[bytes]:
    """The data of the 5 frames of a 0x57 reply: number, then 7 ASCII characters, space-padded."""
    raw = code.encode("ascii", "replace")[: CODE_FRAMES * CODE_CHARS_PER_FRAME]
    raw = raw.ljust(CODE_FRAMES * CODE_CHARS_PER_FRAME, b" ")
    step = CODE_CHARS_PER_FRAME
    return [bytes((k + 1,)) + raw[k * step : (k + 1) * step] for k in range(CODE_FRAMES)]


def decode_battery_code(payloads: Iterable[BytesLike]) -> str:
    """The battery code from the data of a 0x57 reply's frames (any order), trailing spaces dropped."""
    parts: dict[int, bytes] = {}
    for payload in payloads:
        raw = _data(payload)
        if not 1 <= raw[0] <= CODE_FRAMES:
            raise FrameError(f"Daly 0x57 frame number {raw[0]} is not 1..{CODE_FRAMES}")
        parts[raw[0]] = raw[1:]
    missing = [n for n in range(1, CODE_FRAMES + 1) if n not in parts]
    if missing:
        raise FrameError(f"Daly 0x57 reply is missing frame(s) {missing}")
    return b"".join(parts[n] for n in range(1, CODE_FRAMES + 1)).decode("ascii", "replace").rstrip(" \0")


# --- 0x95 / 0x96: multi-frame cell voltages and temperatures -----------------------------------

_CELL_SLOTS: Final = tuple(Field(f"v{k}", 1 + 2 * k, ">H", 0.001) for k in range(CELLS_PER_FRAME))
_TEMP_SLOTS: Final = tuple(Field(f"t{k}", 1 + k, "B", 1.0, _CELSIUS_OFFSET) for k in range(TEMPERATURES_PER_FRAME))


def _decode_numbered(data: BytesLike, slots: Sequence[Field]) -> tuple[int, list[float]]:
    raw = _data(data)
    number = raw[0]
    if number == 0:
        raise FrameError("Daly multi-frame numbers start at 1, got 0")
    return number, [round(f.decode(raw), 9) for f in slots]


def _encode_numbered(values: Sequence[float], slots: Sequence[Field]) -> list[bytes]:
    per = len(slots)
    out = []
    for start in range(0, len(values), per):
        chunk = values[start : start + per]
        number = start // per + 1
        if number > 0xFF:
            raise FrameError(f"{len(values)} values need more than 255 frames")
        used = slots[: len(chunk)]
        payload = bytearray(encode_fields(used, {f.name: x for f, x in zip(used, chunk, strict=True)}, DATA_LEN))
        payload[0] = number
        out.append(bytes(payload))
    return out


def _assemble(
    payloads: Iterable[BytesLike],
    count: int,
    per_frame: int,
    decode_one: Callable[[BytesLike], tuple[int, list[T]]],
) -> list[T]:
    """Join numbered frames 1..ceil(count / per_frame); extra frames some boards send are ignored."""
    if count < 0:
        raise FrameError(f"negative count {count}")
    needed = -(-count // per_frame)
    seen: dict[int, list[T]] = {}
    for payload in payloads:
        number, values = decode_one(payload)
        if number > needed:
            continue
        if number in seen and seen[number] != values:
            raise FrameError(f"Daly frame {number} arrived twice with different values")
        seen[number] = values
    missing = [n for n in range(1, needed + 1) if n not in seen]
    if missing:
        raise FrameError(f"Daly multi-frame reply is missing frame(s) {missing}")
    return [v for n in range(1, needed + 1) for v in seen[n]][:count]


def decode_cell_frame(data: BytesLike) -> tuple[int, list[float]]:
    """One 0x95 frame: its 1-based number and its three cell voltages in V (padding included)."""
    return _decode_numbered(data, _CELL_SLOTS)


def decode_cells(payloads: Iterable[BytesLike], count: int) -> list[float]:
    """The ``count`` cell voltages from the data of a 0x95 reply's frames (any order)."""
    return _assemble(payloads, count, CELLS_PER_FRAME, decode_cell_frame)


def encode_cells(volts: Sequence[float]) -> list[bytes]:
    """The data of each 0x95 reply frame, numbered from 1, the last one zero-padded."""
    return _encode_numbered(volts, _CELL_SLOTS)


def decode_temperature_frame(data: BytesLike) -> tuple[int, list[float]]:
    """One 0x96 frame: its 1-based number and seven temperatures in degC (padding included)."""
    return _decode_numbered(data, _TEMP_SLOTS)


def decode_temperatures(payloads: Iterable[BytesLike], count: int) -> list[float]:
    return _assemble(payloads, count, TEMPERATURES_PER_FRAME, decode_temperature_frame)


def encode_temperatures(temperatures_c: Sequence[float]) -> list[bytes]:
    return _encode_numbered(temperatures_c, _TEMP_SLOTS)


# --- 0x97: balancing ---------------------------------------------------------------------------

# Byte i bit j is cell 8i + j + 1 over 6 bytes (48 cells), as Daly2MQTT reads it. dbus-serialbattery
# instead walks a big-endian u64 from bit 48 downwards; we follow the per-byte reading, which
# matches the document's "bit 0 of byte 0 = cell 1".


def decode_balance(data: BytesLike) -> int:
    """0x97 as a mask: bit i set = cell i + 1 bleeding."""
    return int.from_bytes(_data(data)[:6], "little")


def encode_balance(mask: int) -> bytes:
    if not 0 <= mask < 1 << MAX_BALANCE_CELLS:
        raise FrameError(f"balance mask 0x{mask:X} does not fit {MAX_BALANCE_CELLS} cells")
    return mask.to_bytes(6, "little") + bytes(2)


# --- 0x98: failure bitfields -> docs/behaviour.md §3 --------------------------------------------------------

# Policy: a level-2 bit ("alarm", the board acts on it) is our fault where one exists; a
# level-1 bit ("warning", the board only reports it) is never a fault: it goes to unmapped_alarms as
# "warning:<name>", because docs/behaviour.md §3 warnings below a protection are events, never FET actions.
# Level-2 bits with no equivalent among our faults go to unmapped_alarms under their own name.


def _at(byte: int, bit: int) -> int:
    """Index of data[byte] bit ``bit`` in the 0x98 alarm word (the first 7 data bytes, little-endian)."""
    return 8 * byte + bit


def _levelled(level2: AlarmBit) -> tuple[AlarmBit, AlarmBit]:
    """The L1 / L2 pair of one quantity: the level-1 bit sits just below ``level2`` and warns of it."""
    text = level2.text.removesuffix(", level 2")
    return AlarmBit(level2.bit - 1, f"{text}, level 1", unmapped=f"{WARNING_PREFIX}{level2.name}"), level2


def _pair(byte: int, bit: int, text: str, name: str, *, spec: bool) -> tuple[AlarmBit, AlarmBit]:
    """The pair whose level 1 is at (byte, bit); ``spec``: ``name`` is a docs/behaviour.md §3 fault."""
    words = f"{text}, level 2"
    at = _at(byte, bit + 1)
    return _levelled(AlarmBit(at, words, fault=name) if spec else AlarmBit(at, words, unmapped=name))


def _voltage(byte: int, bit: int, text: str, side: VoltageSide, scope: VoltageScope) -> tuple[AlarmBit, AlarmBit]:
    """A voltage pair: level 2 mapped by the one pack-vs-cell policy (``model.voltage_alarm``)."""
    return _levelled(voltage_alarm(_at(byte, bit + 1), f"{text}, level 2", side, scope))


_DOCUMENTED: Final[tuple[AlarmBit, ...]] = (
    # byte 0: voltages; the board's pack-level limits have no equivalent among our faults (we protect on cells)
    *_voltage(0, 0, "cell voltage high", "over", VoltageScope.CELL),
    *_voltage(0, 2, "cell voltage low", "under", VoltageScope.CELL),
    *_voltage(0, 4, "pack voltage high", "over", VoltageScope.PACK),
    *_voltage(0, 6, "pack voltage low", "under", VoltageScope.PACK),
    # byte 1: temperatures
    *_pair(1, 0, "charge temperature high", "charge_overtemperature", spec=True),
    *_pair(1, 2, "charge temperature low", "charge_undertemperature", spec=True),
    *_pair(1, 4, "discharge temperature high", "discharge_overtemperature", spec=True),
    *_pair(1, 6, "discharge temperature low", "discharge_undertemperature", spec=True),
    # byte 2: current and SOC
    *_pair(2, 0, "charge over-current", "charge_overcurrent", spec=True),
    *_pair(2, 2, "discharge over-current", "discharge_overcurrent", spec=True),
    *_pair(2, 4, "SOC high", "soc_high", spec=False),
    *_pair(2, 6, "SOC low", "soc_low", spec=False),
    # byte 3: spreads
    *_pair(3, 0, "cell voltage difference", "cell_imbalance", spec=True),
    *_pair(3, 2, "temperature difference", "temperature_difference", spec=False),
    # byte 4: FETs. "Adhesion" is a welded (stuck-closed) FET; "breaker" failure, the FET not
    # switching as commanded. Neither has a fault name of ours: the twin injects them, the BMS cannot
    # clear them.
    AlarmBit(_at(4, 0), "charge FET over-temperature", fault="fet_overtemperature"),
    AlarmBit(_at(4, 1), "discharge FET over-temperature", fault="fet_overtemperature"),
    AlarmBit(_at(4, 2), "charge FET temperature sensor failure", fault="sensor_fault"),
    AlarmBit(_at(4, 3), "discharge FET temperature sensor failure", fault="sensor_fault"),
    AlarmBit(_at(4, 4), "charge FET adhesion", unmapped="charge_fet_stuck_closed"),
    AlarmBit(_at(4, 5), "discharge FET adhesion", unmapped="discharge_fet_stuck_closed"),
    AlarmBit(_at(4, 6), "charge FET breaker failure", unmapped="charge_fet_breaker_failure"),
    AlarmBit(_at(4, 7), "discharge FET breaker failure", unmapped="discharge_fet_breaker_failure"),
    # byte 5: modules
    AlarmBit(_at(5, 0), "AFE acquisition chip failure", fault="afe_fault"),
    AlarmBit(_at(5, 1), "cell voltage collection failure", fault="sensor_fault"),
    AlarmBit(_at(5, 2), "temperature sensor failure", fault="sensor_fault"),
    AlarmBit(_at(5, 3), "EEPROM failure", unmapped="eeprom_failure"),
    AlarmBit(_at(5, 4), "RTC failure", unmapped="rtc_failure"),
    AlarmBit(_at(5, 5), "precharge failure", unmapped="precharge_failure"),
    # The external (vehicle / CAN) link is the board's monitoring link: our comm_error.
    AlarmBit(_at(5, 6), "vehicle communication failure", fault="comm_error"),
    # Board-internal bus: may or may not be the AFE link, so not claimed as afe_fault.
    AlarmBit(_at(5, 7), "internal communication failure", unmapped="internal_communication_failure"),
    # byte 6
    AlarmBit(_at(6, 0), "current module failure", fault="sensor_fault"),
    AlarmBit(_at(6, 1), "voltage module failure", fault="sensor_fault"),
    # The short-circuit *protection* failed, not a short: no equivalent among our faults.
    AlarmBit(_at(6, 2), "short-circuit protection failure", unmapped="short_circuit_protection_failure"),
    # Cells too low to accept a normal charge: our deep_discharge.
    AlarmBit(_at(6, 3), "low voltage, charging forbidden", fault="deep_discharge"),
)

FAILURE_BYTES: Final = 7  # data[0..6] are bitfields; data[7] is read as a fault code number


def _failure_alarms() -> tuple[AlarmBit, ...]:
    """Every one of the 56 bits, in bit order: bits our sources do not document keep a descriptive
    unmapped name so a set one is still shown, never dropped."""
    documented = {alarm.bit: alarm for alarm in _DOCUMENTED}
    return tuple(
        documented.get(
            i,
            AlarmBit(
                i, "undocumented", unmapped="undocumented_0x{:02x}_byte{}_bit{}".format(CMD_FAILURES, *divmod(i, 8))
            ),
        )
        for i in range(8 * FAILURE_BYTES)
    )


FAILURE_ALARMS: Final[tuple[AlarmBit, ...]] = _failure_alarms()
FAILURE_BITS: Final[dict[tuple[int, int], AlarmBit]] = {divmod(a.bit, 8): a for a in FAILURE_ALARMS}


@dataclass(frozen=True)
class Failures:
    """0x98: ``flags`` bit 8 x byte + bit is data[byte] bit; ``fault_code`` is data[7]."""

    flags: int
    fault_code: int = 0


def decode_failures(data: BytesLike) -> Failures:
    raw = _data(data)
    return Failures(flags=int.from_bytes(raw[:FAILURE_BYTES], "little"), fault_code=raw[FAILURE_BYTES])


def encode_failures(failures: Failures) -> bytes:
    if not 0 <= failures.flags < 1 << 8 * FAILURE_BYTES or not 0 <= failures.fault_code <= 0xFF:
        raise FrameError(f"{failures!r} does not fit the 0x98 layout")
    return failures.flags.to_bytes(FAILURE_BYTES, "little") + bytes((failures.fault_code,))


def failure_names(failures: Failures) -> tuple[list[str], list[str]]:
    """(our fault names, unmapped alarms) for a 0x98 reply, each without repeats, in bit order."""
    faults, unmapped = alarm_names(FAILURE_ALARMS, failures.flags)
    if failures.fault_code:
        # dbus-serialbattery reads data[7] as a fault code; our sources do not list its values.
        unmapped.append(f"fault_code_{failures.fault_code}")
    return faults, unmapped


def to_reading(
    pack: PackStatus | None = None,
    *,
    fets: FetStatus | None = None,
    status: StatusInfo | None = None,
    cells: Sequence[float] | None = None,
    temperatures_c: Sequence[float] | None = None,
    balance: int | None = None,
    failures: Failures | None = None,
    rated: Rated | None = None,
    name: str | None = None,
) -> DeviceReading:
    """A reading from whichever replies were read; what was not read stays None."""
    faults, unmapped = failure_names(failures) if failures is not None else ([], [])
    return DeviceReading(
        protocol="daly",
        cell_v=list(cells) if cells is not None else None,
        temperature_c=list(temperatures_c) if temperatures_c is not None else None,
        current_a=pack.current_a if pack else None,
        pack_v=pack.pack_v if pack else None,
        soc=pack.soc if pack else None,
        charge_fet=fets.charge_fet if fets else None,
        discharge_fet=fets.discharge_fet if fets else None,
        faults=faults,
        unmapped_alarms=unmapped,
        balancing=[i + 1 for i in bits(balance, MAX_BALANCE_CELLS)] if balance is not None else None,
        cycles=status.cycles if status else None,
        remaining_ah=fets.remaining_ah if fets else None,
        nominal_ah=rated.capacity_ah if rated else None,
        name=name or None,
    )


# --- framing a byte stream ---------------------------------------------------------------------

_ADDRESSES: Final = REQUEST_ADDRESSES | {BMS_ADDRESS}


def _candidate(buffer: bytes, at: int) -> int | None:
    """End of a valid frame at ``at``; INCOMPLETE if it may still arrive; None if garbage.

    A known address, the length byte 8 and the checksum make a frame. The 8-bit checksum alone would
    let one garbage window in 256 pass, so address and length are checked first.
    """
    have = len(buffer) - at
    if have > 1 and buffer[at + 1] not in _ADDRESSES:
        return None
    if have > 3 and buffer[at + 3] != DATA_LEN:
        return None  # the length byte of a Daly frame is always 8: anything else is garbage
    if have < FRAME_LEN:
        return INCOMPLETE
    end = at + FRAME_LEN
    return end if buffer[end - 1] == checksum(buffer[at : end - 1]) else None


FRAMING: Final = Framing(bytes((START,)), _candidate)


def find_frame(buffer: BytesLike) -> tuple[bytes | None, int]:
    """The next complete frame in a byte stream and how many leading bytes the caller may drop
    (``Framing.find_frame``: resynchronises on 0xA5)."""
    return FRAMING.find_frame(buffer)
