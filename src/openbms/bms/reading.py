"""What one pack's BMS reports, as one value: the twin reports it, a device decodes to it.

``interface.py`` is the boundary between the brain and the hardware; this is the boundary between
a BMS and whoever reads it. The scenario runner's checks and final state, the diagnosis snapshot
of a twin, the emulator's replies and the monitor's table all read a ``PackReading`` instead of
each building its own view from the twin's or the brain's internals.

Pure data in SI units (units in the names), no numpy: current is positive when charging, SOC and
SOH are 0..1, cells and sensors are numbered from 1 where a list holds numbers. A field the
source does not report is None: a JBD board has no SOC uncertainty, a twin has no firmware. In
``cell_v`` and ``temperature_c`` of a twin, NaN is a tap its AFE could not read (a device leaves
such a value out).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TWIN_PROTOCOL = "twin"  # ``PackReading.protocol`` of a reading the twin reports


@dataclass(frozen=True)
class PackReading:
    protocol: str  # who reports it: "twin", or the device protocol it was decoded from
    # What every BMS reports (a device's protocol may still lack some).
    cell_v: list[float] | None = None
    temperature_c: list[float] | None = None
    fet_temperature_c: float | None = None
    current_a: float | None = None
    pack_v: float | None = None
    soc: float | None = None  # 0..1
    charge_fet: bool | None = None
    discharge_fet: bool | None = None
    faults: list[str] = field(default_factory=list)  # docs/behaviour.md §3 names
    unmapped_alarms: list[str] = field(default_factory=list)  # device alarms with no equivalent
    balancing: list[int] | None = None  # 1-based cells being bled
    cycles: int | None = None
    remaining_ah: float | None = None
    nominal_ah: float | None = None
    name: str | None = None  # the device's name / id as it reports it
    firmware: str | None = None  # its software version as it reports it
    warnings: list[str] | None = None  # docs/behaviour.md §3 names below their trip level
    balancer_enabled: bool | None = None  # the balancing switch, not "bleeding now"
    charger_present: bool | None = None  # the board's charger-detect input
    load_present: bool | None = None  # the board's load-detect input
    uptime_s: float | None = None  # how long the board has run
    # What a BMS knows of itself that few protocols carry (the twin reports all of it).
    t_s: float | None = None  # when the reading was taken, on the reader's clock
    state: str | None = None  # the BMS's state name (docs/behaviour.md §4), "off" / "unresponsive" included
    fault_details: list[dict[str, object]] | None = None  # per active fault: fault, class, since_s
    soc_uncertain: bool | None = None
    soh: float | None = None  # learned capacity over rated capacity
    charge_current_limit_a: float | None = None
    discharge_current_limit_a: float | None = None
    charge_voltage_limit_v: float | None = None
    reset_counts: dict[str, int] | None = None  # per reset method
    counters: dict[str, float] | None = None  # charge_ah, discharge_ah, charge_wh, discharge_wh, cycles
    failed_cells: list[int] | None = None  # 1-based
    link_ok: bool | None = None  # the monitoring link works
    sensor_reason: str | None = None  # why the BMS distrusts a sensor ("" : it does not)
    # What a person at the battery sees (the twin knows it; a device cannot say).
    charger_connected: bool | None = None  # a charger is plugged into the terminals
    main_leads: bool | None = None
    balance_connector: bool | None = None
    cells_replaced: list[int] | None = None  # 1-based, since the BMS last booted

    @property
    def balancing_mask(self) -> int:
        """``balancing`` as the bit mask the protocols send (bit 0: cell 1)."""
        return sum(1 << (cell - 1) for cell in self.balancing or [])


__all__ = ["TWIN_PROTOCOL", "PackReading"]
