"""Cell-steps per second of the twin's cell physics: ``Pack.advance`` against the numba kernel.

Why this exists: issue 12 asks for a compiled fast path for the per-cycle work, and the first
slice (``openbms.fast.physics``) is only worth keeping if it is much faster than the Python
reference it is tested equal to. This measures both on the same packs and the same imposed
current profile, in one run, so the ratio is read in one place::

    PYTHONPATH=src python bench/kernel.py            # 1x16 for a simulated day at 1 s, 100x16, 10,000x16
    PYTHONPATH=src python bench/kernel.py --quick    # a tenth of the steps

A cell-step is one cell advanced by one step: packs x 16 x steps. Both sides do the same work per
step: the physics of every cell and the FET temperature, and the terminal voltage of every cell
kept for every step (the reference copies ``pack.cell_v`` into a preallocated array). Building
the pack and its kernel parameters is not timed. The kernel's compile time is measured on its
first call (a tiny run, with numba's on-disk cache pointed at a fresh folder so it really
compiles; ``--warm-cache`` uses the normal cache instead) and shown on its own line: it is
never counted in a rate. The largest voltage difference between the two is printed as a
sanity check (the differential test in tests/fast is the real one).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

SERIES = 16
DT_S = 1.0
CHEMISTRY = "lfp"


@dataclass(frozen=True)
class Case:
    packs: int
    steps: int  # kernel steps
    reference_steps: int  # the reference is timed on (at most) this many of them


def _cases(quick: bool) -> list[Case]:
    scale = 10 if quick else 1
    return [
        Case(1, 86_400 // scale, 86_400 // scale),  # one simulated day at 1 s
        Case(100, 3_600 // scale, 3_600 // scale),
        Case(10_000, 200 // scale, 50 // scale),
    ]


def _profile(packs: int, steps: int, capacity_ah: float) -> FloatArray:
    """Half-C charge and discharge in a two-hour sine, different in phase for every pack."""
    t = np.arange(steps)[:, None] * DT_S
    phase = np.linspace(0.0, np.pi, packs)[None, :]
    return np.ascontiguousarray(0.5 * capacity_ah * np.sin(2.0 * np.pi * t / 7200.0 + phase))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the steps")
    parser.add_argument("--warm-cache", action="store_true", help="use numba's normal on-disk cache")
    args = parser.parse_args()
    if not args.warm_cache:  # before numba is imported: a fresh cache folder forces a real compile
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="openbms-numba-")

    from openbms.chemistry import load_chemistry
    from openbms.fast import advance_many, params_from_pack, state_from_pack
    from openbms.twin.board import load_board
    from openbms.twin.cells import Spread
    from openbms.twin.pack import Pack, Topology

    cell = load_chemistry(CHEMISTRY)
    board = load_board()
    spread = Spread(capacity=0.02, resistance=0.05, soc=0.01, seed=7)

    def new_pack(packs: int) -> Pack:
        pack = Pack(cell, Topology(SERIES, 1), packs, board, 0.5, 25.0, spread, balance_resistance_ohm=33.0)
        pack.charge_fet[:] = True
        pack.discharge_fet[:] = True
        return pack

    tiny = new_pack(1)
    start = time.perf_counter()
    advance_many(params_from_pack(tiny), state_from_pack(tiny), np.zeros(2), DT_S)
    compile_s = time.perf_counter() - start
    how = "numba's on-disk cache" if args.warm_cache else "a real compile: fresh cache folder"
    print(f"kernel first call (compile, not counted below): {compile_s:.2f} s  [{how}]")
    print(f"{SERIES}-cell {CHEMISTRY} packs, dt {DT_S:g} s, imposed 0.5 C sine current; rates in cell-steps/s")
    print(f"{'packs':>7} {'steps ref/kern':>15} {'reference':>12} {'kernel':>12} {'ratio':>8} {'max |dV| V':>11}")
    for case in _cases(args.quick):
        currents = _profile(case.packs, case.steps, cell.capacity_ah)

        pack = new_pack(case.packs)
        params, state = params_from_pack(pack), state_from_pack(pack)
        start = time.perf_counter()
        _, kernel_v = advance_many(params, state, currents, DT_S)
        kernel_s = time.perf_counter() - start

        ref_v = np.empty((case.reference_steps, case.packs, SERIES))
        start = time.perf_counter()
        for step in range(case.reference_steps):
            pack.external.profile_a[:] = currents[step]
            pack.advance(DT_S, step * DT_S)
            ref_v[step] = pack.cell_v
        reference_s = time.perf_counter() - start

        reference_rate = case.packs * SERIES * case.reference_steps / reference_s
        kernel_rate = case.packs * SERIES * case.steps / kernel_s
        diff = float(np.abs(kernel_v[: case.reference_steps] - ref_v).max())
        steps = f"{case.reference_steps}/{case.steps}"
        print(
            f"{case.packs:>7} {steps:>15} {reference_rate:>12.3g} {kernel_rate:>12.3g} "
            f"{kernel_rate / reference_rate:>7.0f}x {diff:>11.1e}"
        )
        del kernel_v, ref_v
    print(f"(python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs, kernel single-threaded)")


if __name__ == "__main__":
    main()
