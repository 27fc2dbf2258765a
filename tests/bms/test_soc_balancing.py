"""docs/behaviour.md §6: SOC by coulomb counting, OCV correction where the curve allows it, full-charge
recalibration, learned capacity, and passive balancing under the stated conditions."""

from __future__ import annotations

import numpy as np
import pytest
from test_protections import CAPACITY_AH, DT_S, SERIES, Driver, cells, measurements, of

from openbms.bms.brain import Bms, PackConfig
from openbms.chemistry import load_chemistry
from openbms.profiles import load_profile

OCV = load_chemistry("lfp").ocv


def driver_at(soc: float, overrides: dict[str, object] | None = None) -> Driver:
    d = Driver(overrides)
    d.bms = Bms(d.profile, PackConfig(SERIES, CAPACITY_AH, OCV), initial_soc=np.full(SERIES, soc))
    return d


def test_coulomb_counting_follows_the_charge_that_flowed() -> None:
    d = driver_at(0.5)
    d.run(360.0, current_a=-50.0)  # 5 Ah out of 100 Ah
    assert d.bms.pack_soc[0] == pytest.approx(0.45, abs=1e-3)
    assert d.bms.soc.counters.discharge_ah[0] == pytest.approx(5.0, rel=1e-3)
    d.run(720.0, current_a=25.0)  # 5 Ah back in
    assert d.bms.pack_soc[0] == pytest.approx(0.50, abs=1e-3)


def test_ocv_corrects_soc_after_a_rest_where_the_curve_is_steep() -> None:
    d = driver_at(0.30, {"soc.ocv_rest_s": 60})
    low_v = float(OCV.voltage_v(np.array([0.05]))[0])  # the steep knee of LFP
    events = d.run(70.0, cell_v=low_v)
    (event,) = of(events, "soc_recalibrated")
    assert event.fields["by"] == "ocv"
    assert d.bms.soc.soc[0] == pytest.approx(np.full(SERIES, 0.05), abs=0.01)


def test_ocv_is_not_trusted_on_the_flat_lfp_plateau() -> None:
    d = driver_at(0.30, {"soc.ocv_rest_s": 60})
    plateau_v = float(OCV.voltage_v(np.array([0.60]))[0])
    events = d.run(200.0, cell_v=plateau_v)
    assert of(events, "soc_recalibrated") == []
    assert d.bms.pack_soc[0] == pytest.approx(0.30, abs=1e-3)


def test_a_full_charge_recalibrates_to_100_percent_and_clears_uncertainty() -> None:
    d = driver_at(0.80)
    d.bms.soc.uncertain[0] = True  # as after a hard reset
    tail = measurements(cell_v=3.46, current_a=0.04 * CAPACITY_AH)  # above 3.45 V, below 0.05 C
    events = d.run(59.0, tail)
    assert of(events, "soc_recalibrated") == []  # not before 60 s
    events = d.run(2.0, tail)
    (event,) = of(events, "soc_recalibrated")
    assert event.fields["by"] == "full_charge"
    assert d.bms.pack_soc[0] == pytest.approx(1.0)
    assert not d.bms.soc.uncertain[0]


def test_a_high_tail_current_is_not_a_full_charge() -> None:
    d = driver_at(0.80)
    events = d.run(120.0, cell_v=3.46, current_a=0.2 * CAPACITY_AH)
    assert of(events, "soc_recalibrated") == []


def test_capacity_is_learned_between_a_full_and_an_empty_point() -> None:
    d = driver_at(0.95)
    d.run(61.5, cell_v=3.46, current_a=2.0)  # full point
    d.run(3600.0 * 0.9 * 80 / 80, current_a=-80.0)  # 72 Ah out
    event = d.run_until_event("fault_set", "cell_undervoltage", 5.0, cell_v=cells(3.0, 2.45, 3.0, 3.0))
    assert event.fields["cell"] == 2
    learned = d.bms.soc.capacity_ah[0]
    assert learned == pytest.approx(72.0 + 80.0 * 2.1 / 3600.0, rel=0.01)
    assert d.bms.persistent_snapshot(0)["soh"] == pytest.approx(learned / CAPACITY_AH, rel=1e-3)


# ----------------------------------------------------------------------------- balancing
def balancing_after(seconds: float, **changes: object) -> np.ndarray:
    d = driver_at(0.9)
    d.run(seconds, **changes)
    return d.bms.balance[0].copy()


SPREAD = cells(3.45, 3.47, 3.455, 3.45)  # cell 2 is 20 mV high, cell 3 only 5 mV


def test_balancing_bleeds_cells_more_than_10_mv_above_the_lowest_while_charging_near_the_top() -> None:
    assert balancing_after(1.0, cell_v=SPREAD, current_a=10.0).tolist() == [False, True, False, False]


def after_a_top(d: Driver) -> Driver:
    """Charge briefly near the top: from here on, rest is balancing time (docs/behaviour.md §6)."""
    d.run(1.0, cell_v=cells(3.45, 3.45, 3.45, 3.45), current_a=10.0)
    return d


def test_balancing_runs_at_rest_after_a_top_of_charge() -> None:
    d = after_a_top(driver_at(0.9))
    d.run(1.0, cell_v=cells(3.30, 3.32, 3.30, 3.30))
    assert d.bms.balance[0].tolist() == [False, True, False, False]


