"""The compiled AFE measurement reads what the Python ``AnalogFrontEnd`` reads, bit for bit.

Why a differential test: ``twin.afe.AnalogFrontEnd.measure`` (through ``_noisy`` / ``_quantise``)
defines the readings the brain gets; ``openbms.fast.afe`` only earns its place by giving the same
numbers for many cycles in one call. Two AFEs are built as ``twin/simulator.py`` builds one (the
board's AFE settings, the scenario seed, packs, series) with the same seed: one is asked
``measure`` cycle by cycle, the other has its noise drawn by ``draw_noise`` and its readings
computed by ``measure_many``. Readings must agree exactly (the kernel does the same IEEE operations
in the same order), and both generators must end in the same state, so the Python AFE can take over
where the kernel stopped. A faulty AFE is the Python AFE's alone: the kernel refuses it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from openbms.fast import AfeFaultError, AfeNoise, AfeReadings, draw_noise, fault_reason, measure_many  # noqa: E402
from openbms.fast.afe import reference_measure_many  # noqa: E402
from openbms.twin import afe as twin_afe  # noqa: E402
from openbms.twin.afe import AnalogFrontEnd  # noqa: E402
from openbms.twin.board import Afe, default_board  # noqa: E402

FloatArray = npt.NDArray[np.float64]
TOL = 1e-12  # the brief's bound; the kernel in fact matches exactly (checked too)


def board_afe(**overrides: float) -> Afe:
    return default_board().afe.model_copy(update=overrides)


def truths(rng: np.random.Generator, cycles: int, packs: int, series: int, on_grid: bool) -> dict[str, FloatArray]:
    v = rng.uniform(2.5, 4.2, (cycles, packs, series))
    if on_grid:  # exactly between two 1 mV steps, where rounding direction shows
        v = np.round(v * 1000.0) / 1000.0 + 0.0005
    return {
        "true_v": v,
        "true_t_c": rng.uniform(-20.0, 60.0, (cycles, packs, series)),
        "current_a": rng.uniform(-200.0, 200.0, (cycles, packs)),
        "pack_v": v.sum(axis=2) + rng.uniform(-0.01, 0.01, (cycles, packs)),
        "fet_t_c": rng.uniform(-20.0, 90.0, (cycles, packs)),
    }


def reference(afe: AnalogFrontEnd, t: dict[str, FloatArray]) -> AfeReadings:
    """``afe.measure`` cycle by cycle on a stand-in pack carrying the true values."""
    return reference_measure_many(afe, **t)


def kernel(afe: AnalogFrontEnd, t: dict[str, FloatArray]) -> AfeReadings:
    cycles, packs, series = t["true_v"].shape
    return measure_many(afe, **t, noise=draw_noise(afe, cycles, packs, series))


def assert_same(got: AfeReadings, want: AfeReadings) -> None:
    for name in ("cell_v", "cell_t_c", "current_a", "stack_v", "fet_t_c"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL, err_msg=name)
        np.testing.assert_array_equal(a, b, err_msg=f"{name} (bit-identical)")


def run_both(s: Afe, seed: int, t: dict[str, FloatArray]) -> AfeReadings:
    _, packs, series = t["true_v"].shape
    ref_afe = AnalogFrontEnd(s, seed, packs, series)
    fast_afe = AnalogFrontEnd(s, seed, packs, series)
    want = reference(ref_afe, t)
    got = kernel(fast_afe, t)
    assert_same(got, want)
    assert fast_afe.rng.bit_generator.state == ref_afe.rng.bit_generator.state, "generators diverged"
    # and the Python AFE takes over where the kernel left off: the next reading agrees too
    one = {k: v[-1:] for k, v in t.items()}
    assert_same(reference(fast_afe, one), reference(ref_afe, one))
    return got


NOISE_V = st.sampled_from([0.0, 1e-4, 5e-4, 0.01])
STEP_V = st.sampled_from([0.0, 1e-4, 1e-3, 0.005, 0.1])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    packs=st.integers(1, 3),
    series=st.integers(1, 16),
    cycles=st.integers(1, 6),
    seed=st.integers(0, 2**31),
    on_grid=st.booleans(),
    cell_v_noise_v=NOISE_V,
    cell_v_offset_v=st.sampled_from([0.0, -0.002, 0.0031]),
    cell_v_resolution_v=STEP_V,
    stack_v_resolution_v=st.sampled_from([0.0, 0.001, 0.01, 0.5]),
    current_noise_a=st.sampled_from([0.0, 0.05, 3.0]),
    current_offset_a=st.sampled_from([0.0, 0.2, -1.5]),
    current_resolution_a=st.sampled_from([0.0, 0.001, 0.01, 0.5]),
    temperature_noise_c=st.sampled_from([0.0, 0.1, 2.0]),
    temperature_resolution_c=st.sampled_from([0.0, 0.1, 1.0]),
)
def test_kernel_reads_what_the_python_afe_reads(
    packs: int, series: int, cycles: int, seed: int, on_grid: bool, **s: float
) -> None:
    t = truths(np.random.default_rng(seed), cycles, packs, series, on_grid)
    run_both(board_afe(**s), seed, t)


def test_default_board_over_many_cycles() -> None:
    t = truths(np.random.default_rng(3), 200, 3, 16, False)
    run_both(default_board().afe, 42, t)


def test_hand_case_zero_noise_one_millivolt() -> None:
    s = board_afe(cell_v_noise_v=0.0, cell_v_offset_v=0.0, cell_v_resolution_v=0.001)
    t = truths(np.random.default_rng(0), 1, 1, 1, False)
    t["true_v"][:] = 3.3004
    got = run_both(s, 0, t)
    assert abs(got.cell_v[0, 0, 0] - 3.300) < TOL


def test_fresh_draws_beyond_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reading larger than half the pool draws fresh samples (``_gaussian``): the same there."""
    monkeypatch.setattr(twin_afe, "NOISE_POOL_SIZE", 64)
    t = truths(np.random.default_rng(5), 4, 3, 16, False)  # 48 > 32 cells: fresh; current: pool
    run_both(default_board().afe, 9, t)


