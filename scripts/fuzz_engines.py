"""Nightly-size differential fuzzing of the fast engine against the reference: the generator of
tests/fast/test_engine.py (tests/fast/random_scenarios.py) with fresh random seeds and many more
examples than CI runs.

Each example is a random scenario played on both engines; any difference (events, expectation
results, final block, telemetry beyond 1e-9) is a mismatch. With ``--keep DIR`` each mismatching
scenario's YAML and CSV files are written to DIR/<seed>/ so it can be replayed (copy it into
tests/fast/regressions/, where tests/fast/test_engine.py plays it on both engines).
``--without-fault`` leaves out a fault whose mismatch is already known, to look for others.
``--lanes`` runs the fast engine in its many-pack kernel (``openbms.fast.lanes``, normally from 64
packs) on these one-pack scenarios, in windows of 7 cycles; ``--fleets N`` then also plays N random
24-pack timelines of tests/fast/test_lanes.py against the reference, stepped cycle by cycle.
Exits 1 on any mismatch.

Usage::

    PYTHONPATH=src python scripts/fuzz_engines.py 5000 --keep /tmp/mismatches
    PYTHONPATH=src python scripts/fuzz_engines.py 1000 --lanes --fleets 200
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fast"))

from engine_diff import differences  # noqa: E402
from random_scenarios import random_scenario  # noqa: E402

from openbms.scenario.schema import INJECTABLE_FAULTS  # noqa: E402

PROGRESS_EVERY = 25


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("examples", type=int, nargs="?", default=2000, help="random scenarios to compare")
    parser.add_argument("--keep", type=Path, help="write each mismatching scenario here, one folder per seed")
    parser.add_argument("--seed", type=int, help="the first seed (default: random); example k uses seed + k")
    parser.add_argument(
        "--without-fault",
        action="append",
        default=[],
        choices=INJECTABLE_FAULTS,
        help="never inject this fault (repeatable): to look past a mismatch already known",
    )
    parser.add_argument("--lanes", action="store_true", help="run the fast engine in its many-pack kernel")
    parser.add_argument("--fleets", type=int, default=0, help="with --lanes: also this many random fleet timelines")
    args = parser.parse_args(argv)
    if args.fleets and not args.lanes:
        parser.error("--fleets needs --lanes")
    if args.lanes:
        from openbms.fast import lanes

        lanes.LANES_MIN_PACKS, lanes.WINDOW_PACKS, lanes.WINDOW_CYCLES = 1, 5, 7
    faults = tuple(f for f in INJECTABLE_FAULTS if f not in args.without_fault)
    if not faults:
        parser.error("at least one fault must remain injectable")
    if args.examples < 1:
        parser.error("examples must be at least 1")
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"comparing the engines on {args.examples} random scenarios, seeds {first}..{first + args.examples - 1}")
    start = time.monotonic()
    mismatches = 0
    with tempfile.TemporaryDirectory(prefix="fuzz-engines-") as work:
        for k in range(args.examples):
            seed = first + k
            scenario = random_scenario(
                random.Random(seed), name=f"random engine comparison, seed {seed}", faults=faults
            )
            path = scenario.write(Path(work) / str(seed))
            problems = differences(path)
            if problems:
                mismatches += 1
                print(f"seed {seed}: MISMATCH\n  " + "\n  ".join(problems), flush=True)
                if args.keep is not None:
                    kept = scenario.write(args.keep / str(seed))
                    print(f"  kept as {kept}", flush=True)
            if (k + 1) % PROGRESS_EVERY == 0 or k + 1 == args.examples:
                elapsed = time.monotonic() - start
                print(f"{k + 1}/{args.examples} examples, {mismatches} mismatches, {elapsed:.0f} s", flush=True)
    mismatches += fleets(args.fleets, first)
    elapsed = time.monotonic() - start
    print(f"summary: {args.examples} examples, {mismatches} mismatches, {elapsed:.1f} s wall time")
    return 1 if mismatches else 0


def fleets(count: int, first: int) -> int:
    """Play ``count`` random fleet timelines (tests/fast/test_lanes.py) in the lanes; mismatches."""
    if not count:
        return 0
    from test_lanes import play

    bad = 0
    for k in range(count):
        try:
            play(first + k)
        except AssertionError as err:
            bad += 1
            print(f"fleet seed {first + k}: MISMATCH\n  {err}", flush=True)
        if (k + 1) % PROGRESS_EVERY == 0 or k + 1 == count:
            print(f"{k + 1}/{count} fleets, {bad} mismatches", flush=True)
    return bad


if __name__ == "__main__":
    raise SystemExit(main())
