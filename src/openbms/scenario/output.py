"""Files a run leaves behind: telemetry (CSV, or Parquet for long runs), events JSONL, result JSON
and the plot.

Each file is written to a temporary name and renamed into place, so an interrupted run never
leaves a half-written file behind. ``OutputSet`` goes further for a whole set (``--out DIR``):
the run writes into a hidden staging folder ``DIR/.openbms-partial-*`` (the telemetry streams
into it row by row, so memory does not grow with the run's length), and only at the end moves the
four files into ``DIR`` under an ``INCOMPLETE`` marker that is removed once all four are in place.
A ``kill -9`` at any moment therefore leaves ``DIR`` holding the old complete set, the new complete
set, or a set marked ``INCOMPLETE`` — never an unmarked mix of two runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from openbms.files import atomic_write, folder_mode
from openbms.scenario.runner import FloatArray, RunResult

OUTPUT_NAMES = ("telemetry.csv", "events.jsonl", "result.json", "plot.png")
# The telemetry file by format; the other names never change. CSV is the default (any tool reads
# it); Parquet is columnar, finer and about a fifth of the size, for long runs at a short interval.
TELEMETRY_NAMES = {"csv": "telemetry.csv", "parquet": "telemetry.parquet"}
TELEMETRY_FORMATS = tuple(TELEMETRY_NAMES)
PARQUET_ROW_GROUP = 65_536  # rows a Parquet row group holds (about 20 MB for a 16S pack)
INCOMPLETE = "INCOMPLETE"  # present while a set is being replaced: the files may mix two runs
STAGING_PREFIX = ".openbms-partial-"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "scenario"


def telemetry_line(row: FloatArray, state: str) -> str:
    cells = [f"{v:.4f}" for v in row[7:]]
    return (
        f"{row[0]:.3f},{row[1]:.4f},{row[2]:.3f},{row[3]:.4f},{state},"
        f"{'on' if row[5] else 'off'},{'on' if row[6] else 'off'}," + ",".join(cells) + "\n"
    )


def write_telemetry_csv(result: RunResult, path: Path) -> None:
    """The rows the run kept in memory (all of them unless it was long enough to decimate)."""
    telemetry = result.telemetry
    with atomic_write(path) as handle:
        handle.write(",".join(telemetry.columns()) + "\n")
        for row, state in zip(telemetry.array(), telemetry.states, strict=True):
            handle.write(telemetry_line(row, state))


def write_events_jsonl(result: RunResult, path: Path) -> None:
    with atomic_write(path) as handle:
        for event in result.events:
            handle.write(json.dumps(event, allow_nan=False, default=_jsonable) + "\n")


def write_result_json(result: RunResult, path: Path) -> None:
    with atomic_write(path) as handle:
        json.dump(result.as_dict(), handle, indent=1, default=_jsonable)
        handle.write("\n")


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


class TelemetryFile(Protocol):
    """Where the rows of ``--out`` stream while the run goes: blocks of rows of one state each."""

    def write(self, block: FloatArray, state: str) -> None: ...

    def close(self, sync: bool) -> None: ...


class CsvTelemetry:
    """``telemetry.csv``, a line a row, rounded as the CSV has always been."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self._handle: IO[str] = path.open("w", encoding="utf-8", newline="")
        self._handle.write(",".join(columns) + "\n")

    def write(self, block: FloatArray, state: str) -> None:
        self._handle.writelines(telemetry_line(row, state) for row in block)

    def close(self, sync: bool) -> None:
        with self._handle:
            if sync:
                self._handle.flush()
                os.fsync(self._handle.fileno())


class ParquetTelemetry:
    """``telemetry.parquet``: the same columns, ``t_s`` in double precision (a year in seconds needs
    it), every measurement in single precision (7 significant digits: 0.3 µV on a 3.3 V cell, a
    thousand times finer than the CSV's rounding and than any AFE), ``state`` as text and the FETs
    as booleans; byte-stream-split and zstd-compressed, about a fifth of the CSV. Rows gather in a
    preallocated block and go to disk a row group at a time, so memory stays flat however long the
    run."""

    def __init__(self, path: Path, columns: list[str], row_group: int = PARQUET_ROW_GROUP) -> None:
        pa, pq = _pyarrow()
        self._pa = pa
        self._columns = columns
        kinds = {"t_s": pa.float64(), "state": pa.string(), "charge_fet": pa.bool_(), "discharge_fet": pa.bool_()}
        self._schema = pa.schema([(name, kinds.get(name, pa.float32())) for name in columns])
        floats = [name for name in columns if name not in kinds or name == "t_s"]
        self._writer = pq.ParquetWriter(
            path, self._schema, compression="zstd", use_byte_stream_split=floats, use_dictionary=["state"]
        )
        self._path = path
        self._block = np.empty((row_group, len(columns)))
        self._states: list[str] = []
        self._rows = 0

    def write(self, block: FloatArray, state: str) -> None:
        start = 0
        while start < len(block):
            take = min(len(block) - start, len(self._block) - self._rows)
            self._block[self._rows : self._rows + take] = block[start : start + take]
            self._states += [state] * take
            self._rows += take
            start += take
            if self._rows == len(self._block):
                self._flush()

    def close(self, sync: bool) -> None:
        if sync:
            self._flush()
        self._writer.close()
        if sync:
            with self._path.open("rb") as handle:
                os.fsync(handle.fileno())

    def _flush(self) -> None:
        if self._rows == 0:
            return
        rows = self._block[: self._rows]
        arrays: list[Any] = []
        for i, name in enumerate(self._columns):
            if name == "state":
                arrays.append(self._pa.array(self._states, type=self._pa.string()))
            elif name.endswith("_fet"):
                arrays.append(self._pa.array(rows[:, i] != 0.0))
            else:
                arrays.append(self._pa.array(rows[:, i].astype(np.float64 if name == "t_s" else np.float32)))
        self._writer.write_table(self._pa.Table.from_arrays(arrays, schema=self._schema))
        self._rows = 0
        self._states = []


