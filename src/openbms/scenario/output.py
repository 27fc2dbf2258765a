"""Files a run leaves behind: telemetry CSV, events JSONL, result JSON and the plot.

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
from typing import IO

import numpy as np

from openbms.files import atomic_write, folder_mode
from openbms.scenario.runner import FloatArray, RunResult

OUTPUT_NAMES = ("telemetry.csv", "events.jsonl", "result.json", "plot.png")
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


def write_outputs(result: RunResult, folder: Path, plot: Callable[[RunResult, Path], object]) -> list[Path]:
    """Write every output of one run into ``folder`` file by file; return the paths written."""
    paths = [folder / name for name in OUTPUT_NAMES]
    write_telemetry_csv(result, paths[0])
    write_events_jsonl(result, paths[1])
    write_result_json(result, paths[2])
    plot(result, paths[3])
    return paths


class OutputSet:
    """The outputs of one run, staged beside ``folder``'s current set and swapped in as a set.

    Open it before the run and hand ``write_row`` to the runner as its telemetry sink; ``commit``
    writes the rest and moves the set into place; ``abandon`` throws the staged files away.
    """

    def __init__(self, folder: Path, columns: list[str]) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_staging(folder)
        self.staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=folder))
        self.staging.chmod(folder_mode())
        self._csv: IO[str] | None = (self.staging / OUTPUT_NAMES[0]).open("w", encoding="utf-8", newline="")
        self._csv.write(",".join(columns) + "\n")

    def write_row(self, row: FloatArray, state: str) -> None:
        assert self._csv is not None, "the output set is already committed"
        self._csv.write(telemetry_line(row, state))

    def commit(self, result: RunResult, plot: Callable[[RunResult, Path], object]) -> list[Path]:
        """Finish the staged set, then move it into ``folder``; return the paths written."""
        self._close_csv(sync=True)
        write_events_jsonl(result, self.staging / OUTPUT_NAMES[1])
        write_result_json(result, self.staging / OUTPUT_NAMES[2])
        plot(result, self.staging / OUTPUT_NAMES[3])
        marker = self.folder / INCOMPLETE
        with atomic_write(marker) as handle:
            handle.write(
                "openbms was replacing the output set in this folder and stopped before it finished: "
                f"{', '.join(OUTPUT_NAMES)} may come from two different runs. Run the scenario again.\n"
            )
        _sync_dir(self.folder)
        paths = []
        for name in OUTPUT_NAMES:
            os.replace(self.staging / name, self.folder / name)
            paths.append(self.folder / name)
        _sync_dir(self.folder)
        marker.unlink()
        _sync_dir(self.folder)
        self.staging.rmdir()
        return paths

    def abandon(self) -> None:
        """The run failed: leave ``folder`` as it was."""
        self._close_csv(sync=False)
        shutil.rmtree(self.staging, ignore_errors=True)

    def _close_csv(self, sync: bool) -> None:
        if self._csv is None:
            return
        handle, self._csv = self._csv, None
        with handle:
            if sync:
                handle.flush()
                os.fsync(handle.fileno())


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
