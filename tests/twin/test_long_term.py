"""Left alone for days (docs/behaviour.md §6): balancing converges a spread pack, and the SOC count drifts by
no more than what the BMS cannot know (the cells' own self-discharge; the sensor has no offset
here). Small packs at a coarse cycle, so days pass in seconds; `scripts/soak.py` runs the month.
"""

from __future__ import annotations

import numpy as np

from openbms.chemistry import load_chemistry
from openbms.profiles import load_profile
from openbms.twin.cells import Spread
from openbms.twin.pack import Topology
from openbms.twin.simulator import ALL_PACKS, Twin, TwinConfig

DAY_S = 86400.0


def make_twin(capacity_ah: float, soc: float, spread: Spread, dt_s: float) -> Twin:
    return Twin(
        TwinConfig(
            cell=load_chemistry("lfp").scaled_to(capacity_ah),
            topology=Topology(4, 1),
            profile=load_profile("lfp"),
            soc=soc,
            spread=spread,
            dt_s=dt_s,
        ),
        keep_events=False,
    )


def run(twin: Twin, seconds: float, load_a: float = 0.0, charger: tuple[float, float] | None = None) -> None:
    if load_a:
        twin.connect_load(0, current_a=load_a)
    else:
        twin.disconnect_load(0)
    if charger is not None:
        twin.connect_charger(0, *charger)
    else:
        twin.disconnect_charger(0)
    for _ in range(round(seconds / twin.dt_s)):
        twin.step()
        if load_a and twin.pack.group_v.min() <= 2.9:  # the inverter's low-voltage cut-off
            twin.disconnect_load(0)


def top_spread(twin: Twin) -> float:
    """Max − min of the cells' own SOC: a top-balanced pack has all its cells full together."""
    soc = twin.pack.cells.soc
    return float(soc.max() - soc.min())


def test_balancing_converges_a_spread_pack_over_days_of_daily_charging() -> None:
    # 10 Ah cells, SOC spread σ 3 %: the board's 33 Ω resistors bleed ~0.1 A, 1 % of a cell an
    # hour, for as long as the pack sits at the top of its charge. A few days level it.
    twin = make_twin(10.0, 0.6, Spread(capacity=0.0, resistance=0.05, soc=0.03, seed=3), dt_s=5.0)
    spreads = [top_spread(twin)]
    for _ in range(2):
        run(twin, 1.5 * 3600, load_a=5.0)
        run(twin, 3600)
        run(twin, 8 * 3600, charger=(4 * 3.45, 5.0))
        spreads.append(top_spread(twin))
        run(twin, DAY_S - 10.5 * 3600)
    assert spreads[0] > 0.04  # the pack starts several per cent apart
    assert spreads[-1] < 0.01, spreads  # within 1 % of a cell after two days
    assert spreads[1] < spreads[0] and spreads[2] <= spreads[1] + 0.002, spreads
    assert twin.state_name(0) == "normal"
    assert not twin.bms.health.failed.any()


def test_soc_drifts_only_by_the_cells_own_self_discharge() -> None:
    # Partial cycles around 50 %, no full point, no OCV correction on the plateau: the count is
    # all there is. The BMS subtracts its own 10 mA and the coulombic efficiency; what it cannot
    # know is the cells' self-discharge, 0.1 % a day for this chemistry. So the BMS's SOC may run
    # ahead of the truth by about 0.1 % a day (it read 0.42 %/day before it counted its own draw).
    twin = make_twin(100.0, 0.5, Spread(), dt_s=20.0)
    cells = twin.pack.cells
    errors = []
    for _day in range(3):
        for _ in range(4):
            run(twin, 3600, load_a=20.0)
            run(twin, 3600, charger=(4 * 3.60, 20.0))
            run(twin, 4 * 3600)
        truth = float(np.mean(cells.soc))
        errors.append(float(twin.bms.pack_soc[0]) - truth)
    drift_per_day = (errors[-1] - errors[0]) / 2
    self_discharge = load_chemistry("lfp").self_discharge_per_day
    print(f"SOC drift {drift_per_day * 100:.3f} %/day (cells' self-discharge {self_discharge * 100:.2f} %/day)")
    assert 0.5 * self_discharge <= drift_per_day <= 1.5 * self_discharge


def test_no_healthy_pack_on_the_charger_is_condemned_whatever_its_spread() -> None:
    # The case over a batch: 12 spread 16S 100 Ah packs (each its own draw of capacity,
    # resistance, SOC and self-discharge) charged at 56.8 V and left on the charger for 8 h.
    # Their fullest cells trip over-voltage and sink on the steep top; none is a failing cell.
    packs = 12
    twin = Twin(
        TwinConfig(
            cell=load_chemistry("lfp").scaled_to(100.0),
            topology=Topology(16, 1),
            profile=load_profile("lfp"),
            packs=packs,
            soc=0.6,
            spread=Spread(capacity=0.02, resistance=0.05, soc=0.01, self_discharge=0.2, seed=11),
            dt_s=5.0,
        ),
        keep_events=False,
    )
    twin.connect_charger(ALL_PACKS, 56.8, 50.0)
    tripped = np.zeros(packs, dtype=bool)
    for _ in range(round(8 * 3600 / twin.dt_s)):
        twin.step()
        tripped |= twin.bms.active[:, twin.bms.table.index("cell_overvoltage")]
    assert tripped.all()  # every pack met its top: the case that used to condemn a cell
    assert not twin.bms.health.failed.any()
    assert {twin.state_name(p) for p in range(packs)} <= {"normal", "protected"}  # none locked
