"""The twin is physically right: the figures a battery engineer would check first."""

from __future__ import annotations

import numpy as np
import pytest

from openbms.chemistry import load_chemistry
from openbms.profiles import load_profile
from openbms.twin.board import load_board
from openbms.twin.cells import Spread
from openbms.twin.pack import Topology
from openbms.twin.simulator import ALL_PACKS, Twin, TwinConfig


def make_twin(
    soc: float = 0.5,
    series: int = 16,
    parallel: int = 1,
    packs: int = 1,
    spread: Spread | None = None,
    dt_s: float = 0.1,
    overrides: dict[str, object] | None = None,
    board: dict[str, object] | None = None,
    capacity_ah: float = 100.0,
    temperature_c: float = 25.0,
) -> Twin:
    return Twin(
        TwinConfig(
            cell=load_chemistry("lfp").scaled_to(capacity_ah),
            topology=Topology(series, parallel),
            profile=load_profile("lfp", overrides or {}),
            packs=packs,
            soc=soc,
            temperature_c=temperature_c,
            spread=spread or Spread(),
            dt_s=dt_s,
            board=load_board(overrides=board or {}),
        )
    )


def run_until(twin: Twin, predicate, limit_s: float) -> float:  # type: ignore[no-untyped-def]
    while twin.t_s < limit_s:
        twin.step()
        if predicate(twin):
            return twin.t_s
    raise AssertionError(f"condition not reached within {limit_s} s")


def test_full_pack_at_1c_trips_undervoltage_after_50_to_62_minutes() -> None:
    twin = make_twin(soc=1.0, spread=Spread(capacity=0.02, resistance=0.05, soc=0.0, seed=7))
    twin.connect_load(0, current_a=100.0)
    t_trip = run_until(twin, lambda t: "cell_undervoltage" in t.bms.active_faults(0), 3 * 3600)
    assert 50 * 60 <= t_trip <= 62 * 60
    assert not twin.pack.discharge_fet[0]


def test_cell_voltage_relaxes_to_the_ocv_table_at_rest() -> None:
    twin = make_twin(soc=0.6)
    twin.connect_load(0, current_a=50.0)
    twin.dt_s = 1.0
    twin.run(1200)
    loaded_gap = np.abs(twin.pack.cell_v - twin.pack.cells.ocv_v()).max()
    twin.disconnect_load(0)
    twin.run(2 * 3600)
    gap = np.abs(twin.pack.cell_v - twin.pack.cells.ocv_v()).max()
    assert loaded_gap > 0.03  # under load the terminal voltage really is off the OCV
    assert gap <= 0.010


def test_cc_cv_charge_ends_in_constant_voltage_with_a_falling_tail_current() -> None:
    twin = make_twin(soc=0.85, dt_s=1.0)
    twin.connect_charger(0, 16 * 3.45, 50.0)
    currents, volts = [], []
    for _ in range(3 * 3600):
        twin.step()
        currents.append(float(twin.pack.current_a[0]))
        volts.append(float(twin.pack.pack_v[0]))
    currents_a = np.array(currents)
    assert currents_a[10] == pytest.approx(50.0, rel=1e-6)  # constant-current phase
    cv_start = int(np.argmax(currents_a < 49.0))
    assert 0 < cv_start < len(currents_a) - 600
    tail = currents_a[cv_start:]
    assert np.all(np.diff(tail) <= 1e-9)  # the tail current only falls
    assert tail[-1] < 0.2 * tail[0]
    # In CV the terminal voltage sits at the set point less the FETs' drop.
    fet_drop_v = 2 * 0.0005 * tail[-1]
    assert volts[-1] == pytest.approx(16 * 3.45 - fet_drop_v, abs=0.01)


def test_cells_warm_under_load_and_cool_at_rest() -> None:
    twin = make_twin(soc=0.9, dt_s=1.0)
    twin.connect_load(0, current_a=100.0)
    twin.run(1800)
    warm = twin.pack.cells.temperature_c.copy()
    assert np.all(warm > 25.5)
    assert np.all(warm < 45.0)
    twin.disconnect_load(0)
    twin.run(3 * 3600)
    cool = twin.pack.cells.temperature_c
    assert np.all(cool < warm - 2.0)
    assert np.all(cool >= 25.0 - 1e-9)


def test_fets_really_gate_the_current() -> None:
    twin = make_twin(soc=0.5)
    twin.connect_load(0, current_a=20.0)
    twin.step()
    assert twin.pack.current_a[0] == pytest.approx(-20.0)
    twin.pack.discharge_fet[:] = False
    twin.pack.advance(0.1, twin.t_s)
    assert twin.pack.current_a[0] == 0.0
    twin.disconnect_load(0)
    twin.connect_charger(0, 58.0, 10.0)
    twin.pack.advance(0.1, twin.t_s)
    assert twin.pack.current_a[0] == pytest.approx(10.0)  # charging still flows
    twin.pack.charge_fet[:] = False
    twin.pack.discharge_fet[:] = True
    twin.pack.advance(0.1, twin.t_s)
    assert twin.pack.current_a[0] == 0.0


