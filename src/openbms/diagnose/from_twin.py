"""A diagnosis snapshot of one pack of a running twin: what its BMS reports, nothing more.

Only what a real BMS (or a person at the battery) could know goes in: the BMS's state, faults,
measurements, learned values and event history, and what is plugged into the terminals. The
twin's hidden truth (which fault was injected) stays out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openbms.bms.plausibility import REASONS
from openbms.diagnose.engine import diagnose
from openbms.diagnose.snapshot import ActiveFault, Snapshot, Thresholds
from openbms.twin.simulator import Twin

RECENT_EVENTS = 200


def _clean(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 4) for v in values]


def snapshot_of(twin: Twin, pack: int = 0, events: list[dict[str, Any]] | None = None) -> Snapshot:
    bms = twin.bms
    m = twin.last_measurements
    state = twin.state_name(pack)
    responds = state not in ("unresponsive", "off")
    memory = bms.persistent_snapshot(pack)
    history = events if events is not None else [e.as_dict() for e in twin.events if e.pack == pack]
    ext = twin.pack.external
    if not responds:
        # Nothing can be read from a BMS that is off or hung: only what a person sees and knows.
        return Snapshot(
            source="twin",
            t_s=round(twin.t_s, 3),
            state=state,
            responds=False,
            cell_replaced=bool(twin.cells_replaced[pack]),
            charger_connected=bool(ext.charger_connected[pack]),
            events=history[-RECENT_EVENTS:],
            thresholds=Thresholds.from_profile(bms.profile, bms.pack.series, bms.pack.capacity_ah),
            sensor_reason=None,
        )
    return Snapshot(
        source="twin",
        t_s=round(twin.t_s, 3),
        state=state,
        faults=[ActiveFault.model_validate(f) for f in bms.fault_details(pack)],
        warnings=bms.active_warnings(pack),
        charge_fet=bool(twin.pack.charge_fet[pack]),
        discharge_fet=bool(twin.pack.discharge_fet[pack]),
        cell_v=_clean(m.cell_v[pack]),
        temperature_c=_clean(m.cell_t_c[pack]),
        fet_temperature_c=round(float(m.fet_t_c[pack]), 2),
        current_a=round(float(m.current_a[pack]), 3),
        pack_v=round(float(m.stack_v[pack]), 3),
        soc=round(float(bms.pack_soc[pack]), 4),
        soc_uncertain=bool(bms.soc.uncertain[pack]),
        soh=memory["soh"],
        failed_cells=memory["failed_cells"],
        charger_connected=bool(ext.charger_connected[pack]),
        load_connected=bool(m.load_present[pack]),
        link_ok=bool(m.link_ok[pack]),
        responds=responds,
        cell_replaced=bool(twin.cells_replaced[pack]),
        sensor_reason=REASONS[int(bms.sensors.reason[pack])] or None,
        events=history[-RECENT_EVENTS:],
        thresholds=Thresholds.from_profile(bms.profile, bms.pack.series, bms.pack.capacity_ah),
    )


def diagnosis_of(twin: Twin, pack: int = 0) -> tuple[str, str]:
    """What the diagnosis recommends for ``pack`` of the twin and its first reason, from the whole
    event log: the ``Diagnoser`` the scenario runner checks a ``diagnosis`` expectation with."""
    verdict = diagnose(snapshot_of(twin, pack, [e.as_dict() for e in twin.events]))
    return verdict.recommendation, verdict.reasons[0].text
