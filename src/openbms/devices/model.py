"""What any BMS reports, mapped onto our own vocabulary (SPEC §3 fault names, SI units).

Every protocol decoder ends in a ``DeviceReading``; the monitor shows it and the diagnosis reads it.
Current is positive when charging; cells and sensors are numbered from 1 where a list is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceReading:
    protocol: str
    cell_v: list[float] | None = None
    temperature_c: list[float] | None = None
    fet_temperature_c: float | None = None
    current_a: float | None = None
    pack_v: float | None = None
    soc: float | None = None  # 0..1
    charge_fet: bool | None = None
    discharge_fet: bool | None = None
    faults: list[str] = field(default_factory=list)  # SPEC §3 names
    unmapped_alarms: list[str] = field(default_factory=list)  # device alarms with no equivalent
    balancing: list[int] | None = None  # 1-based cells being bled
    cycles: int | None = None
    remaining_ah: float | None = None
    nominal_ah: float | None = None
    name: str | None = None  # the device's name / id as it reports it
    firmware: str | None = None  # its software version as it reports it


@dataclass(frozen=True)
class AlarmBit:
    """One device alarm bit: the source's words and where it lands in our vocabulary.

    Exactly one of ``fault`` (a SPEC §3 name) and ``unmapped`` (a descriptive name for
    ``DeviceReading.unmapped_alarms``) is set, so no bit is ever silently dropped.
    """

    text: str
    fault: str | None = None
    unmapped: str | None = None

    def __post_init__(self) -> None:
        if (self.fault is None) == (self.unmapped is None):
            raise ValueError(f"alarm bit {self.text!r} needs exactly one of fault / unmapped")

    @property
    def name(self) -> str:
        return self.fault if self.fault is not None else str(self.unmapped)
