"""What is wrong, and which reset is safe: the technician's reasoning of docs/behaviour.md §10.

Order of reasoning: damaged cells first (no reset fixes them); then persistent faults (service);
then conditions that are still present (cool down, remove the load or the short, charge, mend the
wire); then a soft reset for sleep, protection and communication faults; a hard reset only when a
soft reset failed or cannot work (latched faults, an unresponsive BMS, erratic readings that
survived a soft reset, after a cell replacement). Every conclusion is drawn from the snapshot's
data and history, never from what a scenario is called.
"""

from __future__ import annotations

import statistics
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openbms.diagnose.procedures import (
    SAFETY_GENERAL,
    ProcedureStep,
    hard_reset_steps,
    replace_cell_steps,
    soft_reset_steps,
)
from openbms.diagnose.snapshot import Snapshot

Recommendation = Literal["none", "fix_root_cause", "soft_reset", "hard_reset", "replace_cells", "service"]
RECOMMENDATIONS: tuple[Recommendation, ...] = (
    "none",
    "fix_root_cause",
    "soft_reset",
    "hard_reset",
    "replace_cells",
    "service",
)
DAMAGED_FRACTION_OF_DEEP_DISCHARGE = 0.5  # a cell below half the deep-discharge limit is ruined
COLLAPSED_BELOW_MEDIAN_V = 0.5  # one cell this far below the others while the rest are fine
OPEN_WIRE_LOW_V = 0.3
OPEN_WIRE_NEIGHBOUR_FACTOR = 1.6
OPEN_WIRE_MIN_MEDIAN_V = 1.0
MIN_SOH = 0.6


# Where a reason's evidence comes from, so an owner can weigh it: a reading of the BMS now, its
# recorded history, what the person told the guide, or something assumed for want of either.
Source = Literal["measured", "history", "user", "assumed"]
SOURCE_WORDS: dict[str, str] = {
    "measured": "measured now",
    "history": "from the history",
    "user": "from your answers",
    "assumed": "assumed",
}


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    source: Source
    fault: str | None = None
    measurement: str | None = None
    value: float | None = None
    limit: float | None = None


class Diagnosis(BaseModel):
    model_config = ConfigDict(frozen=True)

    recommendation: Recommendation
    summary: str
    reasons: list[Reason]
    steps: list[ProcedureStep]
    assumptions: list[str] = Field(default_factory=list)
    damaged_cells: list[int] = Field(default_factory=list)


# ----------------------------------------------------------------------------- evidence
def seen(s: Snapshot, *fields: str) -> Source:
    """The source of a reason drawn from these snapshot fields: assumed when any of them is
    unknown or was filled in by an assumption, else read now (or told by the person)."""
    if any(f in s.assumed_fields or getattr(s, f) is None for f in fields):
        return "assumed"
    return "user" if s.source == "guide" else "measured"


def recalled(s: Snapshot) -> Source:
    """The source of a reason drawn from the event history (in the guide, the person's account)."""
    return "user" if s.source == "guide" else "history"


def _numbers(values: list[float | None] | None) -> list[float]:
    return [v for v in values or [] if v is not None]


def open_wire_cells(s: Snapshot) -> list[int]:
    """Cells (1-based) whose reading is ~0 V while the next reads about two cells' worth."""
    v = s.cell_v or []
    known = _numbers(v)
    if len(known) < 3:
        return []
    median = statistics.median(known)
    if median < OPEN_WIRE_MIN_MEDIAN_V:
        return []  # a dead pack reads ~0 V everywhere: that is not a broken wire
    found = []
    for k, value in enumerate(v):
        if value is None or value > OPEN_WIRE_LOW_V:
            continue
        nxt = v[k + 1] if k + 1 < len(v) else None
        if (
            nxt is not None
            and nxt > OPEN_WIRE_NEIGHBOUR_FACTOR * median
            or k + 1 == len(v)
            and s.pack_v is not None
            and s.pack_v > sum(known) + 0.5 * median
        ):
            found.append(k + 1)
    return found


def readings_trusted(s: Snapshot) -> bool:
    return "sensor_fault" not in s.fault_names and not open_wire_cells(s)


