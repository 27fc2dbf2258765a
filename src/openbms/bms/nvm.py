"""Non-volatile memory: the black-box event log and the values that survive a hard reset.

A SQLite database in WAL mode with ``synchronous=FULL``: every append is one transaction, so a
crash or ``kill -9`` at any point loses no committed event, and ids stay gap-free (the id is the
row id of an append-only table that is never deleted from). This module is the brain's one
storage adapter: the brain hands it events and snapshots; it never reads them back on its own.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from openbms.bms.events import Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    pack INTEGER NOT NULL,
    t_s REAL NOT NULL,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL
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
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise NvmError(f"cannot open the event log {self.path}: {err}") from None

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
        try:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            ids = []
            for row in rows:
                cur.execute("INSERT INTO events (pack, t_s, kind, fields) VALUES (?, ?, ?, ?)", row)
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

    def events(self, pack: int | None = None) -> list[dict[str, Any]]:
        query = "SELECT id, pack, t_s, kind, fields FROM events"
        args: tuple[int, ...] = ()
        if pack is not None:
            query += " WHERE pack = ?"
            args = (pack,)
        return [
            {"id": i, "pack": p, "t_s": t, "kind": k, **json.loads(f)}
            for i, p, t, k, f in self._db.execute(query + " ORDER BY id", args)
        ]

    def close(self) -> None:
        self._db.close()

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")


def _plain(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # numpy scalars
    raise TypeError(f"cannot store {type(value).__name__}")
