"""Files a run leaves behind: telemetry CSV, events JSONL, result JSON and the plot.

Each file is written to a temporary name and renamed into place, so an interrupted run never
leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from openbms.scenario.runner import RunResult


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "scenario"


def write_telemetry_csv(result: RunResult, path: Path) -> None:
    telemetry = result.telemetry
    data = telemetry.array()
    columns = telemetry.columns()
    with atomic_write(path) as handle:
        handle.write(",".join(columns) + "\n")
        for row, state in zip(data, telemetry.states, strict=True):
            cells = [f"{v:.4f}" for v in row[7:]]
            handle.write(
                f"{row[0]:.3f},{row[1]:.4f},{row[2]:.3f},{row[3]:.4f},{state},"
                f"{'on' if row[5] else 'off'},{'on' if row[6] else 'off'}," + ",".join(cells) + "\n"
            )


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


def write_outputs(result: RunResult, folder: Path, plot: Callable[[RunResult, Path], None]) -> list[Path]:
    """Write every output of one run into ``folder``; return the paths written."""
    paths = [folder / "telemetry.csv", folder / "events.jsonl", folder / "result.json", folder / "plot.png"]
    write_telemetry_csv(result, paths[0])
    write_events_jsonl(result, paths[1])
    write_result_json(result, paths[2])
    plot(result, paths[3])
    return paths
