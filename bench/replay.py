"""How fast ``openbms replay`` gets through many logs: one by one, batched on one brain, 2 workers.

Why: the batched replay exists to make fleets of logs cheap; this measures what it buys, against
the one-by-one baseline in the same run (ratios, so the machine's speed cancels out). The logs are
made here: copies of ``scenarios/replay/sample-log.csv`` (its first ``--rows`` rows), each with
its own few mV of cell-voltage noise (a seed per copy) and its own start time, so they share one
clock (one brain) but not their numbers. Each mode reads the CSV files and replays them::

    PYTHONPATH=src python bench/replay.py --logs 32 --rows 1000
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from openbms.scenario.replay import Arm, PackSpec, read_log, replay, replay_files

SAMPLE = Path(__file__).resolve().parents[1] / "scenarios" / "replay" / "sample-log.csv"
SPEC = PackSpec("lfp", 20.0)
ARMS = [Arm("settings", "lfp", {})]


def make_logs(folder: Path, count: int, rows: int) -> list[Path]:
    """``count`` noisy, time-shifted copies of the sample's first ``rows`` rows, as CSV files."""
    with SAMPLE.open(newline="", encoding="utf-8") as f:
        header, *lines = list(csv.reader(f))
    table = np.array(lines[:rows], dtype=float)
    cells = [i for i, name in enumerate(header) if name.startswith("cell_v_")]
    paths = []
    for seed in range(count):
        copy = table.copy()
        copy[:, 0] += 3600.0 * seed
        copy[:, cells] += np.random.default_rng(seed).normal(0.0, 0.003, (len(copy), len(cells)))
        path = folder / f"log-{seed:04d}.csv"
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows([[f"{x:.6g}" for x in row] for row in copy])
        paths.append(path)
    return paths


def one_by_one(paths: list[Path]) -> list[list[tuple[float, str]]]:
    """What replay did before batching: each log read, then replayed on a brain of its own."""
    return [replay(read_log(p), ARMS[0], SPEC.chemistry, SPEC.capacity_ah).trips for p in paths]


def batched(paths: list[Path], workers: int) -> list[list[tuple[float, str]]]:
    return [o.results[0].trips for o in replay_files(paths, ARMS, SPEC, workers)]


def timed(run: Callable[[], list[list[tuple[float, str]]]]) -> tuple[float, list[list[tuple[float, str]]]]:
    start = time.perf_counter()
    trips = run()
    return time.perf_counter() - start, trips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=32, help="how many logs")
    parser.add_argument("--rows", type=int, default=1000, help="rows per log (the sample has 3958)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_logs(Path(tmp), args.logs, args.rows)
        rows = args.logs * args.rows
        base_s, base = timed(lambda: one_by_one(paths))
        print(f"{args.logs} logs x {args.rows} rows (one clock), read from CSV and replayed:")
        print(f"  {'mode':<28} {'s':>7} {'logs/s':>8} {'rows/s':>10} {'vs one by one':>14}")
        for name, run in [
            ("one by one (a brain each)", lambda: base),
            ("batched, one brain", lambda: batched(paths, 1)),
            ("batched, 2 workers", lambda: batched(paths, 2)),
        ]:
            seconds, trips = (base_s, base) if name.startswith("one") else timed(run)
            if trips != base:
                print(f"  {name}: trips differ from one by one", file=sys.stderr)
                return 1
            rates = f"{args.logs / seconds:8.1f} {rows / seconds:10.0f}"
            print(f"  {name:<28} {seconds:7.2f} {rates} {base_s / seconds:13.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
