"""A diagnosis snapshot of one pack of a running twin: what its BMS reports, nothing more.

Only what a real BMS (or a person at the battery) could know goes in: the BMS's state, faults,
measurements, learned values and event history, and what is plugged into the terminals. The
twin's hidden truth (which fault was injected) stays out.
"""

from __future__ import annotations

import math
from typing import Any

from openbms.diagnose.engine import diagnose
from openbms.diagnose.snapshot import ActiveFault, Snapshot, Thresholds
from openbms.twin.simulator import Twin

RECENT_EVENTS = 200


def _clean(values: list[float] | None) -> list[float | None]:
    return [None if not math.isfinite(v) else round(v, 4) for v in values or []]


def snapshot_of(twin: Twin, pack: int = 0, events: list[dict[str, Any]] | None = None) -> Snapshot:
    """The diagnosis's view of ``pack``: its reading, its event history and the profile's
    thresholds (the twin's configuration, which a person could look up for a real board)."""
    r = twin.reading(pack)
    state = r.state or "unresponsive"
    responds = state not in ("unresponsive", "off")
    history = events if events is not None else [e.as_dict() for e in twin.events if e.pack == pack]
    bms = twin.bms
    thresholds = Thresholds.from_profile(bms.profile, bms.pack.series, bms.pack.capacity_ah, twin.config.board)
    if not responds:
        # Nothing can be read from a BMS that is off or hung: only what a person sees and knows.
        return Snapshot(
            source="twin",
            t_s=round(twin.t_s, 3),
            state=state,
            responds=False,
            cell_replaced=bool(r.cells_replaced),
            charger_connected=r.charger_connected,
            events=history[-RECENT_EVENTS:],
            thresholds=thresholds,
            sensor_reason=None,
        )
    return Snapshot(
        source="twin",
        t_s=round(twin.t_s, 3),
        state=state,
        faults=[ActiveFault.model_validate(f) for f in r.fault_details or []],
        warnings=r.warnings or [],
        charge_fet=r.charge_fet,
        discharge_fet=r.discharge_fet,
        cell_v=_clean(r.cell_v),
        temperature_c=_clean(r.temperature_c),
        fet_temperature_c=_rounded(r.fet_temperature_c, 2),
        current_a=_rounded(r.current_a, 3),
        pack_v=_rounded(r.pack_v, 3),
        soc=_rounded(r.soc, 4),
        soc_uncertain=r.soc_uncertain,
        soh=r.soh,
        failed_cells=r.failed_cells or [],
        charger_connected=r.charger_connected,
        load_connected=r.load_present,
        link_ok=r.link_ok,
        responds=responds,
        cell_replaced=bool(r.cells_replaced),
        sensor_reason=r.sensor_reason or None,
        events=history[-RECENT_EVENTS:],
        thresholds=thresholds,
    )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def diagnosis_of(twin: Twin, pack: int = 0) -> tuple[str, str]:
    """What the diagnosis recommends for ``pack`` of the twin and its first reason, from the whole
    event log: the ``Diagnoser`` the scenario runner checks a ``diagnosis`` expectation with."""
    verdict = diagnose(snapshot_of(twin, pack, [e.as_dict() for e in twin.events]))
    return verdict.recommendation, verdict.reasons[0].text
