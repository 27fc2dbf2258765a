"""The Pylontech-compatible low-voltage CAN protocol most hybrid inverters accept for LiFePO4 packs.

500 kbit/s, 11-bit identifiers, little-endian. The battery broadcasts six messages every second
and the inverter answers with a keep-alive; there is no request/response. Layouts (byte offsets,
scales) as the public implementations give them: stuartpittaway/diyBMSv4ESP32
``ESPController/src/pylon_canbus.cpp`` and dalathegreat/Battery-Emulator
``Software/src/inverter/PYLON-LV-CAN.cpp`` (the 1 s period, the 3 s keep-alive timeout, the
0x359 trailer ``module count, 'P', 'N'``, the 0x35C request bits). The official specification is
not public; where the two disagree (the bits of 0x359 beyond those below) we follow the recorded
vectors' description (``tests/devices/vectors/pylontech_can.json``).

======  ====  ==============================================================================
id      DLC   content
======  ====  ==============================================================================
0x351   8     charge voltage limit u16 0.1 V, charge current limit s16 0.1 A, discharge
              current limit s16 0.1 A, discharge voltage limit u16 0.1 V
0x355   4     SOC u16 %, SOH u16 %
0x356   6     pack voltage s16 0.01 V, current s16 0.1 A (+ charging), temperature s16 0.1 °C
0x359   7     protection bits (bytes 0–1), warning bits at the same places (bytes 2–3),
              module count, "PN"
0x35C   2     request bits: charge enable, discharge enable, force charge I and II, full charge
0x35E   8     manufacturer name, ASCII
0x305   8     the inverter's keep-alive (zeros)
======  ====  ==============================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from openbms.devices.errors import FrameError
from openbms.devices.fields import Field, decode_fields, encode_fields

ID_LIMITS: Final = 0x351
ID_SOC: Final = 0x355
ID_MEASURED: Final = 0x356
ID_ALARMS: Final = 0x359
ID_REQUEST: Final = 0x35C
ID_NAME: Final = 0x35E
ID_KEEPALIVE: Final = 0x305
BROADCAST_IDS: Final = (ID_LIMITS, ID_SOC, ID_MEASURED, ID_ALARMS, ID_REQUEST, ID_NAME)
PERIOD_S: Final = 1.0  # every broadcast message, once a second
KEEPALIVE_TIMEOUT_S: Final = 3.0  # no 0x305 for this long: the inverter is gone
BITRATE: Final = 500_000
NAME_BYTES: Final = 8

LIMIT_FIELDS: Final = (
    Field("charge_voltage_limit_v", 0, "<H", 0.1),
    Field("charge_current_limit_a", 2, "<h", 0.1),
    Field("discharge_current_limit_a", 4, "<h", 0.1),
    Field("discharge_voltage_limit_v", 6, "<H", 0.1),
)
SOC_FIELDS: Final = (Field("soc", 0, "<H", 0.01), Field("soh", 2, "<H", 0.01))
MEASURED_FIELDS: Final = (
    Field("pack_v", 0, "<h", 0.01),
    Field("current_a", 2, "<h", 0.1),
    Field("temperature_c", 4, "<h", 0.1),
)

# 0x359: (byte, bit) of each alarm, and the docs/behaviour.md §3 faults it stands for. The first
# byte pair carries protections (faults), the second the same positions as warnings.
ALARM_BITS: Final[dict[str, tuple[int, int]]] = {
    "over_voltage": (0, 1),
    "under_voltage": (0, 2),
    "over_temperature": (0, 3),
    "under_temperature": (0, 4),
    "discharge_over_current": (0, 7),
    "charge_over_current": (1, 0),
    "system_error": (1, 3),
}
ALARM_FAULTS: Final[dict[str, tuple[str, ...]]] = {
    "over_voltage": ("cell_overvoltage", "cell_overvoltage_latched"),
    "under_voltage": ("cell_undervoltage", "deep_discharge"),
    "over_temperature": ("charge_overtemperature", "discharge_overtemperature", "fet_overtemperature"),
    "under_temperature": ("charge_undertemperature", "discharge_undertemperature"),
    "discharge_over_current": ("discharge_overcurrent", "short_circuit"),
    "charge_over_current": ("charge_overcurrent",),
    "system_error": ("sensor_fault", "afe_fault", "cell_failure", "cell_imbalance"),
}
# What a decoded alarm bit reads as (the first fault of its row).
ALARM_READS_AS: Final = {alarm: faults[0] for alarm, faults in ALARM_FAULTS.items()}

# 0x35C, byte 0.
REQUEST_CHARGE_ENABLE: Final = 0x80
REQUEST_DISCHARGE_ENABLE: Final = 0x40
REQUEST_FORCE_CHARGE_1: Final = 0x20
REQUEST_FORCE_CHARGE_2: Final = 0x10
REQUEST_FULL_CHARGE: Final = 0x08


@dataclass(frozen=True)
class Broadcast:
    """Everything one round of the battery's messages carries (SI units, current + charging)."""

    charge_voltage_limit_v: float
    charge_current_limit_a: float
    discharge_current_limit_a: float
    discharge_voltage_limit_v: float
    soc: float  # 0..1
    soh: float  # 0..1
    pack_v: float
    current_a: float
    temperature_c: float
    protections: frozenset[str]  # ALARM_BITS names
    warnings: frozenset[str]
    charge_enable: bool
    discharge_enable: bool
    force_charge: bool  # "request force charge I": the pack is empty, charge it even from the grid
    full_charge: bool  # "request full charge": recalibrate at the top
    name: str
    modules: int = 1


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _alarm_bytes(names: Iterable[str]) -> bytes:
    out = bytearray(2)
    for name in names:
        byte, bit = ALARM_BITS[name]
        out[byte] |= 1 << bit
    return bytes(out)