def damaged_cells(s: Snapshot) -> list[tuple[int, Reason]]:
    """Cells that the data shows are damaged, each with the evidence."""
    found: dict[int, Reason] = {}
    for cell in s.failed_cells:
        found[cell] = Reason(
            text=f"the BMS has learned that cell {cell} is failing (self-discharge or capacity far outside its group)",
            source=seen(s, "failed_cells"),
            fault="cell_failure",
            measurement=f"cell {cell}",
        )
    if s.soh is not None and s.soh < MIN_SOH and s.failed_cells:
        cell = s.failed_cells[0]
        found[cell] = Reason(
            text=f"learned capacity is only {s.soh:.0%} of rated, limited by cell {cell}",
            source=seen(s, "soh"),
            measurement="soh",
            value=round(s.soh, 3),
            limit=MIN_SOH,
        )
    if readings_trusted(s) and s.cell_v:
        t = s.thresholds
        known = _numbers(s.cell_v)
        median = statistics.median(known) if known else 0.0
        dead_v = DAMAGED_FRACTION_OF_DEEP_DISCHARGE * t.deep_discharge_v
        for k, v in enumerate(s.cell_v):
            if v is None:
                continue
            if v < dead_v:
                found[k + 1] = Reason(
                    text=f"cell {k + 1} reads {v:.2f} V, far below the {t.deep_discharge_v:.2f} V deep-discharge "
                    "limit: it has collapsed",
                    source=seen(s, "cell_v"),
                    measurement=f"cell_v_{k + 1}",
                    value=round(v, 4),
                    limit=t.deep_discharge_v,
                )
            elif v < t.cell_undervoltage_v and median - v > COLLAPSED_BELOW_MEDIAN_V and median > t.cell_undervoltage_v:
                found[k + 1] = Reason(
                    text=f"cell {k + 1} reads {v:.2f} V while the others sit near {median:.2f} V: it is "
                    "discharging itself",
                    source=seen(s, "cell_v"),
                    measurement=f"cell_v_{k + 1}",
                    value=round(v, 4),
                    limit=round(median - COLLAPSED_BELOW_MEDIAN_V, 4),
                )
    return sorted(found.items())


def _resets(s: Snapshot, method: set[str], result: set[str]) -> list[dict[str, object]]:
    return [e for e in s.events if e.get("kind") == "reset" and e.get("method") in method and e.get("result") in result]


# The snapshot fields each measurement a reason cites is read from (``cell_v_N``: the cells).
_EVIDENCE_FIELDS: dict[str, tuple[str, ...]] = {
    "max_cell_v": ("cell_v",),
    "min_cell_v": ("cell_v",),
    "max_cell_t": ("temperature_c",),
    "min_cell_t": ("temperature_c",),
    "fet_t": ("fet_temperature_c",),
    "load_present": ("load_connected",),
    "current_a": ("current_a", "charger_connected"),
    "link_ok": ("link_ok",),
    "sensor_fault_reason": (),
}


