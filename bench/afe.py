"""Control cycles per second of the AFE measurement: the Python ``AnalogFrontEnd`` against the numba kernel.

Why this exists: issue 12's compiled fast path must produce many cycles of readings per call.
``openbms.fast.afe`` does that for the fault-free AFE; this measures it against
``AnalogFrontEnd.measure`` called cycle by cycle (on a stand-in pack carrying the true values), with
the default board's AFE settings::

    PYTHONPATH=src python bench/afe.py            # 1 pack x 16 series and 1,000 packs x 16 series
    PYTHONPATH=src python bench/afe.py --quick    # a tenth of the cycles

Three rates per row: the reference, the kernel alone (noise already drawn), and draw + kernel
(``draw_noise`` still calls the AFE's ``_gaussian`` once per noisy quantity per cycle, in Python,
so that the generator stays the Python AFE's; that is the honest end-to-end figure). The readings
of both are compared and the largest difference printed. The compile time is measured on the first
call with numba's on-disk cache pointed at a fresh folder, and is never counted in a rate.
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
SERIES = 16


def _truths(cycles: int, packs: int) -> dict[str, FloatArray]:
    rng = np.random.default_rng(1)
    v = rng.uniform(3.2, 3.4, (cycles, packs, SERIES))
    return {
        "true_v": v,
        "true_t_c": rng.uniform(20.0, 30.0, (cycles, packs, SERIES)),
        "current_a": rng.uniform(-50.0, 50.0, (cycles, packs)),
        "pack_v": v.sum(axis=2),
        "fet_t_c": rng.uniform(25.0, 40.0, (cycles, packs)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="openbms-afe-bench-")

    from openbms.fast import draw_noise, measure_many
    from openbms.fast.afe import reference_measure_many
    from openbms.twin.afe import AnalogFrontEnd
    from openbms.twin.board import default_board

    settings = default_board().afe
    scale = 10 if args.quick else 1
    cases = [(1, 100_000 // scale, 10_000 // scale), (1_000, 500 // scale, 500 // scale)]

    t = _truths(2, 1)
    afe = AnalogFrontEnd(settings, 0, 1, SERIES)
    t0 = time.perf_counter()
    measure_many(afe, **t, noise=draw_noise(afe, 2, 1, SERIES))
    print(f"compile (first call, fresh cache): {time.perf_counter() - t0:.2f} s")

    for packs, cycles, reference_cycles in cases:
        t = _truths(cycles, packs)
        n = reference_cycles
        ref_afe = AnalogFrontEnd(settings, 0, packs, SERIES)
        t0 = time.perf_counter()
        want = reference_measure_many(ref_afe, **{k: v[:n] for k, v in t.items()})
        reference_s = time.perf_counter() - t0

        fast_afe = AnalogFrontEnd(settings, 0, packs, SERIES)
        t0 = time.perf_counter()
        noise = draw_noise(fast_afe, cycles, packs, SERIES)
        draw_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = measure_many(fast_afe, **t, noise=noise)
        kernel_s = time.perf_counter() - t0
        diff = max(
            float(np.max(np.abs(getattr(got, name)[:n] - getattr(want, name))))
            for name in ("cell_v", "cell_t_c", "current_a", "stack_v", "fet_t_c")
        )
        reference_rate, kernel_rate, both_rate = n / reference_s, cycles / kernel_s, cycles / (draw_s + kernel_s)
        print(
            f"{packs:>5} packs x {SERIES}: reference {reference_rate:11,.0f} cycles/s ({n} cycles), "
            f"kernel {kernel_rate:12,.0f} cycles/s ({kernel_rate / reference_rate:6.1f}x), "
            f"draw+kernel {both_rate:10,.0f} cycles/s ({both_rate / reference_rate:5.1f}x; {cycles} cycles), "
            f"max reading difference {diff:.1e}"
        )
        assert diff == 0.0, diff
    sys.stdout.flush()


if __name__ == "__main__":
    main()
