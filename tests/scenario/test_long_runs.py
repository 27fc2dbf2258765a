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
    telemetry = Telemetry(series=1, every_s=1.0, max_rows=10, sink=lambda block, state: streamed.extend(block[:, 0]))
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


def _csv_columns(path: Path) -> dict[str, list[str]]:
    header, *rows = path.read_text().splitlines()
    fields = [r.split(",") for r in rows]
    return {name: [f[i] for f in fields] for i, name in enumerate(header.split(","))}


def test_parquet_telemetry_holds_the_csv_rows_finer_and_replaces_an_earlier_csv(tmp_path: Path) -> None:
    """``--telemetry parquet``: the rows the CSV of the same run has, read back by pyarrow (not by our
    code), each measurement within the CSV's own rounding and within single precision of the run's
    rows in memory; and a folder that held a CSV set holds only the Parquet one afterwards (never a
    telemetry file of another run beside the new events)."""
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    cli = CliRunner()
    first = cli.invoke(app, ["simulate", str(FILES / "short.yaml"), "--out", str(out)])
    assert first.exit_code == 0, first.output
    csv = _csv_columns(out / "telemetry.csv")
    (tmp_path / "first.csv").write_bytes((out / "telemetry.csv").read_bytes())
    second = cli.invoke(app, ["simulate", str(FILES / "short.yaml"), "--out", str(out), "--telemetry", "parquet"])
    assert second.exit_code == 0, second.output
    assert sorted(p.name for p in out.iterdir()) == ["events.jsonl", "plot.png", "result.json", "telemetry.parquet"]
    table = pq.read_table(out / "telemetry.parquet").to_pydict()
    assert list(table) == list(csv)
    assert len(table["t_s"]) == 51
    assert table["state"] == csv["state"]
    for fet in ("charge_fet", "discharge_fet"):
        assert [("on" if x else "off") for x in table[fet]] == csv[fet]
    # The CSV rounds t_s to 3 decimals, pack_v/soc/cells to 4, the current to 3; single precision
    # rounds to 2**-24 of the value.
    places = {"t_s": 3, "current_a": 3}
    for name, column in table.items():
        if name in ("state", "charge_fet", "discharge_fet"):
            continue
        rounded = np.array(csv[name], dtype=float)
        bound = 0.5 * 10.0 ** -places.get(name, 4) + np.abs(rounded) * 2.0**-23
        assert np.all(np.abs(np.array(column) - rounded) <= bound), name
    scenario, steps = load_scenario(FILES / "short.yaml")
    rows = ScenarioRunner(scenario, steps).run().telemetry.array()
    numbers = np.array([table[name] for name in table if name not in ("state", "charge_fet", "discharge_fet")]).T
    expected = np.delete(rows, [4, 5, 6], axis=1)
    assert np.array_equal(numbers[:, 0], expected[:, 0])  # time in double precision, exactly
    assert np.allclose(numbers[:, 1:], expected[:, 1:], rtol=2**-23, atol=0)


def test_parquet_telemetry_streams_in_row_groups(tmp_path: Path) -> None:
    """Rows reach the file a row group at a time while the run goes, so a long run's memory stays
    flat: 1,001 rows written in blocks of 7 with groups of 100 give 11 groups and every row once."""
    import pyarrow.parquet as pq

    from openbms.scenario.output import ParquetTelemetry
    from openbms.scenario.runner import telemetry_columns

    columns = telemetry_columns(2)
    path = tmp_path / "t.parquet"
    writer = ParquetTelemetry(path, columns, row_group=100)
    rows = np.zeros((1001, len(columns)))
    rows[:, 0] = np.arange(1001) * 0.5
    rows[:, 5] = 1.0
    for start in range(0, 1001, 7):
        writer.write(rows[start : start + 7], "normal" if start < 500 else "fault")
    writer.close(sync=True)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 11 and meta.num_rows == 1001
    table = pq.read_table(path).to_pydict()
    assert table["t_s"] == [k * 0.5 for k in range(1001)]
    assert table["state"] == ["normal"] * 504 + ["fault"] * 497
    assert all(table["charge_fet"]) and not any(table["discharge_fet"])


def test_wrong_telemetry_options_get_one_sentence(tmp_path: Path) -> None:
    cli = CliRunner()
    for args, words in (
        (["--out", str(tmp_path / "o"), "--telemetry", "xml"], "--telemetry must be one of csv, parquet"),
        (["--telemetry", "parquet"], "give --out DIR too"),
    ):
        result = cli.invoke(app, ["simulate", str(FILES / "short.yaml"), *args])
        assert result.exit_code == 2, result.output
        assert words in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()
