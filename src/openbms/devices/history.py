"""A board's recorded history (``openbms monitor --record FILE``): every poll and the events they imply.

A silent board is ambiguous — asleep after a low-voltage cut-off, unpowered, hung, or a link
problem — and only what was seen *before* the silence tells them apart. The diagnosis reads the
events this file keeps (``load_history``) to decide whether a soft reset is worth advising.

One SQLite file holds one device. It is written in WAL mode and committed after every poll, so
killing the monitor loses at most the poll in flight, and a second monitor run on the same file
continues the same history (the previous poll is read back on open).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from openbms.devices.model import DeviceReading
from openbms.devices.reader import Poll

FORMAT = "openbms-history"
FORMAT_VERSION = 1
KEEP_S = 7 * 86400.0
PRUNE_EVERY_S = 3600.0
MAX_EVENTS = 200
_UNDERVOLTAGE_FAULTS = ("cell_undervoltage", "deep_discharge")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE polls (t_unix REAL NOT NULL, ok INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE events (t_unix REAL NOT NULL, event TEXT NOT NULL);
CREATE INDEX polls_t ON polls (t_unix);
CREATE INDEX events_t ON events (t_unix);
"""


class HistoryError(ValueError):
    """A history file that cannot be used; one sentence says why."""


@dataclass
class _Previous:
    """What the next poll is compared with: whether the last poll answered, and the faults of the
    last poll that did (a silence says nothing about faults, so they carry over it)."""

    ok: bool | None = None
    faults: frozenset[str] = frozenset()


def reading_record(reading: DeviceReading) -> dict[str, Any]:
    """The reading as stored: what the diagnosis and a person looking back need, rounded to the
    protocols' own resolution so 3,600 polls of a 16S pack stay well under a megabyte or two."""
    doc: dict[str, Any] = {
        "cell_v": None if reading.cell_v is None else [round(v, 3) for v in reading.cell_v],
        "pack_v": _round(reading.pack_v, 2),
        "current_a": _round(reading.current_a, 2),
        "soc": _round(reading.soc, 3),
        "charge_fet": reading.charge_fet,
        "discharge_fet": reading.discharge_fet,
        "temperature_c": None if reading.temperature_c is None else [round(t, 1) for t in reading.temperature_c],
        "fet_temperature_c": _round(reading.fet_temperature_c, 1),
        "faults": list(reading.faults),
    }
    return {k: v for k, v in doc.items() if v is not None}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _compact(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


def _local_time(t_unix: float) -> str:
    return datetime.fromtimestamp(t_unix).astimezone().isoformat(timespec="seconds")


def _check_format(conn: sqlite3.Connection, path: Path) -> dict[str, str]:
    """The file's meta table, or HistoryError when it is not an openbms history this version reads.
    Reads only: a file that turns out to be someone else's database is left exactly as it was."""
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"meta", "polls", "events"} <= tables:
            raise HistoryError(f"{path} is not an openbms history (it has no openbms history tables)")
        meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    except sqlite3.DatabaseError as exc:
        raise _database_error(path, exc) from None
    if meta.get("format") != FORMAT:
        raise HistoryError(f"{path} is not an openbms history (its meta table names no openbms format)")
    version = meta.get("version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise HistoryError(
            f"{path} is an openbms history in format {version or '?'}, which this openbms (format "
            f"{FORMAT_VERSION}) cannot read; use a newer openbms"
        )
    return meta


def _database_error(path: Path, exc: sqlite3.Error) -> HistoryError:
    """One sentence for what SQLite says about a file: not a database at all, or a damaged one."""
    text = str(exc)
    if "not a database" in text:
        return HistoryError(f"{path} is not an openbms history (it is not an SQLite database)")
    if "malformed" in text or "corrupt" in text:
        return HistoryError(f"{path} is a corrupt database ({text}); start a new history file")
    return HistoryError(f"{path} cannot be read as an openbms history ({text})")


