"""How a poll of a device is shown: a rich table for people, a JSON line for scripts."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from openbms.devices.model import DeviceReading
from openbms.devices.reader import Poll


def temperatures(reading: DeviceReading) -> dict[str, float]:
    """Every temperature the device reported, by sensor: ``sensor_1``… (``temperature_c`` in order;
    for JK sensor 1 is the box sensor, 2 the battery sensor) and ``fet``."""
    named = {f"sensor_{i}": t for i, t in enumerate(reading.temperature_c or [], start=1)}
    if reading.fet_temperature_c is not None:
        named["fet"] = reading.fet_temperature_c
    return named


def reading_json(poll: Poll) -> dict[str, Any]:
    """One poll as JSON: every value the protocol's codec decodes, units in the key names; a value
    the protocol does not carry is null (e.g. JK has no remaining charge, Daly no firmware)."""
    if poll.reading is None:
        return {"ok": False, "faults": ["comm_error"], "error": poll.error, "last_good_age_s": poll.last_good_age_s}
    r = poll.reading
    return {
        "ok": True,
        "protocol": r.protocol,
        "pack_v": r.pack_v,
        "current_a": r.current_a,
        "soc": r.soc,
        "charge_fet": r.charge_fet,
        "discharge_fet": r.discharge_fet,
        "cell_v": r.cell_v,
        "temperature_c": r.temperature_c,
        "fet_temperature_c": r.fet_temperature_c,
        "faults": r.faults,
        "unmapped_alarms": r.unmapped_alarms,
        "balancing": r.balancing,
        "balancing_cells": r.balancing,
        "temperatures_c": temperatures(r),
        "cycles": r.cycles,
        "remaining_ah": r.remaining_ah,
        "nominal_ah": r.nominal_ah,
        "device_name": r.name,
        "firmware": r.firmware,
    }


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{unit}"


def poll_table(device: str, poll: Poll) -> Table:
    """A live view. Without a fresh reading it shows the error and no values at all."""
    table = Table(title=f"{device}", title_justify="left")
    if poll.reading is None:
        table.add_column("status")
        age = "never" if poll.last_good_age_s is None else f"{poll.last_good_age_s:.0f} s ago"
        hint = ""
        protocol, _, port = device.partition(":")
        if poll.last_good_age_s is None and protocol != "ble" and port:
            hint = f"\nnever answered: `openbms probe {port}` finds the protocol and baud rate that do"
        table.add_row(f"[bold red]comm_error[/]: {poll.error} (last good reading: {age}; no values shown){hint}")
        return table
    r = poll.reading
    table.add_column("quantity")
    table.add_column("value")
    fet = {True: "[green]on[/]", False: "[red]off[/]", None: "–"}
    table.add_row(
        "pack",
        f"{_fmt(r.pack_v, '.2f', ' V')}   {_fmt(r.current_a, '+.2f', ' A')}   "
        f"SOC {_fmt(None if r.soc is None else r.soc * 100, '.1f', ' %')}",
    )
    table.add_row("FETs", f"charge {fet[r.charge_fet]}   discharge {fet[r.discharge_fet]}")
    if r.cell_v:
        low, high = min(r.cell_v), max(r.cell_v)
        cells = "  ".join(
            f"[{'cyan' if v == low else 'magenta' if v == high else 'white'}]{i}:{v:.3f}[/]"
            for i, v in enumerate(r.cell_v, start=1)
        )
        table.add_row("cells (V)", cells + f"\nΔ {1000 * (high - low):.0f} mV")
    if r.temperature_c:
        table.add_row(
            "temperatures",
            "  ".join(f"{t:.1f} °C" for t in r.temperature_c)
            + (f"   FET {r.fet_temperature_c:.0f} °C" if r.fet_temperature_c is not None else ""),
        )
    if r.balancing:
        table.add_row("balancing", ", ".join(map(str, r.balancing)))
    faults = ", ".join(r.faults) or "[green]none[/]"
    table.add_row(
        "faults", faults + (f"   (device alarms: {', '.join(r.unmapped_alarms)})" if r.unmapped_alarms else "")
    )
    if r.cycles is not None:
        table.add_row("cycles", str(r.cycles))
    if r.remaining_ah is not None or r.nominal_ah is not None:
        table.add_row("capacity", f"{_fmt(r.remaining_ah, '.2f', ' Ah')} of {_fmt(r.nominal_ah, '.2f', ' Ah')}")
    if r.name or r.firmware:
        table.add_row("device", f"{r.name or '–'}   firmware {r.firmware or '–'}")
    return table