def present_conditions(s: Snapshot) -> list[tuple[str, Reason, list[ProcedureStep]]]:
    """Active faults whose cause is still there, each with its evidence and its remedy."""
    t = s.thresholds
    found: list[tuple[str, Reason, list[ProcedureStep]]] = []
    names = s.fault_names
    trusted = readings_trusted(s)
    volts = _numbers(s.cell_v) if trusted else []
    temps = _numbers(s.temperature_c)
    hi_t, lo_t = (max(temps), min(temps)) if temps else (None, None)

    def add(
        fault: str,
        text: str,
        steps: list[ProcedureStep],
        measurement: str | None = None,
        value: float | None = None,
        limit: float | None = None,
    ) -> None:
        cited = measurement or ""
        source = seen(s, "faults", *_EVIDENCE_FIELDS.get(cited, ("cell_v",) if cited.startswith("cell_v_") else ()))
        reason = Reason(text=text, source=source, fault=fault, measurement=measurement, value=value, limit=limit)
        found.append((fault, reason, steps))

    if "cell_overvoltage_latched" in names and volts and max(volts) >= t.cell_overvoltage_v:
        add(
            "cell_overvoltage_latched",
            f"the highest cell is still at {max(volts):.3f} V, above the {t.cell_overvoltage_v:.2f} V limit",
            [
                ProcedureStep(text="Disconnect the charger and check its voltage setting; it overcharged the cells."),
                ProcedureStep(
                    text="Let a technician bring the overcharged cells down (a small load or a bleed) "
                    "before any reset.",
                    safety="Overcharged lithium cells can vent: keep the pack away from anything flammable.",
                ),
            ],
            "max_cell_v",
            round(max(volts), 4),
            t.cell_overvoltage_v,
        )
    for fault, hot, limit in (
        ("charge_overtemperature", True, t.charge_overtemperature_release_c),
        ("discharge_overtemperature", True, t.discharge_overtemperature_release_c),
        ("charge_undertemperature", False, t.charge_undertemperature_release_c),
        ("discharge_undertemperature", False, t.discharge_undertemperature_release_c),
    ):
        if fault not in names or hi_t is None or lo_t is None:
            continue
        value = hi_t if hot else lo_t
        if (hot and value > limit) or (not hot and value < limit):
            verb = "cool down below" if hot else "warm up above"
            add(
                fault,
                f"the cells are at {value:.1f} °C; they must {verb} {limit:.0f} °C before it releases",
                [
                    ProcedureStep(
                        text=(
                            "Remove the load and move the battery somewhere cooler or improve its cooling; "
                            "the protection releases by itself once the cells have cooled."
                            if hot
                            else "Bring the battery somewhere warmer; it releases by itself once the cells have warmed."
                        ),
                        safety=None if hot else "Do not charge a lithium battery below 0 °C.",
                        action="ambient 25",
                        check="normal",
                    )
                ],
                "max_cell_t" if hot else "min_cell_t",
                round(value, 2),
                limit,
            )
    if (
        "fet_overtemperature" in names
        and s.fet_temperature_c is not None
        and s.fet_temperature_c > t.fet_overtemperature_release_c
    ):
        add(
            "fet_overtemperature",
            f"the BMS's FETs are at {s.fet_temperature_c:.0f} °C (release at {t.fet_overtemperature_release_c:.0f} °C)",
            [
                ProcedureStep(
                    text="Remove the load and let the BMS cool down; check its current rating.",
                    action="disconnect load",
                )
            ],
            "fet_t",
            s.fet_temperature_c,
            t.fet_overtemperature_release_c,
        )
    for fault in ("discharge_overcurrent", "short_circuit"):
        if fault in names and s.load_connected:
            add(
                fault,
                "the load (or short) that caused it is still connected",
                [
                    ProcedureStep(
                        text="Disconnect the load and find what drew too much current (a fault in an appliance, "
                        "a wiring short) before reconnecting anything. The protection releases by itself "
                        "30–60 s after the load is gone.",
                        safety="A short circuit at a lithium battery's terminals can start a fire.",
                        action="disconnect load and wait",
                        check="normal",
                    )
                ],
                "load_present",
            )
    if "charge_overcurrent" in names and s.charger_connected and (s.current_a or 0.0) > 0.0:
        add(
            "charge_overcurrent",
            "the charger still pushes more current than the battery accepts",
            [
                ProcedureStep(
                    text="Lower the charger's current limit (or use a smaller charger).",
                    action="disconnect charger",
                )
            ],
            "current_a",
            s.current_a,
        )
    if "comm_error" in names and s.link_ok is False:
        add(
            "comm_error",
            "the monitoring link still reports errors",
            [
                ProcedureStep(
                    text="Check the monitoring cable and connectors, and the monitor's settings.",
                    action="repair link",
                )
            ],
            "link_ok",
        )
    why = _sensor_fault_reason(s)
    if "sensor_fault" in names and why in ("stuck", "out_of_range", "stack_mismatch") and not open_wire_cells(s):
        add(
            "sensor_fault",
            f"the sensor fault is a steady one ({why.replace('_', ' ')}), not erratic readings: a sensor or its "
            "wiring is faulty, and a reset would only hide it for a moment",
            [
                ProcedureStep(
                    text="Have the cell sense leads, the temperature sensors and the BMS's measuring front end "
                    "checked; compare each cell with a multimeter.",
                    safety="Disconnect the main leads and the balance connector before working on the leads.",
                    action="inspect sensors",
                )
            ],
            "sensor_fault_reason",
        )
    for cell in open_wire_cells(s):
        add(
            "sensor_fault",
            f"cell {cell} reads about 0 V while its neighbour reads two cells' worth: a balance wire is open",
            [
                ProcedureStep(
                    text=f"Inspect and repair the balance lead at cell {cell} (connector pin, crimp or wire).",
                    safety="Disconnect the main leads and the balance connector before working on the leads.",
                    action=f"repair open_balance_wire {cell}",
                ),
                ProcedureStep(text="The sensor fault is latched: after the repair, do a hard reset:"),
                *hard_reset_steps(s.thresholds.hold_up_s, s.thresholds.hold_up_known),
            ],
            f"cell_v_{cell}",
            0.0,
        )
    if "cell_undervoltage" in names and s.state != "sleep" and volts and min(volts) < t.cell_undervoltage_release_v:
        charging = bool(s.charger_connected) and (s.current_a or 0.0) > 0.0
        if not charging:
            add(
                "cell_undervoltage",
                f"the lowest cell is at {min(volts):.3f} V, below the {t.cell_undervoltage_release_v:.2f} V at "
                "which discharge is allowed again",
                [
                    ProcedureStep(text="Disconnect the loads.", action="disconnect load"),
                    ProcedureStep(
                        text="Charge the battery with a compatible charger; discharge is allowed again once the "
                        f"cells are above {t.cell_undervoltage_release_v:.2f} V.",
                        action="connect charger",
                        check="normal",
                    ),
                ],
                "min_cell_v",
                round(min(volts), 4),
                t.cell_undervoltage_release_v,
            )
    return found


