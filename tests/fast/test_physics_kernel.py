"""The compiled physics kernel equals the Python twin it reproduces, to 1e-9 V, SOC, A and K.

Why a differential test: ``Pack.advance`` is the reference (readable, reviewed, checked against
PyBaMM), and ``openbms.fast.physics`` only earns its place by computing the same numbers faster.
Each case builds a ``Pack``, closes both FETs and imposes the pack current through a current
profile on its terminals (as ``Twin.set_profile_current`` does), steps it with ``Pack.advance``
and, from a copy of the same starting state, runs the kernel over the whole profile in one call;
every cell voltage after every step, and the final SOC, RC voltages and temperatures, must agree.

The kernel compiles once per session (and numba caches it on disk), so hypothesis' many cases
pay the compile only once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from openbms.chemistry import load_chemistry  # noqa: E402
from openbms.fast import KernelState, advance_many, params_from_pack, state_from_pack  # noqa: E402
from openbms.twin.board import load_board  # noqa: E402
from openbms.twin.cells import Spread  # noqa: E402
from openbms.twin.pack import Pack, Topology  # noqa: E402

FloatArray = npt.NDArray[np.float64]
TOL = 1e-9
BOARD = load_board()


def make_pack(
    chemistry: str,
    packs: int,
    series: int,
    parallel: int = 1,
    soc: float = 0.5,
    temperature_c: float = 25.0,
    spread: Spread | None = None,
    ambient_c: float | None = None,
    supply_draw_a: float = 0.0,
    cooling_factor: float = 1.0,
) -> Pack:
    """A pack driven the way the twin drives a current profile: FETs closed, nothing tripping."""
    pack = Pack(
        load_chemistry(chemistry),
        Topology(series, parallel),
        packs,
        BOARD,
        soc,
        temperature_c,
        spread or Spread(),
        balance_resistance_ohm=33.0,
    )
    pack.charge_fet[:] = True
    pack.discharge_fet[:] = True
    if ambient_c is not None:
        pack.ambient_c[:] = ambient_c
    pack.supply_draw_a[:] = supply_draw_a
    pack.cooling_factor[:] = cooling_factor
    return pack


def run_reference(pack: Pack, currents: FloatArray, dt_s: float) -> FloatArray:
    """``Pack.advance`` step by step under the imposed currents; the cell voltages per step."""
    cell_v = np.empty((currents.shape[0],) + pack.cells.shape)
    for step in range(currents.shape[0]):
        pack.external.profile_a[:] = currents[step]
        result = pack.advance(dt_s, step * dt_s)
        assert np.array_equal(result.current_a, currents[step])  # the current really was imposed
        cell_v[step] = pack.cell_v
    return cell_v


def assert_same(pack: Pack, currents: FloatArray, dt_s: float) -> None:
    """Run both from the pack's present state and compare everything the kernel returns."""
    params = params_from_pack(pack)
    start = state_from_pack(pack)
    before = start.copy()
    state, kernel_v = advance_many(params, start, currents, dt_s)
    reference_v = run_reference(pack, currents, dt_s)
    for got, want in zip(start.arrays(), before.arrays(), strict=True):
        assert np.array_equal(got, want), "advance_many changed the state it was given"
    np.testing.assert_allclose(kernel_v, reference_v, rtol=0, atol=TOL, err_msg="cell voltage")
    np.testing.assert_allclose(state.soc, pack.cells.soc, rtol=0, atol=TOL, err_msg="SOC")
    np.testing.assert_allclose(state.v_rc, pack.cells.v_rc, rtol=0, atol=TOL, err_msg="RC voltages")
    np.testing.assert_allclose(state.temperature_c, pack.cells.temperature_c, rtol=0, atol=TOL, err_msg="cell T")
    np.testing.assert_allclose(state.fet_t_c, pack.fet_t_c, rtol=0, atol=TOL, err_msg="FET temperature")
    np.testing.assert_array_equal(state.current_a, pack.current_a)


