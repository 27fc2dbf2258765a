"""Long runs do not grow (issue 8 item 9): the telemetry streams to ``--out`` as it is recorded
and memory keeps a bounded, decimated copy for the plot. Before, every recorded row stayed in a
list: 0.45 kB per control cycle for a 16S pack, about 0.4 GB per simulated day at 100 ms.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from openbms.cli import app
from openbms.scenario.output import write_telemetry_csv
from openbms.scenario.runner import ScenarioRunner, Telemetry
from openbms.scenario.schema import load_scenario

FILES = Path(__file__).parent / "files"
LONG = """
name: a long discharge
pack: {chemistry: lfp, series: 16, parallel: 1, capacity_ah: 20, soc: 0.5, temperature_c: 25}
bms: {profile: lfp}
dt: 100ms
timeline:
  - load: {current_a: 5}
  - run: 1h
"""


def test_the_heap_does_not_grow_with_the_number_of_cycles(tmp_path: Path) -> None:
    (tmp_path / "long.yaml").write_text(LONG)
    scenario, steps = load_scenario(tmp_path / "long.yaml")
    runner = ScenarioRunner(scenario, steps)
    runner.telemetry.max_rows = 64  # the default (20 000) bounds it too, only later
    runner.steps = steps[:1]
    runner.run()  # the load step
    runner._run_for(50.0, None)  # warm-up: 500 cycles, the decimated copy is full
    cycles = 2000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        runner._run_for(cycles * scenario.dt, None)
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_cycle_kb = growth / cycles / 1024
    assert per_cycle_kb < 0.02, f"{per_cycle_kb:.3f} kB per cycle"
    telemetry = runner.telemetry
    assert telemetry.recorded == 2501  # t = 0, then one row per cycle
    assert len(telemetry.rows) == len(telemetry.states) < 64 and telemetry.stride >= 64
    kept_t = telemetry.array()[:, 0]
    assert kept_t[0] == 0.0 and kept_t[-1] > 250.0 - telemetry.stride * 0.1  # it spans the whole run
    assert np.allclose(np.diff(kept_t), telemetry.stride * 0.1)


def test_decimation_keeps_every_stride_th_row_and_the_sink_gets_all() -> None:
    streamed: list[float] = []
    telemetry = Telemetry(series=1, every_s=1.0, max_rows=10, sink=lambda row, state: streamed.append(row[0]))
    for k in range(1000):
        telemetry.add(np.array([float(k)] + [0.0] * 8), "normal")
    assert streamed == [float(k) for k in range(1000)]
    assert telemetry.stride == 128  # 10 rows fill at 10, 20, 40, … 1280 recorded rows
    assert [int(r[0]) for r in telemetry.rows] == list(range(0, 1000, 128))
    assert telemetry.states == ["normal"] * 8


def test_out_streams_the_same_telemetry_csv_as_before(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["simulate", str(FILES / "short.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    streamed = (out / "telemetry.csv").read_text()
    header, *rows = streamed.splitlines()
    assert len(rows) == 51  # 5 s at dt = 100 ms: t = 0, 0.1, … 5.0
    assert all(len(r.split(",")) == len(header.split(",")) == 7 + 2 * 4 for r in rows)
    assert [r.split(",")[0] for r in rows[:3]] + [rows[-1].split(",")[0]] == ["0.000", "0.100", "0.200", "5.000"]
    # The same bytes as the rows kept in memory, written after the run the way it was done before.
    scenario, steps = load_scenario(FILES / "short.yaml")
    run = ScenarioRunner(scenario, steps).run()
    write_telemetry_csv(run, tmp_path / "in-memory.csv")
    assert (tmp_path / "in-memory.csv").read_text() == streamed