# ----------------------------------------------------------------------------- the decision
def diagnose(s: Snapshot) -> Diagnosis:
    if s.state == "no_reply":
        return _no_reply(s)
    assumptions = _assumptions(s)
    damaged = damaged_cells(s)
    if damaged:
        cells = [c for c, _ in damaged]
        return Diagnosis(
            recommendation="replace_cells",
            summary=f"Cell(s) {', '.join(map(str, cells))} are damaged; no reset can fix them.",
            reasons=[r for _, r in damaged],
            steps=replace_cell_steps(cells, s.thresholds.hold_up_s, s.thresholds.hold_up_known),
            assumptions=assumptions,
            damaged_cells=cells,
        )
    persistent = [f for f in s.faults if f.klass == "persistent"]
    if persistent:
        return _service(s, [f.fault for f in persistent], assumptions)
    returned = _latched_after_hard_reset(s)
    if returned:
        return Diagnosis(
            recommendation="fix_root_cause",
            summary="The fault came back after a complete hard reset: its cause is in the hardware.",
            reasons=returned,
            steps=[
                ProcedureStep(
                    text="Have the BMS and its sensor wiring inspected by a qualified technician; another reset "
                    "will not help.",
                    action="inspect sensors",
                ),
                ProcedureStep(text=SAFETY_GENERAL),
            ],
            assumptions=assumptions,
        )
    if s.state == "silent":
        return _silent(s, assumptions)
    if s.state == "off" and s.cell_replaced:
        return Diagnosis(
            recommendation="hard_reset",
            summary="A cell was replaced: finish with a hard reset so the BMS re-learns the pack.",
            reasons=[
                Reason(
                    text="a cell was just replaced: the BMS must detect it when it boots after a full power-down",
                    source=seen(s, "cell_replaced"),
                )
            ],
            steps=hard_reset_steps(s.thresholds.hold_up_s, s.thresholds.hold_up_known)[4:],
            assumptions=assumptions,
        )
    if s.state == "off":
        return Diagnosis(
            recommendation="fix_root_cause",
            summary="The BMS has no power.",
            reasons=[
                Reason(
                    text="the BMS is off: its supply through the balance connector is missing", source=seen(s, "state")
                )
            ],
            steps=[
                ProcedureStep(
                    text="Check that the balance connector is plugged in, then the main leads.",
                    action="connect balance_connector",
                    check="booted",
                ),
                ProcedureStep(text="Then connect the main leads.", action="connect main_leads"),
            ],
            assumptions=assumptions,
        )
    present = present_conditions(s)
    if present:
        steps: list[ProcedureStep] = []
        for _, _, remedy in present:
            steps.extend(remedy)
        faults = ", ".join(dict.fromkeys(f for f, _, _ in present))
        return Diagnosis(
            recommendation="fix_root_cause",
            summary=f"The cause is still there ({faults}): fix it first; a reset now would not help.",
            reasons=[r for _, r, _ in present],
            steps=steps,
            assumptions=assumptions,
        )
    hard = _hard_reset_reasons(s)
    if hard:
        return Diagnosis(
            recommendation="hard_reset",
            summary="A soft reset cannot clear this; a hard reset (full power-down of the BMS) is needed.",
            reasons=hard,
            steps=hard_reset_steps(s.thresholds.hold_up_s, s.thresholds.hold_up_known),
            assumptions=assumptions,
        )
    soft = _soft_reset_reasons(s)
    if soft:
        return Diagnosis(
            recommendation="soft_reset",
            summary="The BMS is in protection mode for a reason that has passed: a soft reset brings it back.",
            reasons=soft,
            steps=soft_reset_steps(s.thresholds.charge_voltage_v, asleep=s.state == "sleep"),
            assumptions=assumptions,
        )
    return _none(s, assumptions)


