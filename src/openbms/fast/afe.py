"""The AFE's fault-free measurement as one compiled kernel: many control cycles per call, every pack.

Why: ``twin.afe.AnalogFrontEnd.measure`` adds Gaussian noise and an offset to the true cell
voltages, temperatures and current and quantises them (and quantises the stack voltage and the FET
temperature), one NumPy call per quantity per cycle. This kernel does the same arithmetic over a
whole span of cycles, so a fast path that already knows the true values of many cycles (from
``fast.physics``) gets the readings without a Python call per cycle.

The noise: the kernel draws nothing. numba's generator is not numpy's ``Generator``, so the caller
draws the standard-normal samples with ``draw_noise`` from the AFE's own generator and pool, in the
order and shapes ``measure`` draws them (per cycle: cell voltages if their noise is on, then
temperatures, then current; each through ``AnalogFrontEnd._gaussian``). The AFE's generator is left
exactly where that many ``measure`` calls would leave it, so the Python AFE can take over afterwards
and go on reading the same numbers. The arithmetic is written operation by operation as
``_noisy``/``_quantise`` do (``x + sd * z``, then ``+ offset``, then ``rint(y / step) * step``:
``np.round`` with no decimals is ``rint``, halves to even), so the readings are bit-identical.

What it does not cover: an AFE with any fault injected (stuck or drifting sensor, open balance
wire, glitch). Those stay with the Python AFE; ``fault_reason`` says which one is present and
``draw_noise`` / ``measure_many`` refuse such an AFE with that reason. Damage alone does not change
a reading (it only sets ``afe_damaged``), so it is not refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit
from numba.np.random.generator_core import next_uint32
from numba.np.random.random_methods import buffered_bounded_lemire_uint32

from openbms.twin.afe import AnalogFrontEnd
from openbms.twin.board import Afe

FloatArray = npt.NDArray[np.float64]

_FAULTS = (
    ("stuck_v_on", "a stuck cell-voltage sensor"),
    ("stuck_t_on", "a stuck temperature sensor"),
    ("stuck_i_on", "a stuck current sensor"),
    ("drift_v_per_h", "a drifting cell-voltage sensor"),
    ("drift_t_per_h", "a drifting temperature sensor"),
    ("drift_i_per_h", "a drifting current sensor"),
    ("drift_offset_v", "an accumulated cell-voltage drift"),
    ("drift_offset_t", "an accumulated temperature drift"),
    ("drift_offset_i", "an accumulated current drift"),
    ("open_wire", "an open balance wire"),
    ("glitch", "an erratic (glitching) AFE"),
)


class AfeFaultError(ValueError):
    """The AFE has a fault injected: the Python ``AnalogFrontEnd`` must measure, not the kernel."""


def fault_reason(afe: AnalogFrontEnd) -> str | None:
    """Why the kernel must not measure for ``afe`` (the first fault found), or None if it may.

    Looks at the fault arrays themselves, not only ``_any_fault``, so a fault injected without a
    call to ``faults_changed`` is refused too."""
    for name, what in _FAULTS:
        if np.asarray(getattr(afe, name)).any():
            return f"the AFE has {what} ({name}); faulty AFEs are measured by the Python AnalogFrontEnd"
    if afe._any_fault:
        return "the AFE reports a fault (_any_fault); faulty AFEs are measured by the Python AnalogFrontEnd"
    return None


def _refuse_faulty(afe: AnalogFrontEnd) -> None:
    reason = fault_reason(afe)
    if reason is not None:
        raise AfeFaultError(reason)


@dataclass
class AfeNoise:
    """Standard-normal samples for ``cycles`` calls of ``measure``: cell voltages and temperatures
    (cycles, packs, series), current (cycles, packs). A quantity whose noise is off draws nothing
    and gets zeros here (the kernel does not read them)."""

    cell_v: FloatArray
    cell_t: FloatArray
    current: FloatArray


def draw_noise(afe: AnalogFrontEnd, cycles: int, packs: int, series: int) -> AfeNoise:
    """Draw, from ``afe``'s generator and pool, what ``cycles`` calls of ``measure`` would draw,
    in the same order; ``afe``'s generator ends where those calls would leave it."""
    _refuse_faulty(afe)
    s = afe.settings
    noise = AfeNoise(np.zeros((cycles, packs, series)), np.zeros((cycles, packs, series)), np.zeros((cycles, packs)))
    cell_shape, pack_shape = (packs, series), (packs,)
    for c in range(cycles):
        if s.cell_v_noise_v > 0:
            noise.cell_v[c] = afe._gaussian(cell_shape)
        if s.temperature_noise_c > 0:
            noise.cell_t[c] = afe._gaussian(cell_shape)
        if s.current_noise_a > 0:
            noise.current[c] = afe._gaussian(pack_shape)
    return noise