def test_parallel_cells_share_their_group_voltage() -> None:
    twin = make_twin(soc=0.5, series=4, parallel=3, spread=Spread(capacity=0.05, resistance=0.1, soc=0.03, seed=3))
    twin.connect_load(0, current_a=150.0)
    twin.run(100)
    cell_v = twin.pack.cell_v.reshape(1, 4, 3)
    assert np.allclose(cell_v, cell_v[:, :, :1], atol=1e-9)
    cell_i = twin.pack.cell_current_a.reshape(1, 4, 3)
    assert np.allclose(cell_i.sum(axis=2), -150.0)
    assert np.ptp(cell_i[0, 0]) > 0.1  # unequal cells carry unequal shares


def test_spread_is_reproducible_from_its_seed() -> None:
    spread = Spread(capacity=0.02, resistance=0.05, soc=0.01, self_discharge=0.2, seed=11)
    a, b = make_twin(spread=spread), make_twin(spread=spread)
    c = make_twin(spread=Spread(capacity=0.02, resistance=0.05, soc=0.01, self_discharge=0.2, seed=12))
    assert np.array_equal(a.pack.cells.capacity_ah, b.pack.cells.capacity_ah)
    assert np.array_equal(a.pack.cells.soc, b.pack.cells.soc)
    assert not np.array_equal(a.pack.cells.capacity_ah, c.pack.cells.capacity_ah)
    assert np.std(a.pack.cells.capacity_ah) > 0


def test_power_and_resistance_loads_draw_what_physics_says() -> None:
    twin = make_twin(soc=0.5)
    twin.connect_load(0, power_w=3000.0)
    twin.run(10)
    terminal_v = twin.pack.pack_v[0] + 2 * 0.0005 * twin.pack.current_a[0]
    assert -twin.pack.current_a[0] * terminal_v == pytest.approx(3000.0, rel=0.01)
    twin.connect_load(0, resistance_ohm=1.0)
    twin.run(10)
    terminal_v = twin.pack.pack_v[0] + 2 * 0.0005 * twin.pack.current_a[0]
    assert -twin.pack.current_a[0] == pytest.approx(terminal_v / 1.0, rel=0.01)


def test_short_circuit_is_cut_inside_the_step_not_at_the_next_cycle() -> None:
    twin = make_twin(soc=0.8, dt_s=0.1)
    twin.run(5)
    t_before = twin.t_s
    soc_before = twin.pack.cells.soc.copy()
    twin.short(0, 0.005)
    events = twin.step()
    trips = [e for e in events if e.kind == "fault_set" and e.fields["fault"] == "short_circuit"]
    assert len(trips) == 1
    assert trips[0].t_s == pytest.approx(t_before + 300e-6, abs=1e-9)
    assert not twin.pack.charge_fet[0] and not twin.pack.discharge_fet[0]
    # Only 300 µs of short-circuit current flowed, not a whole 100 ms cycle.
    short_a = trips[0].fields["value"] * 100.0
    drawn_ah = float((soc_before - twin.pack.cells.soc).mean()) * 100.0
    assert drawn_ah == pytest.approx(short_a * 300e-6 / 3600.0, rel=0.05)


def test_afe_measures_with_its_resolution_and_noise() -> None:
    twin = make_twin(
        soc=0.5,
        board={"afe.cell_v_resolution_v": 0.005, "afe.cell_v_noise_v": 0.0},
    )
    twin.step()
    measured = twin.last_measurements.cell_v
    assert np.allclose(np.round(measured / 0.005) * 0.005, measured)
    assert np.all(np.abs(measured - twin.pack.group_v) <= 0.0025 + 1e-12)
    noisy = make_twin(
        soc=0.5,
        board={"afe.cell_v_resolution_v": 0.0, "afe.cell_v_noise_v": 0.002},
    )
    errors = []
    for _ in range(50):
        noisy.step()
        errors.append(noisy.last_measurements.cell_v - noisy.pack.group_v)
    assert np.std(errors) == pytest.approx(0.002, rel=0.15)


def test_a_batch_of_identical_packs_matches_a_single_pack() -> None:
    quiet = {
        "afe.cell_v_noise_v": 0.0,
        "afe.current_noise_a": 0.0,
        "afe.temperature_noise_c": 0.0,
    }
    single = make_twin(soc=0.7, board=quiet)
    batch = make_twin(soc=0.7, packs=3, board=quiet)
    for twin in (single, batch):
        twin.connect_load(ALL_PACKS, current_a=60.0)
    batch.connect_load(2, current_a=0.0)  # connected, drawing nothing
    single.run(600)
    batch.run(600)
    assert np.allclose(batch.pack.cell_v[0], single.pack.cell_v[0])
    assert np.allclose(batch.pack.cell_v[1], single.pack.cell_v[0])
    assert not np.allclose(batch.pack.cell_v[2], single.pack.cell_v[0])