class HistoryRecorder:
    """Records every poll of one device into ``path`` and the events the polls imply."""

    def __init__(self, path: Path | str, device_url: str, keep_s: float = KEEP_S) -> None:
        self.path = Path(path)
        self.device_url = device_url
        self.keep_s = keep_s
        self._last_prune: float | None = None
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            # One writer, possibly not the thread that opened it (serve polls in its own thread);
            # callers serialise their calls.
            self.conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot open {path} for the history ({exc})") from None
        try:
            self.meta = self._create() if fresh else _check_format(self.conn, self.path)
            recorded_for = self.meta.get("device_url")
            if recorded_for != device_url:
                raise HistoryError(
                    f"{path} is the history of {recorded_for}, not of {device_url}; record each device in its own file"
                )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.t0_unix = float(self.meta["t0_unix"]) if "t0_unix" in self.meta else None
            self.previous = self._read_previous()
        except sqlite3.Error as exc:
            self.conn.close()
            raise _database_error(self.path, exc) from None
        except HistoryError:
            self.conn.close()
            raise

    def _create(self) -> dict[str, str]:
        meta = {"format": FORMAT, "version": str(FORMAT_VERSION), "device_url": self.device_url}
        with self.conn:
            self.conn.executescript(_SCHEMA)
            self.conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
        return meta

    def _read_previous(self) -> _Previous:
        """The state the last run left, so a restarted monitor does not report old faults again."""
        last = self.conn.execute("SELECT ok FROM polls ORDER BY rowid DESC LIMIT 1").fetchone()
        if last is None:
            return _Previous()
        good = self.conn.execute("SELECT data FROM polls WHERE ok = 1 ORDER BY rowid DESC LIMIT 1").fetchone()
        faults = frozenset(json.loads(good[0]).get("faults", [])) if good is not None else frozenset()
        return _Previous(ok=bool(last[0]), faults=faults)

    def events_for(self, poll: Poll) -> list[dict[str, Any]]:
        """What changed since the previous poll: faults set and cleared, an answer after a silence,
        the first silence. An answer is deliberately not a ``wake``: a cut-off, a silence, an
        answer and a new silence must still read as a cut-off before the silence."""
        prev = self.previous
        if poll.reading is None:
            if prev.ok is False:
                return []
            return [{"kind": "warning", "warning": "no_answer", "detail": poll.error or ""}]
        events: list[dict[str, Any]] = []
        if prev.ok is False:
            events.append({"kind": "answered"})
        faults = set(poll.reading.faults)
        events += [{"kind": "fault_set", "fault": f} for f in sorted(faults - prev.faults)]
        events += [{"kind": "fault_cleared", "fault": f} for f in sorted(prev.faults - faults)]
        return events

    def record(self, poll: Poll, t_unix: float) -> list[dict[str, Any]]:
        """Store the poll and its events in one transaction; returns the events."""
        try:
            if self.t0_unix is None:
                self.t0_unix = t_unix
                self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('t0_unix', ?)", (repr(t_unix),))
            stamp = {"t_s": round(t_unix - self.t0_unix, 1), "time": _local_time(t_unix)}
            events = [{**event, **stamp} for event in self.events_for(poll)]
            data = reading_record(poll.reading) if poll.reading is not None else {"error": poll.error or ""}
            self.conn.execute(
                "INSERT INTO polls (t_unix, ok, data) VALUES (?, ?, ?)", (t_unix, int(poll.ok), _compact(data))
            )
            self.conn.executemany(
                "INSERT INTO events (t_unix, event) VALUES (?, ?)", [(t_unix, _compact(e)) for e in events]
            )
            self._prune(t_unix)
            self.conn.commit()
        except sqlite3.Error as exc:
            self.conn.rollback()
            raise HistoryError(f"cannot write the history to {self.path} ({exc})") from None
        self.previous = _Previous(
            ok=poll.ok,
            faults=frozenset(poll.reading.faults) if poll.reading is not None else self.previous.faults,
        )
        return events

    def _prune(self, t_unix: float) -> None:
        """Drop rows older than ``keep_s``, at most once an hour (a delete per poll would cost more
        than the poll)."""
        if self._last_prune is not None and t_unix - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = t_unix
        cutoff = t_unix - self.keep_s
        self.conn.execute("DELETE FROM polls WHERE t_unix < ?", (cutoff,))
        self.conn.execute("DELETE FROM events WHERE t_unix < ?", (cutoff,))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def load_history(path: Path | str, device_url: str | None = None) -> list[dict[str, Any]]:
    """The recorded events of ``path``, oldest first (the last ``MAX_EVENTS``), for
    ``openbms.diagnose.from_device.snapshot_from_reading(history=…)``. Opened read-only: diagnosing
    never changes the file."""
    path = Path(path)
    if not path.is_file():
        raise HistoryError(f"{path} does not exist; record one with `openbms monitor --device URL --record FILE`")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot open {path} ({exc})") from None
    try:
        meta = _check_format(conn, path)
        if device_url is not None and meta.get("device_url") != device_url:
            raise HistoryError(f"{path} is the history of {meta.get('device_url')}, not of {device_url}")
        rows = conn.execute("SELECT event FROM events ORDER BY rowid DESC LIMIT ?", (MAX_EVENTS,)).fetchall()
        events = [json.loads(row[0]) for row in reversed(rows)]
    except sqlite3.Error as exc:
        raise _database_error(path, exc) from None
    except json.JSONDecodeError:
        raise HistoryError(f"{path} is a corrupt openbms history (an event is not JSON)") from None
    finally:
        conn.close()
    if not all(isinstance(e, dict) for e in events):
        raise HistoryError(f"{path} is a corrupt openbms history (an event is not a JSON object)")
    return events