def _pyarrow() -> tuple[Any, Any]:
    """pyarrow and its Parquet module, or one sentence on how to get them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("Parquet telemetry needs pyarrow: pip install 'openbms[parquet]'") from None
    return pa, pq


def parquet_available() -> bool:
    """Whether ``--telemetry parquet`` can work here (checked before a run, not after it)."""
    try:
        _pyarrow()
    except ValueError:
        return False
    return True


class OutputSet:
    """The outputs of one run, staged beside ``folder``'s current set and swapped in as a set.

    Open it before the run and hand ``write_block`` to the runner as its telemetry sink; ``commit``
    writes the rest and moves the set into place; ``abandon`` throws the staged files away. A set
    replaces the folder's earlier one whatever its telemetry format: a ``telemetry.csv`` left by an
    earlier run goes when a Parquet set comes in, and the other way round.
    """

    def __init__(self, folder: Path, columns: list[str], telemetry_format: str = "csv") -> None:
        if telemetry_format not in TELEMETRY_NAMES:
            raise ValueError(f"telemetry is one of {', '.join(TELEMETRY_FORMATS)}, not {telemetry_format!r}")
        self.folder = folder
        self.names = (TELEMETRY_NAMES[telemetry_format], *OUTPUT_NAMES[1:])
        folder.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_staging(folder)
        self.staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=folder))
        self.staging.chmod(folder_mode())
        maker = ParquetTelemetry if telemetry_format == "parquet" else CsvTelemetry
        try:
            self._telemetry: TelemetryFile | None = maker(self.staging / self.names[0], columns)
        except BaseException:
            shutil.rmtree(self.staging, ignore_errors=True)
            raise

    def write_block(self, block: FloatArray, state: str) -> None:
        assert self._telemetry is not None, "the output set is already committed"
        self._telemetry.write(block, state)

    def commit(self, result: RunResult, plot: Callable[[RunResult, Path], object]) -> list[Path]:
        """Finish the staged set, then move it into ``folder``; return the paths written."""
        self._close_telemetry(sync=True)
        write_events_jsonl(result, self.staging / OUTPUT_NAMES[1])
        write_result_json(result, self.staging / OUTPUT_NAMES[2])
        plot(result, self.staging / OUTPUT_NAMES[3])
        marker = self.folder / INCOMPLETE
        with atomic_write(marker) as handle:
            handle.write(
                "openbms was replacing the output set in this folder and stopped before it finished: "
                f"{', '.join(self.names)} may come from two different runs. Run the scenario again.\n"
            )
        _sync_dir(self.folder)
        for stale in set(TELEMETRY_NAMES.values()) - {self.names[0]}:
            (self.folder / stale).unlink(missing_ok=True)
        paths = []
        for name in self.names:
            os.replace(self.staging / name, self.folder / name)
            paths.append(self.folder / name)
        _sync_dir(self.folder)
        marker.unlink()
        _sync_dir(self.folder)
        self.staging.rmdir()
        return paths

    def abandon(self) -> None:
        """The run failed: leave ``folder`` as it was."""
        self._close_telemetry(sync=False)
        shutil.rmtree(self.staging, ignore_errors=True)

    def _close_telemetry(self, sync: bool) -> None:
        if self._telemetry is None:
            return
        telemetry, self._telemetry = self._telemetry, None
        telemetry.close(sync)


def _sync_dir(folder: Path) -> None:
    """Make the renames in ``folder`` durable before the next step depends on them."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_abandoned_staging(folder: Path) -> None:
    """Staging folders of runs that were killed (their process is gone) are only clutter."""
    for staging in folder.glob(f"{STAGING_PREFIX}*"):
        pid = staging.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