def _cut_off_before_silence(s: Snapshot) -> dict[str, Any] | None:
    """The last recorded low-voltage cut-off (a ``sleep`` event, or an under-voltage fault set)
    with no wake after it, from the board's history; None when the history shows none."""
    found: dict[str, Any] | None = None
    for event in s.events:
        kind = event.get("kind")
        if kind == "sleep" or (kind == "fault_set" and event.get("fault") in ("cell_undervoltage", "deep_discharge")):
            found = event
        elif kind in ("wake", "reset") or (kind == "fault_cleared" and event.get("fault") == "cell_undervoltage"):
            found = None
    return found


def _no_reply(s: Snapshot) -> Diagnosis:
    """The board did not answer: report that, the likely causes in order and how to tell them
    apart. A reset is advised only when the board's history shows a cut-off before the silence."""
    asked: dict[str, Any] = next((e for e in reversed(s.events) if e.get("warning") == "no_answer"), {})
    protocol, port, baud = asked.get("protocol"), asked.get("port"), asked.get("baud")
    how = " ".join(
        part
        for part in (
            f"as {str(protocol).upper()}" if protocol else "",
            f"on {port}" if port else "",
            f"at {baud} baud" if baud else "",
        )
        if part
    )
    detail = str(asked.get("detail") or "").removeprefix("comm_error: ")
    observed = Reason(
        text=f"the BMS did not reply when asked {how}".rstrip()
        + (f" ({detail})" if detail else "")
        + "; nothing was measured",
        source="measured",
        fault="comm_error",
    )
    probe = f"openbms probe {port}" if port else "openbms probe PORT"
    checks = [
        ProcedureStep(
            text=f"Wrong protocol or baud rate (most likely on a first connection): run `{probe}`; it asks as "
            "JBD, Daly and JK at 9600 and 115200 baud and says what answers. JK RS485 boards usually run at "
            "115200, JBD and Daly at 9600 (--baud sets the rate)."
        ),
        ProcedureStep(
            text="Wrong port: the adapter's TX LED should blink at every request; if it stays dark you are "
            "talking to another port (list them in /dev/serial/by-id/)."
        ),
        ProcedureStep(
            text="Wiring: TX blinks but RX never does: swap TX and RX (A and B on RS485), check the common "
            "ground and that the BMS's UART/RS485 port (not its CAN port) is used."
        ),
        ProcedureStep(
            text="The BMS's own power: measure the pack voltage at the BMS's B- and balance connector with a "
            "meter. A BMS with no supply is silent; one asleep after a low-voltage cut-off wakes when a "
            "charger is connected — only if the meter shows low cells.",
            safety="Measure with the loads off; a deeply discharged pack needs a slow recovery charge.",
        ),
        ProcedureStep(
            text="Only when the link answers another board and the BMS has power but stays silent is its "
            "firmware hung: then a hard reset (full power-down) is the remedy."
        ),
    ]
    cut_off = _cut_off_before_silence(s)
    if cut_off is not None:
        when = f" at {cut_off['time']}" if cut_off.get("time") else ""
        if not when and cut_off.get("t_s") is not None:
            when = f" at t={cut_off['t_s']} s"
        return Diagnosis(
            recommendation="soft_reset",
            summary="The BMS did not reply, and its history shows a low-voltage cut-off before the silence: it "
            "is most likely asleep; a charger's voltage wakes it.",
            reasons=[
                observed,
                Reason(
                    text=f"the recorded history shows a low-voltage cut-off{when} and no wake after it",
                    source=recalled(s),
                    fault="cell_undervoltage",
                ),
            ],
            steps=[
                *soft_reset_steps(s.thresholds.charge_voltage_v, asleep=True),
                ProcedureStep(text="If it stays silent with the charger on, check the link:"),
                *checks,
            ],
            assumptions=["nothing was measured now: the cut-off is known only from the recorded history"],
        )
    return Diagnosis(
        recommendation="fix_root_cause",
        summary="The BMS did not reply. Silence alone cannot tell a sleeping or unpowered BMS from a link "
        "problem (a wrong protocol, baud rate or port, swapped wires, a BMS without power or asleep and a hung "
        "BMS all look like this): check the link first, in this order; no reset is advised yet.",
        reasons=[observed, _silence_history(s)],
        steps=checks,
        assumptions=["nothing was measured: cell voltages, temperatures and faults are unknown"],
    )


