"""How big a board's history gets: a day of polls of a 16S pack at 1 Hz through the recorder that
``openbms monitor --record`` and ``openbms serve --device`` use (SQLite, WAL, committed per poll).

Why: the history is kept for days (``--keep``, 7 by default); an owner's machine must not fill up.
The readings are a plausible day (cells wandering by millivolts, current changing, a trip and its
release), each poll committed as in the real recorder::

    python scripts/history_size.py             # 86,400 polls (a day at 1 Hz)
    python scripts/history_size.py --polls 3600
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

from openbms.bms.reading import PackReading
from openbms.devices.history import HistoryRecorder
from openbms.devices.reader import Poll


def reading_at(k: int) -> PackReading:
    """Poll ``k`` of the day: 16 cells near 3.3 V, a current that changes every few minutes."""
    current = 25.0 * math.sin(k / 900.0)
    cells = [round(3.30 + 0.002 * math.sin(k / 300.0 + c) - 0.0004 * current, 3) for c in range(16)]
    faults = ["cell_undervoltage"] if 40_000 <= k < 40_600 else []
    return PackReading(
        protocol="jbd",
        cell_v=cells,
        temperature_c=[25.0 + 0.1 * (k % 7), 26.0],
        current_a=round(current, 2),
        pack_v=round(sum(cells), 2),
        soc=0.5 + 0.3 * math.sin(k / 20_000.0),
        charge_fet=True,
        discharge_fet=not faults,
        faults=faults,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=86_400)
    args = parser.parse_args()
    if args.polls < 1:
        parser.error("--polls must be at least 1")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "board.sqlite"
        start = time.perf_counter()
        t0 = 1_800_000_000.0
        with HistoryRecorder(path, "jbd:/dev/ttyUSB0") as recorder:
            for k in range(args.polls):
                recorder.record(Poll(reading_at(k)), t0 + k)
            recorder.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wall = time.perf_counter() - start
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
    print(
        f"{args.polls:,} polls of a 16S pack: {size / 1e6:.1f} MB on disk ({size / args.polls:.0f} bytes a poll), "
        f"written in {wall:.1f} s ({args.polls / wall:,.0f} polls/s, one commit each)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
