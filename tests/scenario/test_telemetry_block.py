"""The telemetry's decimation when the fast engine hands it rows in blocks.

Memory keeps at most ``max_rows`` rows: when full, every other row goes and from then on only
every ``stride``-th row is kept. The expectations below are worked out by hand from that rule.
"""

from __future__ import annotations

import itertools

import numpy as np

from openbms.scenario.runner import Telemetry


def _rows(first: int, count: int) -> np.ndarray:
    block = np.zeros((count, 7 + 2))
    block[:, 0] = np.arange(first, first + count)
    return block


def test_ten_rows_into_four_keep_every_fourth() -> None:
    """Rows 0–3 fill memory; it halves to 0, 2 (stride 2); 4 and 6 fill it again; it halves to
    0, 4 (stride 4); then 8 is kept and 5, 7 and 9 are not."""
    telemetry = Telemetry(series=1, every_s=1.0, max_rows=4)
    telemetry.add_block(_rows(0, 10), "normal")
    assert [row[0] for row in telemetry.rows] == [0, 4, 8]
    assert telemetry.stride == 4 and telemetry.recorded == 10
    assert telemetry.states == ["normal"] * 3


def test_blocks_of_any_size_keep_what_one_long_block_keeps() -> None:
    """The same ten rows in blocks of 3, 1, 0 and 6 rows, with two states: the same rows kept,
    each with the state of its block, and every row streamed to the sink in order."""
    streamed: list[tuple[float, str]] = []
    telemetry = Telemetry(
        series=1, every_s=1.0, max_rows=4, sink=lambda block, state: streamed.extend((row[0], state) for row in block)
    )
    first = 0
    for count, state in ((3, "normal"), (1, "normal"), (0, "sleep"), (6, "sleep")):
        telemetry.add_block(_rows(first, count), state)
        first += count
    assert [row[0] for row in telemetry.rows] == [0, 4, 8]
    assert telemetry.states == ["normal", "sleep", "sleep"]
    assert streamed == [(float(i), "normal" if i < 4 else "sleep") for i in range(10)]


def test_a_long_run_stays_bounded() -> None:
    """A simulated year at 1 s is 31.5 million rows; memory never holds more than max_rows."""
    telemetry = Telemetry(series=1, every_s=1.0, max_rows=1000)
    for start in range(0, 3_000_000, 65_536):
        telemetry.add_block(_rows(start, min(65_536, 3_000_000 - start)), "normal")
    assert len(telemetry.rows) < 1000 and telemetry.recorded == 3_000_000
    kept = [row[0] for row in telemetry.rows]
    assert kept[0] == 0 and all(b - a == telemetry.stride for a, b in itertools.pairwise(kept))