@njit(cache=True)
def draw_below(rng: np.random.Generator, high: int) -> np.int64:  # pragma: no cover - compiled
    """``rng.integers(0, high)`` for 0 < high ≤ 2**32, the same number NumPy draws (Lemire's
    bounded method on the bit generator's buffered 32-bit output, as ``random_bounded_uint64``).

    Why not numba's own ``integers``: it allocates a one-element array per call, and the kernel
    draws three numbers every cycle."""
    span = np.int64(high) - np.int64(1)
    if span <= 0:
        return np.int64(0)
    if span > 0xFFFFFFFF:
        raise ValueError("draw_below draws below 2**32 at most")
    if span == 0xFFFFFFFF:
        return np.int64(next_uint32(rng.bit_generator))
    return np.int64(buffered_bounded_lemire_uint32(rng.bit_generator, span))


@njit(cache=True, inline="always")
def _quantise(x: float, step: float) -> float:  # pragma: no cover - compiled
    if step <= 0:
        return x
    return np.rint(x / step) * step


@njit(cache=True, inline="always")
def _noisy(x: float, z: float, sd: float, offset: float, step: float) -> float:  # pragma: no cover - compiled
    if sd > 0:
        x = x + sd * z
    return _quantise(x + offset, step)


@njit(cache=True)
def _measure_kernel(
    true_v: FloatArray,
    true_t: FloatArray,
    true_i: FloatArray,
    pack_v: FloatArray,
    fet_t: FloatArray,
    z_v: FloatArray,
    z_t: FloatArray,
    z_i: FloatArray,
    settings: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:  # pragma: no cover - compiled
    v_sd, v_off, v_step, stack_step, i_sd, i_off, i_step, t_sd, t_step = (
        settings[0],
        settings[1],
        settings[2],
        settings[3],
        settings[4],
        settings[5],
        settings[6],
        settings[7],
        settings[8],
    )
    cycles, packs, series = true_v.shape
    cell_v = np.empty_like(true_v)
    cell_t = np.empty_like(true_t)
    current = np.empty_like(true_i)
    stack_v = np.empty_like(pack_v)
    fet_t_c = np.empty_like(fet_t)
    for c in range(cycles):
        for p in range(packs):
            for k in range(series):
                cell_v[c, p, k] = _noisy(true_v[c, p, k], z_v[c, p, k], v_sd, v_off, v_step)
                cell_t[c, p, k] = _noisy(true_t[c, p, k], z_t[c, p, k], t_sd, 0.0, t_step)
            current[c, p] = _noisy(true_i[c, p], z_i[c, p], i_sd, i_off, i_step)
            stack_v[c, p] = _quantise(pack_v[c, p], stack_step)
            fet_t_c[c, p] = _quantise(fet_t[c, p], t_step)
    return cell_v, cell_t, current, stack_v, fet_t_c


def settings_vector(s: Afe) -> FloatArray:
    """The AFE settings the kernel reads, in its order."""
    return np.array(
        [
            s.cell_v_noise_v,
            s.cell_v_offset_v,
            s.cell_v_resolution_v,
            s.stack_v_resolution_v,
            s.current_noise_a,
            s.current_offset_a,
            s.current_resolution_a,
            s.temperature_noise_c,
            s.temperature_resolution_c,
        ],
        dtype=np.float64,
    )


@dataclass
class AfeReadings:
    """What ``measure`` reports of each quantity, per cycle: cell voltages and temperatures
    (cycles, packs, series); current, stack voltage and FET temperature (cycles, packs)."""

    cell_v: FloatArray
    cell_t_c: FloatArray
    current_a: FloatArray
    stack_v: FloatArray
    fet_t_c: FloatArray


def measure_many(
    afe: AnalogFrontEnd,
    true_v: FloatArray,
    true_t_c: FloatArray,
    current_a: FloatArray,
    pack_v: FloatArray,
    fet_t_c: FloatArray,
    noise: AfeNoise,
) -> AfeReadings:
    """The readings ``afe.measure`` would give over ``cycles`` cycles of true values (shapes as in
    ``AfeReadings``), with ``noise`` from ``draw_noise(afe, cycles, ...)``. Refuses a faulty AFE."""
    _refuse_faulty(afe)
    f64 = np.float64
    true_v = np.ascontiguousarray(true_v, dtype=f64)
    cycles, packs, series = true_v.shape
    shapes = {
        "true_t_c": (true_t_c, (cycles, packs, series)),
        "current_a": (current_a, (cycles, packs)),
        "pack_v": (pack_v, (cycles, packs)),
        "fet_t_c": (fet_t_c, (cycles, packs)),
        "noise.cell_v": (noise.cell_v, (cycles, packs, series)),
        "noise.cell_t": (noise.cell_t, (cycles, packs, series)),
        "noise.current": (noise.current, (cycles, packs)),
    }
    for name, (array, shape) in shapes.items():
        if np.shape(array) != shape:
            raise ValueError(f"{name} has shape {np.shape(array)}, expected {shape}")
    out = _measure_kernel(
        true_v,
        np.ascontiguousarray(true_t_c, dtype=f64),
        np.ascontiguousarray(current_a, dtype=f64),
        np.ascontiguousarray(pack_v, dtype=f64),
        np.ascontiguousarray(fet_t_c, dtype=f64),
        np.ascontiguousarray(noise.cell_v, dtype=f64),
        np.ascontiguousarray(noise.cell_t, dtype=f64),
        np.ascontiguousarray(noise.current, dtype=f64),
        settings_vector(afe.settings),
    )
    return AfeReadings(*out)


def reference_measure_many(
    afe: AnalogFrontEnd,
    true_v: FloatArray,
    true_t_c: FloatArray,
    current_a: FloatArray,
    pack_v: FloatArray,
    fet_t_c: FloatArray,
) -> AfeReadings:
    """The Python AFE's ``measure``, cycle by cycle, on a stand-in pack carrying the true values
    (shapes as ``measure_many``): the reference the kernel is held to, in tests and the bench."""
    from types import SimpleNamespace
    from typing import cast

    from openbms.twin.pack import Pack, StepResult

    cycles, packs, _ = true_v.shape
    none = np.zeros(packs, dtype=bool)
    step = cast(
        StepResult,
        SimpleNamespace(
            short_circuit_tripped=none, short_circuit_at_s=np.zeros(packs), short_circuit_peak_a=np.zeros(packs)
        ),
    )
    rows = []
    for c in range(cycles):
        stand_in = SimpleNamespace(
            packs=packs,
            group_v=true_v[c],
            group_temperature_c=lambda c=c: true_t_c[c],
            current_a=current_a[c],
            pack_v=pack_v[c],
            fet_t_c=fet_t_c[c],
            external=SimpleNamespace(load_connected=lambda: none),
        )
        m = afe.measure(cast(Pack, stand_in), step, 0.1, ~none, none, none)
        rows.append((m.cell_v, m.cell_t_c, m.current_a, m.stack_v, m.fet_t_c))
    return AfeReadings(*(np.array([r[i] for r in rows]) for i in range(5)))