def _silent(s: Snapshot, assumptions: list[str]) -> Diagnosis:
    """A person sees no sign of life and no soft reset has been tried: a sleeping BMS and a hung one
    look alike until a charger has been tried, and the soft reset is the cheap, low-risk first step
    (the hard reset only when it fails)."""
    seen_dead = Reason(
        text="the BMS shows no sign of life (no lights, app connection or display)", source=seen(s, "state")
    )
    if _resets(s, {"hard"}, {"ok"}):
        return Diagnosis(
            recommendation="fix_root_cause",
            summary="The BMS stays silent even after a complete hard reset: it has no supply or is broken.",
            reasons=[
                seen_dead,
                Reason(text="a complete hard reset was already done and did not bring it back", source=recalled(s)),
            ],
            steps=[
                ProcedureStep(
                    text="Measure the voltage at the balance connector and at the BMS's B- and B+ with a meter: "
                    "a BMS without supply is silent (a loose balance plug, a blown fuse, a broken lead).",
                    safety="Measure with the loads and charger off.",
                ),
                ProcedureStep(
                    text="If the supply is there and it stays silent, have the BMS board checked or replaced.",
                    action="replace the BMS board",
                ),
                ProcedureStep(text=SAFETY_GENERAL),
            ],
            assumptions=assumptions,
        )
    too_short = [
        Reason(
            text="the hard reset already tried was too short: the BMS kept its memory; if one is needed, wait "
            "longer this time",
            source=recalled(s),
            limit=s.thresholds.hold_up_s,
        )
        for _ in _resets(s, {"hard"}, {"incomplete"})[-1:]
    ]
    return Diagnosis(
        recommendation="soft_reset",
        summary="The BMS shows no sign of life and no soft reset has been tried: try it first (a charger's "
        "voltage wakes a sleeping BMS); only if it stays silent, a hard reset.",
        reasons=[
            seen_dead,
            Reason(
                text="no soft reset has been tried yet: a BMS asleep after a cut-off or a protection wakes on a "
                "charger's voltage, and a soft reset is the low-risk first step",
                source=seen(s, "state"),
            ),
            *too_short,
        ],
        steps=[
            *soft_reset_steps(s.thresholds.charge_voltage_v, asleep=True),
            ProcedureStep(text="If it still shows no sign of life, its firmware is hung: do a hard reset:"),
            *hard_reset_steps(s.thresholds.hold_up_s, s.thresholds.hold_up_known),
        ],
        assumptions=assumptions,
    )


def _silence_history(s: Snapshot) -> Reason:
    """What the history says about the silence: no cut-off before it, or that there is none to read."""
    recorded = [e for e in s.events if e.get("warning") != "no_answer"]
    if recorded:
        return Reason(
            text=f"the recorded history ({len(recorded)} events) shows no low-voltage cut-off left standing "
            "before the silence",
            source=recalled(s),
        )
    return Reason(
        text="no history of this board was given, so a cut-off before the silence cannot be known (`openbms "
        "monitor --record FILE` keeps one; `diagnose --history FILE` reads it)",
        source="assumed",
    )