def test_no_balancing_at_rest_without_a_top_or_after_a_discharge() -> None:
    # Resting in the middle or at the bottom is no time to bleed the high cells: that would
    # bottom-balance a pack that a top-balancing BMS keeps level at the top.
    assert not balancing_after(1.0, cell_v=cells(3.30, 3.32, 3.30, 3.30)).any()
    d = after_a_top(driver_at(0.9))
    d.run(60.0, cell_v=cells(3.30, 3.32, 3.30, 3.30), current_a=-10.0)  # 0.17 Ah out: still the top
    d.run(1.0, cell_v=cells(3.30, 3.32, 3.30, 3.30))
    assert d.bms.balance[0].tolist() == [False, True, False, False]
    d.run(360.0, cell_v=cells(3.30, 3.32, 3.30, 3.30), current_a=-10.0)  # 1.2 Ah of 100: discharged
    d.run(1.0, cell_v=cells(3.30, 3.32, 3.30, 3.30))
    assert not d.bms.balance[0].any()


def test_no_balancing_while_charging_low_or_discharging() -> None:
    assert not balancing_after(1.0, cell_v=cells(3.30, 3.32, 3.30, 3.30), current_a=10.0).any()
    assert not balancing_after(1.0, cell_v=SPREAD, current_a=-10.0).any()


def test_no_balancing_above_50_c_or_during_a_temperature_fault() -> None:
    assert not balancing_after(1.0, cell_v=SPREAD, current_a=10.0, cell_t_c=cells(25, 25, 51, 25)).any()
    d = driver_at(0.9)
    d.run(3.0, cell_v=SPREAD, current_a=10.0, cell_t_c=cells(25, 25, 46, 25))  # 46 °C: charge over-temperature
    assert "charge_overtemperature" in d.bms.active_faults(0)
    assert not d.bms.balance[0].any()


def test_an_overvoltage_hold_bleeds_the_high_cells() -> None:
    # docs/behaviour.md §6: while cell_overvoltage holds the charge FET open, a top-balancing BMS does its work.
    d = driver_at(0.9)
    d.run(1.2, cell_v=cells(3.45, 3.47, 3.45, 3.70), current_a=10.0)  # over-voltage on cell 4
    assert d.bms.active_faults(0) == ["cell_overvoltage"]
    d.run(5.0, cell_v=cells(3.45, 3.47, 3.45, 3.66))  # charge FET open: no current, the trip holds
    assert d.bms.balance[0].tolist() == [False, True, False, True]


def test_a_bleeding_cell_goes_on_until_within_half_the_threshold() -> None:
    d = after_a_top(driver_at(0.9))
    d.run(1.0, cell_v=cells(3.30, 3.32, 3.30, 3.30))
    assert d.bms.balance[0, 1]
    d.run(1.0, cell_v=cells(3.30, 3.308, 3.30, 3.30))  # 8 mV: below 10, above 5
    assert d.bms.balance[0, 1]
    d.run(1.0, cell_v=cells(3.30, 3.304, 3.30, 3.30))
    assert not d.bms.balance[0, 1]


def test_profile_thresholds_drive_balancing() -> None:
    profile = load_profile("lfp", {"balancing.threshold_v": 0.03})
    assert profile.balancing.threshold_v == 0.03
    d = after_a_top(driver_at(0.9, {"balancing.threshold_v": 0.03}))
    d.run(1.0, cell_v=cells(3.30, 3.32, 3.30, 3.30))
    assert not d.bms.balance[0].any()
    assert DT_S == 0.1


# ----------------------------------------------------------------------------- known draws
QUIESCENT_A = 0.010  # lfp profile, board_draw.awake_a
BLEED_OHM = 33.0  # lfp profile, balancing.bleed_resistance_ohm


def run_coarse(d: Driver, duration_s: float, step_s: float = 10.0, **changes: object) -> None:
    """Long stretches at a coarse cycle (the brain takes its dt from the times it is given)."""
    m = measurements(**changes)
    t0 = d.t_s
    if d.bms._t_last_s is None:
        d.bms.step(m, t0 - 0.1)  # the brain's first cycle: from here it counts real time
    for k in range(1, round(duration_s / step_s) + 1):
        d.bms.step(m, t0 + k * step_s)
    d.k += round(duration_s / DT_S)


def test_the_count_subtracts_the_bms_own_draw_at_rest() -> None:
    # A day at rest: the board took 10 mA × 24 h = 0.24 Ah from every cell of a 100 Ah pack.
    d = driver_at(0.5)
    run_coarse(d, 24 * 3600.0)
    assert d.bms.pack_soc[0] == pytest.approx(0.5 - 0.24 / CAPACITY_AH, abs=2e-5)


def test_the_count_applies_the_coulombic_efficiency_to_charge() -> None:
    # 20 A for an hour into cells that keep 99 % of it: +19.8 Ah, less 0.01 Ah of the board's own draw.
    d = Driver()
    d.bms = Bms(
        d.profile, PackConfig(SERIES, CAPACITY_AH, OCV, coulombic_efficiency=0.99), initial_soc=np.full(SERIES, 0.3)
    )
    run_coarse(d, 3600.0, current_a=20.0)
    assert d.bms.pack_soc[0] == pytest.approx(0.3 + (19.8 - QUIESCENT_A) / CAPACITY_AH, abs=2e-5)


def test_the_count_subtracts_the_balancing_bleed_from_the_bled_cell_only() -> None:
    d = after_a_top(driver_at(0.9))
    soc_before = d.bms.soc.soc[0].copy()
    run_coarse(d, 3600.0, cell_v=cells(3.30, 3.32, 3.30, 3.30))  # cell 2 bleeds for an hour at 3.32 V
    assert d.bms.balance[0].tolist() == [False, True, False, False]
    lost = (soc_before - d.bms.soc.soc[0]) * CAPACITY_AH
    assert lost[0] == pytest.approx(QUIESCENT_A, rel=0.01)
    assert lost[1] == pytest.approx(QUIESCENT_A + 3.32 / BLEED_OHM, rel=0.01)