def profile(capacity_ah: float, packs: int, steps: int, seed: int) -> FloatArray:
    """Charge, discharge and a rest in constant blocks, then a varying (random-walk) stretch."""
    rng = np.random.default_rng(seed)
    c_rates = np.array([1.0, -1.0, 0.0, -2.0, 0.5, 0.0])
    blocks = np.repeat(c_rates, steps // (2 * c_rates.size) + 1)[: steps // 2]
    constant = np.broadcast_to(blocks[:, None], (blocks.size, packs)) * capacity_ah
    walk = np.clip(np.cumsum(rng.normal(0.0, 0.05, (steps - blocks.size, packs)), axis=0), -2.0, 2.0)
    return np.ascontiguousarray(np.concatenate([constant, walk * capacity_ah]))


SPREAD = Spread(capacity=0.03, resistance=0.08, soc=0.02, self_discharge=0.2, seed=11)


@pytest.mark.parametrize("chemistry", ["lfp", "nmc", "lto"])
@pytest.mark.parametrize(("packs", "series"), [(1, 4), (3, 16)])
@pytest.mark.parametrize("ambient_c", [-10.0, 25.0, 45.0])
def test_kernel_equals_pack_advance_over_thousands_of_steps(
    chemistry: str, packs: int, series: int, ambient_c: float
) -> None:
    pack = make_pack(chemistry, packs, series, soc=0.55, temperature_c=20.0, spread=SPREAD, ambient_c=ambient_c)
    currents = profile(pack.params.capacity_ah, packs, 3000, seed=packs * series)
    assert_same(pack, currents, dt_s=1.0)


def test_parallel_groups_share_their_group_voltage_in_the_kernel_too() -> None:
    pack = make_pack("lfp", 2, 4, parallel=3, spread=SPREAD, supply_draw_a=0.03, ambient_c=35.0)
    assert_same(pack, profile(3 * pack.params.capacity_ah, 2, 2000, seed=5), dt_s=0.5)


def test_a_second_call_continues_where_the_first_stopped() -> None:
    """Splitting a profile between calls changes nothing: the state carries everything."""
    pack = make_pack("nmc", 2, 8, spread=SPREAD)
    params = params_from_pack(pack)
    currents = profile(pack.params.capacity_ah, 2, 1000, seed=3)
    whole, whole_v = advance_many(params, state_from_pack(pack), currents, 1.0)
    half, first_v = advance_many(params, state_from_pack(pack), currents[:500], 1.0)
    rest, second_v = advance_many(params, half, currents[500:], 1.0)
    assert np.array_equal(np.concatenate([first_v, second_v]), whole_v)
    for got, want in zip(rest.arrays(), whole.arrays(), strict=True):
        assert np.array_equal(got, want)


def test_one_profile_for_every_pack_and_bad_inputs_are_refused() -> None:
    pack = make_pack("lto", 3, 4)
    params, state = params_from_pack(pack), state_from_pack(pack)
    _, v_all = advance_many(params, state, np.full(10, -4.2), 1.0)
    _, v_each = advance_many(params, state, np.full((10, 3), -4.2), 1.0)
    assert np.array_equal(v_all, v_each)
    with pytest.raises(ValueError, match="steps, 3"):
        advance_many(params, state, np.zeros((10, 2)), 1.0)
    with pytest.raises(ValueError, match="finite"):
        advance_many(params, state, np.array([0.0, np.nan]), 1.0)
    with pytest.raises(ValueError, match="dt_s"):
        advance_many(params, state, np.zeros(3), 0.0)


def test_what_the_kernel_does_not_model_is_refused_not_dropped() -> None:
    pack = make_pack("lfp", 1, 4)
    pack.balance[0, 1] = True
    with pytest.raises(ValueError, match="balancing"):
        params_from_pack(pack)
    pack.balance[:] = False
    pack.set_internal_short(0, 2, 10.0)
    with pytest.raises(ValueError, match="internal shorts"):
        params_from_pack(pack)


def test_without_numba_the_import_error_says_how_to_get_it() -> None:
    code = "import sys; sys.modules['numba'] = None\nimport openbms.fast"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "pip install 'numba" in proc.stderr


def test_without_numba_the_reference_engine_still_simulates(tmp_path: Path) -> None:
    """numba is a dependency, but an install that lacks it still runs ``--engine reference`` and
    refuses ``--engine fast`` in one sentence (exit 2)."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: short\npack: {chemistry: lfp, series: 4, soc: 0.5}\nbms: {profile: lfp}\ndt: 1s\n"
        "timeline:\n  - run: 5s\n  - expect: {state: normal}\n"
    )
    stub = "import sys, runpy; sys.modules['numba'] = None; sys.argv = ['openbms'] + sys.argv[1:]; "
    stub += "runpy.run_module('openbms.cli', run_name='__main__')"
    ok = subprocess.run(
        [sys.executable, "-c", stub, "simulate", str(scenario), "--engine", "reference"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run([sys.executable, "-c", stub, "simulate", str(scenario)], capture_output=True, text=True)
    assert refused.returncode == 2, refused.stderr
    assert "numba" in refused.stderr and "--engine reference" in refused.stderr and "Traceback" not in refused.stderr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chemistry=st.sampled_from(["lfp", "nmc", "lto"]),
    packs=st.integers(1, 3),
    series=st.integers(1, 6),
    parallel=st.integers(1, 3),
    soc=st.floats(0.02, 0.98),
    temperature_c=st.floats(-20.0, 50.0),
    ambient_c=st.floats(-20.0, 50.0),
    spread=st.builds(
        Spread,
        capacity=st.floats(0.0, 0.05),
        resistance=st.floats(0.0, 0.15),
        soc=st.floats(0.0, 0.05),
        self_discharge=st.floats(0.0, 0.5),
        seed=st.integers(0, 2**16),
    ),
    supply_draw_a=st.floats(0.0, 0.05),
    cooling_factor=st.floats(0.2, 3.0),
    dt_s=st.sampled_from([0.1, 0.5, 1.0, 2.0]),
    c_rates=st.lists(st.floats(-3.0, 2.0) | st.just(0.0), min_size=1, max_size=6),
    steps_per_block=st.integers(1, 250),
    seed=st.integers(0, 2**16),
)
def test_kernel_equals_pack_advance_for_random_packs_and_profiles(
    chemistry: str,
    packs: int,
    series: int,
    parallel: int,
    soc: float,
    temperature_c: float,
    ambient_c: float,
    spread: Spread,
    supply_draw_a: float,
    cooling_factor: float,
    dt_s: float,
    c_rates: list[float],
    steps_per_block: int,
    seed: int,
) -> None:
    pack = make_pack(
        chemistry, packs, series, parallel, soc, temperature_c, spread, ambient_c, supply_draw_a, cooling_factor
    )
    capacity = parallel * pack.params.capacity_ah
    rng = np.random.default_rng(seed)
    blocks = np.repeat(np.array(c_rates), steps_per_block)[:, None] * capacity
    per_pack = rng.uniform(0.5, 1.5, packs)  # every pack its own current
    noise = rng.normal(0.0, 0.1 * capacity, (blocks.shape[0], packs))  # a varying stretch on top
    currents = np.ascontiguousarray(blocks * per_pack + np.where(blocks != 0.0, noise, 0.0))
    assert_same(pack, currents, dt_s)


def test_state_copy_is_independent() -> None:
    pack = make_pack("lfp", 1, 2)
    state = state_from_pack(pack)
    copied: KernelState = state.copy()
    copied.soc[0, 0] = 0.0
    assert state.soc[0, 0] == pytest.approx(0.5)