def _service(s: Snapshot, faults: list[str], assumptions: list[str]) -> Diagnosis:
    t = s.thresholds
    reasons: list[Reason] = []
    steps: list[ProcedureStep] = []
    volts = _numbers(s.cell_v) if readings_trusted(s) else []
    for fault in faults:
        if fault == "deep_discharge":
            low = min(volts) if volts else None
            text = (
                f"deep_discharge is kept in non-volatile memory: the cells were drained below "
                f"{t.deep_discharge_v:.2f} V (lowest now {low:.2f} V); no reset clears it"
                if low is not None
                else "deep_discharge is kept in non-volatile memory; no reset clears it"
            )
            reasons.append(
                Reason(
                    text=text,
                    source=seen(s, "faults", *(("cell_v",) if low is not None else ())),
                    fault=fault,
                    measurement="min_cell_v" if low is not None else None,
                    value=low,
                    limit=t.deep_discharge_v if low is not None else None,
                )
            )
            steps += [
                ProcedureStep(
                    text=(
                        f"Recharge slowly: the BMS allows a recovery charge of at most {t.recovery_charge_a:.1f} A "
                        if t.recovery_charge_a is not None
                        else "Recharge slowly (about 0.05 C: 5 A for a 100 Ah pack) "
                    )
                    + f"until the cells are above {t.deep_discharge_v:.2f} V.",
                    safety="A fast charge of deeply discharged lithium cells can damage them; check for swelling "
                    "or heat first.",
                    action=f"recovery charge {t.recovery_charge_a if t.recovery_charge_a is not None else 0.0:.3f}",
                ),
                ProcedureStep(
                    text="Then a technician checks the cells and clears the fault with the BMS's authenticated "
                    "service command; it is refused while the cause persists.",
                    action="service_clear deep_discharge",
                ),
                ProcedureStep(
                    text=f"Charge normally; discharge is allowed again once the cells are above "
                    f"{t.cell_undervoltage_release_v:.2f} V.",
                    action="charge until normal",
                    check="normal",
                ),
            ]
        elif fault == "afe_fault":
            reasons.append(
                Reason(
                    text="the BMS's measuring front end (AFE) or a FET is damaged: the fault is permanent",
                    source=seen(s, "faults"),
                    fault=fault,
                )
            )
            steps.append(
                ProcedureStep(
                    text="Have the BMS board inspected and replaced by a qualified technician.",
                    safety="A FET stuck closed can no longer disconnect the battery: do not use the pack until then.",
                    action="replace the BMS board",
                )
            )
        else:
            reasons.append(
                Reason(
                    text=f"{fault} is a persistent fault kept in non-volatile memory",
                    source=seen(s, "faults"),
                    fault=fault,
                )
            )
            steps.append(
                ProcedureStep(
                    text="Have a qualified technician inspect the pack and clear the fault.", action="call service"
                )
            )
    for event in _resets(s, {"soft", "button", "charger", "hard", "service"}, {"refused"}):
        reasons.append(
            Reason(
                text=f"an earlier {event.get('method')} reset was refused: {event.get('reason', '')}".strip(),
                source=recalled(s),
            )
        )
    return Diagnosis(
        recommendation="service",
        summary=f"A persistent fault ({', '.join(faults)}) needs service; resets cannot clear it.",
        reasons=reasons,
        steps=[*steps, ProcedureStep(text=SAFETY_GENERAL)],
        assumptions=assumptions,
    )


def _sensor_fault_reason(s: Snapshot) -> str:
    """Why the BMS distrusts its readings: its latest judgement, else what its fault_set said."""
    if s.sensor_reason:
        return s.sensor_reason
    for event in reversed(s.events):
        if event.get("kind") == "fault_set" and event.get("fault") == "sensor_fault":
            return str(event.get("reason", ""))
    return ""


def _latched_after_hard_reset(s: Snapshot) -> list[Reason]:
    """Latched faults set again after the last complete hard reset: a reset does not cure them."""
    hard = [
        i
        for i, e in enumerate(s.events)
        if e.get("kind") == "reset" and e.get("method") == "hard" and e.get("result") == "ok"
    ]
    if not hard:
        return []
    after = s.events[hard[-1] :]
    latched_now = {f.fault for f in s.faults if f.klass == "latched"}
    again = sorted({str(e.get("fault")) for e in after if e.get("kind") == "fault_set"} & latched_now)
    return [
        Reason(
            text=f"{fault} latched again after a complete hard reset"
            + (f" at t={s.events[hard[-1]]['t_s']} s" if s.events[hard[-1]].get("t_s") is not None else ""),
            source=recalled(s),
            fault=fault,
        )
        for fault in again
    ]


def _hard_reset_reasons(s: Snapshot) -> list[Reason]:
    reasons: list[Reason] = []
    if s.state == "unresponsive" or (s.responds is False and s.state not in ("sleep", "off")):
        reasons.append(
            Reason(
                text="the BMS does not respond at all (firmware hang): only a power-down restarts it",
                source=seen(s, "responds"),
            )
        )
    for f in s.faults:
        if f.klass == "latched":
            detail = "erratic or implausible readings" if f.fault == "sensor_fault" else f.fault
            reasons.append(
                Reason(
                    text=f"{f.fault} is latched ({detail}); a soft reset cannot clear a latched fault",
                    source=seen(s, "faults"),
                    fault=f.fault,
                )
            )
    refused = _resets(s, {"soft", "button", "charger"}, {"refused"})
    if refused and reasons:
        last = refused[-1]
        reasons.append(
            Reason(
                text=f"an earlier {last.get('method')} soft reset was refused: {last.get('reason', '')}",
                source=recalled(s),
            )
        )
    if _resets(s, {"hard"}, {"incomplete"}) and reasons:
        reasons.append(
            Reason(
                text="an earlier hard reset was too short: the BMS kept its memory; wait longer this time",
                source=recalled(s),
                limit=s.thresholds.hold_up_s,
            )
        )
    if s.cell_replaced:
        reasons.append(
            Reason(
                text="a cell was just replaced: the BMS must re-learn the pack after a hard reset",
                source=seen(s, "cell_replaced"),
            )
        )
    return reasons


