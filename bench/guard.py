"""Control cycles per second of the protection debounce: the Python reference against the numba kernel.

Why this exists: issue 12's compiled fast path must run many control cycles per call and hand back
to the Python brain only where something discrete happens. ``openbms.fast.guard`` does that for
the protection timers; this measures it against ``reference_advance`` (the same timers stepped
with ``protections.debounce`` / ``elapsed``, as ``faults.py`` does) on the same quantity rows::

    PYTHONPATH=src python bench/guard.py            # 1 pack and 10,000 packs
    PYTHONPATH=src python bench/guard.py --quick    # a tenth of the cycles

The rows are LFP quantities near (but inside) the limits with noise, so the cell-voltage warning
timers keep counting up and down and nothing trips: both sides run the whole sequence without a
stop (the stop cycle is printed to show it). A cycle is one control cycle of every pack. The
compile time is measured on the first call with numba's on-disk cache pointed at a fresh folder,
and is never counted in a rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
DT_S = 0.1


def _rows(table: object, cycles: int, packs: int) -> FloatArray:
    from openbms.bms.protections import QUANTITIES

    rng = np.random.default_rng(1)
    q = np.zeros((cycles, packs, len(QUANTITIES)))
    safe = {"max_cell_v": 3.4, "min_cell_v": 3.2, "max_cell_t": 25.0, "min_cell_t": 25.0, "fet_t": 30.0}
    for name, value in safe.items():
        q[:, :, QUANTITIES.index(name)] = value
    # max cell voltage crosses the 3.6 V warning two cycles in seven (its timer counts) but never holds it.
    flicker = (np.arange(cycles)[:, None] + np.arange(packs)[None, :]) % 7 < 2  # two cycles in seven
    q[:, :, QUANTITIES.index("max_cell_v")] = 3.58 + 0.02 * flicker + rng.uniform(0.0, 0.01, (cycles, packs))
    q[:, :, QUANTITIES.index("charge_c_rate")] = rng.uniform(0.0, 0.5, (cycles, packs))
    return q


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="openbms-guard-bench-")

    from openbms.bms.protections import ProtectionTable
    from openbms.fast import GuardContext, GuardState, advance_guard, reference_advance
    from openbms.profiles import load_profile

    table = ProtectionTable.from_profile(load_profile("lfp"))
    scale = 10 if args.quick else 1
    cases = [(1, 100_000 // scale, 10_000 // scale), (10_000, 2_000 // scale, 200 // scale)]

    t0 = time.perf_counter()
    q = _rows(table, 2, 1)
    none = np.zeros((2, 1), dtype=bool)
    advance_guard(
        table,
        GuardState.zeros(1, table.size),
        GuardContext.of(table, none[:1].repeat(table.size, 1)),
        q,
        none,
        none,
        DT_S,
    )
    print(f"compile (first call, fresh cache): {time.perf_counter() - t0:.2f} s")

    for packs, cycles, reference_cycles in cases:
        q = _rows(table, cycles, packs)
        load = np.zeros((cycles, packs), dtype=bool)
        state = GuardState.zeros(packs, table.size)
        context = GuardContext.of(table, np.zeros((packs, table.size), dtype=bool))
        t0 = time.perf_counter()
        stop, kernel_state = advance_guard(table, state, context, q, load, load, DT_S)
        kernel_s = time.perf_counter() - t0
        n = reference_cycles
        t0 = time.perf_counter()
        ref_stop, ref_state = reference_advance(table, state, context, q[:n], load[:n], load[:n], DT_S)
        reference_s = time.perf_counter() - t0
        _, short_state = advance_guard(table, state, context, q[:n], load[:n], load[:n], DT_S)
        diff = max(
            float(np.max(np.abs(a.astype(float) - b.astype(float))))
            for a, b in zip(short_state.arrays(), ref_state.arrays(), strict=True)
        )
        kernel_rate, reference_rate = cycles / kernel_s, n / reference_s
        print(
            f"{packs:>6} packs: reference {reference_rate:12,.0f} cycles/s ({n} cycles, stop {ref_stop}), "
            f"kernel {kernel_rate:12,.0f} cycles/s ({cycles} cycles, stop {stop}), "
            f"ratio {kernel_rate / reference_rate:7.1f}x, max timer difference {diff:.1e}"
        )
        assert stop == cycles and ref_stop == n and not kernel_state.trip_timer_s.any(), (stop, ref_stop)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