def _alarm_names(raw: bytes) -> frozenset[str]:
    return frozenset(name for name, (byte, bit) in ALARM_BITS.items() if raw[byte] >> bit & 1)


def alarms_of(faults: Iterable[str]) -> frozenset[str]:
    """The 0x359 alarm names that stand for these docs/behaviour.md §3 faults (or warnings)."""
    present = set(faults)
    return frozenset(alarm for alarm, names in ALARM_FAULTS.items() if present & set(names))


def encode(b: Broadcast) -> dict[int, bytes]:
    """One round of broadcast payloads, by CAN id; values are clipped to what each field holds."""
    limits = {
        "charge_voltage_limit_v": _clip(b.charge_voltage_limit_v, 0, 6553.5),
        "charge_current_limit_a": _clip(b.charge_current_limit_a, 0, 3276.7),
        "discharge_current_limit_a": _clip(b.discharge_current_limit_a, 0, 3276.7),
        "discharge_voltage_limit_v": _clip(b.discharge_voltage_limit_v, 0, 6553.5),
    }
    soc = {"soc": _clip(round(b.soc * 100) / 100, 0, 1), "soh": _clip(round(b.soh * 100) / 100, 0, 1)}
    measured = {
        "pack_v": _clip(b.pack_v, -327.68, 327.67),
        "current_a": _clip(b.current_a, -3276.8, 3276.7),
        "temperature_c": _clip(b.temperature_c, -3276.8, 3276.7),
    }
    request = (
        (REQUEST_CHARGE_ENABLE if b.charge_enable else 0)
        | (REQUEST_DISCHARGE_ENABLE if b.discharge_enable else 0)
        | (REQUEST_FORCE_CHARGE_1 if b.force_charge else 0)
        | (REQUEST_FULL_CHARGE if b.full_charge else 0)
    )
    name = b.name.encode("ascii", "replace")[:NAME_BYTES].ljust(NAME_BYTES, b" ")
    return {
        ID_LIMITS: encode_fields(LIMIT_FIELDS, limits, 8),
        ID_SOC: encode_fields(SOC_FIELDS, soc, 4),
        ID_MEASURED: encode_fields(MEASURED_FIELDS, measured, 6),
        ID_ALARMS: _alarm_bytes(b.protections) + _alarm_bytes(b.warnings) + bytes((b.modules & 0xFF,)) + b"PN",
        ID_REQUEST: bytes((request, 0)),
        ID_NAME: name,
    }


def decode_limits(payload: bytes) -> dict[str, float]:
    """0x351. A 6-byte frame (Battery-Emulator sends no discharge voltage) leaves that one out."""
    fields = LIMIT_FIELDS if len(payload) >= 8 else LIMIT_FIELDS[:3]
    return decode_fields(fields, payload)


def decode_soc(payload: bytes) -> dict[str, float]:
    return decode_fields(SOC_FIELDS, payload)


def decode_measured(payload: bytes) -> dict[str, float]:
    return decode_fields(MEASURED_FIELDS, payload)


def decode_alarms(payload: bytes) -> tuple[frozenset[str], frozenset[str]]:
    """0x359: (protections, warnings) as ALARM_BITS names."""
    if len(payload) < 4:
        raise FrameError(f"0x359 needs at least 4 bytes, got {len(payload)}")
    return _alarm_names(payload[0:2]), _alarm_names(payload[2:4])


def decode_request(payload: bytes) -> dict[str, bool]:
    if len(payload) < 1:
        raise FrameError("0x35C needs at least 1 byte")
    flags = payload[0]
    return {
        "charge_enable": bool(flags & REQUEST_CHARGE_ENABLE),
        "discharge_enable": bool(flags & REQUEST_DISCHARGE_ENABLE),
        "force_charge": bool(flags & (REQUEST_FORCE_CHARGE_1 | REQUEST_FORCE_CHARGE_2)),
        "full_charge": bool(flags & REQUEST_FULL_CHARGE),
    }


def decode_name(payload: bytes) -> str:
    return payload[:NAME_BYTES].decode("ascii", "replace")