# What shows that a fault's cause has passed: the reading a soft-reset reason rests on.
_CAUSE_FIELDS: dict[str, tuple[str, ...]] = {
    "cell_overvoltage": ("cell_v",),
    "cell_undervoltage": ("cell_v",),
    "charge_overcurrent": ("current_a",),
    "discharge_overcurrent": ("load_connected",),
    "short_circuit": ("load_connected",),
    "charge_overtemperature": ("temperature_c",),
    "charge_undertemperature": ("temperature_c",),
    "discharge_overtemperature": ("temperature_c",),
    "discharge_undertemperature": ("temperature_c",),
    "fet_overtemperature": ("fet_temperature_c",),
    "comm_error": ("link_ok",),
}


def _soft_reset_reasons(s: Snapshot) -> list[Reason]:
    reasons: list[Reason] = []
    if s.state == "sleep":
        low = min(_numbers(s.cell_v)) if _numbers(s.cell_v) else None
        text = "the BMS is asleep after a low-voltage cut-off"
        if low is not None:
            text += f" (lowest cell {low:.2f} V)"
        reasons.append(
            Reason(
                text=text + "; a charger's voltage wakes it",
                source=seen(s, "state", *(("cell_v",) if low is not None else ())),
                fault="cell_undervoltage",
                # a limit is cited only beside the measurement it was compared with
                measurement="min_cell_v" if low is not None else None,
                value=low,
                limit=s.thresholds.cell_undervoltage_v if low is not None else None,
            )
        )
    for f in s.faults:
        if f.klass in ("auto", "charger", "load-removal", "soft") and f.fault != "cell_imbalance":
            if f.fault == "cell_undervoltage" and s.state == "sleep":
                continue
            why = {
                "soft": "a stale code from a problem that has passed (the link is healthy again)",
                "load-removal": "the load or short that caused it is gone",
            }.get(f.klass, "its cause has passed")
            source = seen(s, "faults", *_CAUSE_FIELDS.get(f.fault, ()))
            reasons.append(Reason(text=f"{f.fault} is still shown although {why}", source=source, fault=f.fault))
    return reasons


def _none(s: Snapshot, assumptions: list[str]) -> Diagnosis:
    reasons = [Reason(text="no fault blocks the battery: it is working normally", source=seen(s, "state", "faults"))]
    steps: list[ProcedureStep] = []
    if "cell_undervoltage" in s.fault_names:
        reasons = [
            Reason(
                text="a charger is lifting the cells; discharge resumes once they are high enough",
                source=seen(s, "faults", "charger_connected"),
                fault="cell_undervoltage",
            )
        ]
        steps = [ProcedureStep(text="Keep charging; reconnect loads once the BMS allows discharge again.")]
    if "cell_imbalance" in s.fault_names:
        reasons.append(
            Reason(
                text="the cells are out of balance; a full charge lets the BMS balance them",
                source=seen(s, "faults"),
                fault="cell_imbalance",
            )
        )
        steps.append(ProcedureStep(text="Give the battery a full charge and let it rest at the top so it balances."))
    if s.soc_uncertain:
        reasons.append(
            Reason(
                text="the SOC reading is uncertain since a reset: a full charge recalibrates it",
                source=seen(s, "soc_uncertain"),
            )
        )
        steps.append(ProcedureStep(text="Charge fully once: the BMS recalibrates its SOC at the end of the charge."))
    return Diagnosis(
        recommendation="none",
        summary="Nothing needs resetting.",
        reasons=reasons,
        steps=steps,
        assumptions=assumptions,
    )


def _assumptions(s: Snapshot) -> list[str]:
    notes = []
    if s.profile_assumed:
        notes.append(
            f"the board does not say its chemistry: judged against the {s.thresholds.profile} profile's limits "
            "(--profile chooses another)"
        )
    if s.cell_v is None:
        notes.append("cell voltages unknown: damaged cells could not be ruled out from voltages")
    if s.temperature_c is None:
        notes.append("temperature unknown: assumed within the normal range")
    if s.load_connected is None:
        notes.append("unknown whether a load is connected: assumed the loads are off")
    return notes