def test_a_faulty_afe_stays_with_python() -> None:
    afe = AnalogFrontEnd(default_board().afe, 1, 2, 4)
    afe.damaged[0] = True  # damage changes no reading: the kernel may measure
    assert fault_reason(afe) is None
    afe.stuck_v_on[1, 2] = True  # even without faults_changed()
    reason = fault_reason(afe)
    assert reason is not None and "stuck cell-voltage" in reason
    t = truths(np.random.default_rng(1), 2, 2, 4, False)
    state = afe.rng.bit_generator.state
    with pytest.raises(AfeFaultError, match="Python AnalogFrontEnd"):
        draw_noise(afe, 2, 2, 4)
    assert afe.rng.bit_generator.state == state, "a refused draw must not move the generator"
    afe.stuck_v_on[1, 2] = False
    afe.glitch[0] = True
    afe.faults_changed()
    with pytest.raises(AfeFaultError, match="glitching"):
        measure_many(afe, **t, noise=AfeNoise(np.zeros((2, 2, 4)), np.zeros((2, 2, 4)), np.zeros((2, 2))))


@pytest.mark.parametrize("high", [1, 2, 3, 1000, twin_afe.NOISE_POOL_SIZE - 16, 2**31 + 7, 2**32])
def test_the_kernels_draw_is_numpys(high: int) -> None:
    """The kernel picks where the noise starts in the pool as ``Generator.integers(0, high)`` does
    (NumPy itself is the oracle), and leaves the generator where NumPy would: the next draws of
    both agree too, the 32-bit buffer of PCG64 included."""
    from openbms.fast.afe import draw_below

    for seed in range(5):
        ours, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
        got = [draw_below(ours, high) for _ in range(200)]
        assert got == [int(numpys.integers(0, high)) for _ in range(200)]
        assert ours.random() == numpys.random()
