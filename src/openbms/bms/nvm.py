"""Non-volatile memory: the black-box event log and the values that survive a hard reset.

A SQLite database in WAL mode with ``synchronous=FULL``: every append is one transaction, so a
crash or ``kill -9`` at any point loses no committed event, and ids stay gap-free (the id is the
row id of an append-only table that is never deleted from). This module is the brain's one
storage adapter: the brain hands it events and snapshots; it never reads them back on its own.

A file has one writer at a time: opening it takes an exclusive ``flock`` on the sidecar
``FILE.lock`` (not on the database itself: closing any descriptor of the database would drop
SQLite's own POSIX locks). The kernel releases a flock when its process dies, so a writer killed
with ``kill -9`` never leaves the file locked. Every run that writes is marked: a row in ``runs``
(its start time, label and process id), and each event carries its run's id.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openbms.bms.events import Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_utc TEXT NOT NULL,
    label TEXT NOT NULL,
    pid INTEGER NOT NULL,
    first_event INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    pack INTEGER NOT NULL,
    t_s REAL NOT NULL,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL,
    run INTEGER REFERENCES runs (id)
);
CREATE TABLE IF NOT EXISTS persistent (
    pack INTEGER PRIMARY KEY,
    t_s REAL NOT NULL,
    snapshot TEXT NOT NULL
);
"""


class NvmError(RuntimeError):
    """The event log cannot be opened or written; the message says which file and why."""


class NonVolatileMemory:
    """One database for a batch of packs (each row carries its pack number)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self.run: int | None = None  # the run new events belong to (see begin_run)
        self._lock = _take_writer_lock(self.path) if self.path != ":memory:" else None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
            if "run" not in columns:  # a file written before runs were marked
                self._db.execute("ALTER TABLE events ADD COLUMN run INTEGER REFERENCES runs (id)")
        except sqlite3.Error as err:
            self._release_lock()
            raise NvmError(f"cannot open the event log {self.path}: {err}") from None

    def begin_run(self, label: str = "") -> int:
        """Mark the start of a run (e.g. one scenario); the events appended from now on carry its
        id, so a log that several runs wrote can be told apart. Returns the run's id."""
        try:
            cur = self._db.execute(
                "INSERT INTO runs (started_utc, label, pid, first_event) "
                "VALUES (?, ?, ?, (SELECT COALESCE(MAX(id), 0) + 1 FROM events))",
                (datetime.now(UTC).isoformat(timespec="seconds"), label, os.getpid()),
            )
        except sqlite3.Error as err:
            raise NvmError(f"cannot write the event log {self.path}: {err}") from None
        self.run = int(cur.lastrowid or 0)
        return self.run

    def runs(self) -> list[dict[str, Any]]:
        """Every run marked in the log, oldest first."""
        query = "SELECT id, started_utc, label, pid, first_event FROM runs ORDER BY id"
        return [
            {"run": i, "started_utc": s, "label": label, "pid": pid, "first_event": first}
            for i, s, label, pid, first in self._db.execute(query)
        ]

    def append(self, events: Iterable[Event]) -> list[int]:
        """Append events in one transaction; return their ids (in order)."""
        try:
            rows = [
                (int(e.pack), float(e.t_s), e.kind, json.dumps(e.fields, allow_nan=False, default=_plain))
                for e in events
            ]
        except (ValueError, TypeError) as err:
            raise NvmError(f"cannot write the event log {self.path}: an event field cannot be stored ({err})") from None
        if not rows:
            return []
        run = self.run if self.run is not None else self.begin_run()  # no event without a run
        try:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            ids = []
            for row in rows:
                cur.execute("INSERT INTO events (pack, t_s, kind, fields, run) VALUES (?, ?, ?, ?, ?)", (*row, run))
                ids.append(int(cur.lastrowid or 0))
            cur.execute("COMMIT")
            return ids
        except sqlite3.Error as err:
            self._rollback()
            raise NvmError(f"cannot write the event log {self.path}: {err}") from None

    def save(self, snapshots: dict[int, dict[str, Any]], t_s: float) -> None:
        """Store the persistent values of some packs, atomically."""
        if not snapshots:
            return
        try:
            rows = [
                (int(pack), float(t_s), json.dumps(snap, allow_nan=False, default=_plain))
                for pack, snap in snapshots.items()
            ]
        except (ValueError, TypeError) as err:
            raise NvmError(f"cannot write the event log {self.path}: a value cannot be stored ({err})") from None
        try:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany(
                "INSERT INTO persistent (pack, t_s, snapshot) VALUES (?, ?, ?) "
                "ON CONFLICT(pack) DO UPDATE SET t_s = excluded.t_s, snapshot = excluded.snapshot",
                rows,
            )
            cur.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            raise NvmError(f"cannot write the event log {self.path}: {err}") from None

    def load(self, pack: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT snapshot FROM persistent WHERE pack = ?", (pack,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def saves(self) -> list[tuple[int, float, dict[str, Any]]]:
        """Every pack's stored snapshot with the time it was saved: (pack, t_s, snapshot), by pack."""
        query = "SELECT pack, t_s, snapshot FROM persistent ORDER BY pack"
        return [(int(p), float(t), dict(json.loads(s))) for p, t, s in self._db.execute(query)]

    def events(self, pack: int | None = None) -> list[dict[str, Any]]:
        query = "SELECT id, pack, t_s, kind, fields, run FROM events"
        args: tuple[int, ...] = ()
        if pack is not None:
            query += " WHERE pack = ?"
            args = (pack,)
        return [
            {"id": i, "pack": p, "t_s": t, "kind": k, "run": r, **json.loads(f)}
            for i, p, t, k, f, r in self._db.execute(query + " ORDER BY id", args)
        ]

    def events_page(
        self,
        pack: int,
        kinds: list[str] | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(how many events match, the matching events from ``offset``, at most ``limit``), oldest
        first, counted and cut by SQLite: a long log is never read whole to show a page. A
        negative ``offset`` counts from the end (-50: the last 50)."""
        where: list[str] = ["pack = ?"]
        args: list[object] = [pack]
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args += kinds
        if since_s is not None:
            where.append("t_s >= ?")
            args.append(since_s)
        if until_s is not None:
            where.append("t_s <= ?")
            args.append(until_s)
        clause = " WHERE " + " AND ".join(where)
        (total,) = self._db.execute("SELECT COUNT(*) FROM events" + clause, args).fetchone()
        start = max(total + offset, 0) if offset < 0 else offset
        rows = self._db.execute(
            "SELECT id, pack, t_s, kind, fields, run FROM events" + clause + " ORDER BY id LIMIT ? OFFSET ?",
            [*args, -1 if limit is None else limit, start],
        )
        return int(total), [
            {"id": i, "pack": p, "t_s": t, "kind": k, "run": r, **json.loads(f)} for i, p, t, k, f, r in rows
        ]

    def close(self) -> None:
        """Close the database and let the next writer in (closing twice is harmless)."""
        self._db.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the flock
            self._lock = None

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")


def _take_writer_lock(path: str) -> int:
    """Hold ``path``.lock exclusively (the returned descriptor keeps it) or refuse: a second
    writer would interleave its events and snapshots with the first's."""
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise NvmError(f"cannot open the event log {path}: {err.strerror} ({lock_path})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f"process {holder}" if holder.isdigit() else "another process"
        raise NvmError(f"the event log {path} is in use by {who}; one process writes it at a time") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _plain(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # numpy scalars
    raise TypeError(f"cannot store {type(value).__name__}")
