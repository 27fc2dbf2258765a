"""The human-readable summary of a run, printed with rich."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from openbms.profiles import load_profile
from openbms.scenario.runner import RunResult
from openbms.units import format_duration

_UNITS = {"v": "V", "c": "°C", "c_rate": "C", "s": "s", "flag": ""}


def _condition_text(fault: str, value: float | None, threshold: float | None) -> str:
    protections = load_profile("lfp").protections
    prot = protections.get(fault)
    if prot is None or value is None or threshold is None:
        return ""
    unit = next((u for u in ("v", "c_rate", "c", "s", "flag") if getattr(prot, f"trip_{u}") is not None), "")
    symbol = "≥" if prot.direction == "above" else "≤"
    quantity = prot.quantity.replace("_", " ").replace(" c rate", "")
    return f"{quantity} {value:g} {_UNITS[unit]} {symbol} {threshold:g} {_UNITS[unit]}".replace("  ", " ")


def print_summary(console: Console, result: RunResult, wall_s: float, files: list[Path]) -> None:
    status = "[bold green]PASSED[/]" if result.passed else "[bold red]FAILED[/]"
    console.rule(f"[bold]{result.name}[/]")
    final = result.final
    console.print(
        f"{status}  simulated {format_duration(final['t_s'])} in {wall_s:.1f} s"
        + (f"  ({result.source})" if result.source else "")
    )
    protective = [
        e for e in result.events if e["kind"] in ("fault_set", "fault_cleared", "sleep", "wake", "reset", "warning")
    ]
    if protective:
        table = Table(title="What the BMS did", show_lines=False, title_justify="left")
        table.add_column("time", justify="right")
        table.add_column("event")
        table.add_column("details")
        for event in protective[:60]:
            kind = event["kind"]
            if kind == "fault_set":
                what = f"[red]▲ {event['fault']}[/] tripped ({event['class']})"
                detail = _condition_text(event["fault"], event.get("value"), event.get("threshold"))
                extra = [f"{k} {event[k]}" for k in ("reason", "cell", "cells") if k in event]
                if extra:
                    detail = (
                        ", ".join(extra)
                        if event["fault"] in ("sensor_fault", "cell_failure")
                        else (detail + " (" + ", ".join(extra) + ")")
                    )
                if "presumed_s" in event:
                    detail = f"presumed still present after the boot, judged again within {event['presumed_s']:g} s"
            elif kind == "fault_cleared":
                what = f"[green]▼ {event['fault']}[/] cleared"
                detail = f"by {event['by']}"
            elif kind == "warning":
                what = f"[yellow]! {event['warning']}[/] warning"
                detail = _condition_text(event["warning"], event.get("value"), event.get("threshold"))
            else:
                what = kind
                detail = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("t_s", "kind"))
            table.add_row(format_duration(event["t_s"]), what, detail)
        if len(protective) > 60:
            table.add_row("…", f"{len(protective) - 60} more in events.jsonl", "")
        console.print(table)
    else:
        console.print("No protection tripped.")
    for exp in result.expectations:
        mark = "[green]✓[/]" if exp.ok else "[red]✗[/]"
        console.print(f"  {mark} {exp.message}")
    if result.error and not any(not e.ok for e in result.expectations):
        console.print(f"  [red]✗ {result.error}[/]")
    cell_v, temps = final["cell_v"], final["temperature_c"]
    console.print(
        f"Final: state [bold]{final['state']}[/], charge FET {'on' if final['charge_fet'] else 'off'}, "
        f"discharge FET {'on' if final['discharge_fet'] else 'off'}, SOC {final['soc'] * 100:.1f} %, "
        f"pack {final['pack_v']:.2f} V, cells {min(cell_v):.3f}–{max(cell_v):.3f} V, "
        f"{min(temps):.1f}–{max(temps):.1f} °C"
        + (f", active faults: {', '.join(final['faults'])}" if final["faults"] else "")
    )
    for path in files:
        console.print(f"  wrote {path}")
