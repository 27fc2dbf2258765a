"""What ``openbms serve`` shows and acts on: a running twin, or a real board read through its port.

Both sources give the same things, so the web app does not care which it serves: the latest
reading (the one ``PackReading`` type, as JSON), a short history for the plots, the event log,
the diagnosis and the profile's limits. Only the twin takes actions (the scenario's own step
vocabulary: ``{"load": {"current_a": 30}}``), which it carries out between two control cycles
under the emulator's lock, exactly as a timeline would.

A sampler thread takes a reading every ``SAMPLE_EVERY_S`` of wall time (every poll for a board)
and keeps the last ``HISTORY_ROWS``; each carries a sequence number, so a websocket sends a
reading once, as soon as it is new.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from openbms.bms.events import Event
from openbms.bms.reading import PackReading
from openbms.bms.recovery_classes import CLEARERS, RECOVERY_CLASSES
from openbms.devices.emulator import Emulator, run_emulator
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import ScenarioError

log = logging.getLogger("openbms.serve")
SAMPLE_EVERY_S = 0.1  # wall time between readings of the twin (10 Hz)
HISTORY_ROWS = 36_000  # an hour at 10 Hz
READING_DIGITS = 6  # decimals of a reading's numbers in the API (µV, µA: finer than any AFE)
HISTORY_COLUMNS = ("t_s", "pack_v", "current_a", "soc", "min_cell_v", "max_cell_v", "max_temperature_c")


class ActionError(ValueError):
    """An action that cannot be done: its sentence says why (nothing was changed)."""


def plain(value: Any, digits: int | None = None) -> Any:
    """JSON-safe: NaN and ±inf become None (JSON has no such numbers), recursively; numbers
    rounded to ``digits`` decimals when given (a quantised 3.304 V reads 3.304, not 3.3040000000000003)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return value if digits is None else round(value, digits)
    if isinstance(value, dict):
        return {k: plain(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, digits) for v in value]
    return value


FETS_ACTION = "fets"  # {"fets": {"charge_on": bool, "discharge_on": bool}}: the twin and a real board


def fet_request(value: Any, now: dict[str, Any]) -> tuple[bool, bool]:
    """The (charge_on, discharge_on) a ``fets`` action asks for; a FET it does not name keeps its
    state in the reading ``now``. Raises ActionError with one sentence."""
    if not isinstance(value, dict) or not value or set(value) - {"charge_on", "discharge_on"}:
        raise ActionError('fets takes {"charge_on": true|false, "discharge_on": true|false} (one or both)')
    if not all(isinstance(v, bool) for v in value.values()):
        raise ActionError("fets: charge_on and discharge_on are true or false")
    charge = value.get("charge_on", now.get("charge_fet"))
    discharge = value.get("discharge_on", now.get("discharge_fet"))
    if not isinstance(charge, bool) or not isinstance(discharge, bool):
        raise ActionError("fets: the board's FET states are unknown; name both charge_on and discharge_on")
    return charge, discharge


def cleared_by(recovery_class: str) -> list[str]:
    """What clears a fault of ``recovery_class`` once its condition is gone, in words, read from
    the recovery-class table (``bms.recovery_classes.CLEARERS``)."""
    if recovery_class not in RECOVERY_CLASSES:
        return []
    row = CLEARERS[RECOVERY_CLASSES.index(recovery_class)]
    words = [
        (row.by_itself, "its own release" if row.released_by == "auto" else f"its own release ({row.released_by})"),
        (row.soft_reset, "a soft reset"),
        (row.hard_reset, "a hard reset"),
        (row.service, "a service clear"),
    ]
    return [text for allowed, text in words if allowed]


def reading_doc(reading: PackReading | None, error: str | None = None) -> dict[str, Any]:
    """A reading as the API sends it: every ``PackReading`` field (None where unknown), each
    active fault's details with what clears it, and ``ok``/``error`` for a board that did not
    answer."""
    if reading is None:
        return {"ok": False, "error": error or "no reading yet"}
    doc = {"ok": True, "error": None, **plain(asdict(reading), READING_DIGITS)}
    if doc.get("fault_details"):
        doc["fault_details"] = [{**d, "cleared_by": cleared_by(str(d.get("class")))} for d in doc["fault_details"]]
    return doc


def history_row(reading: PackReading) -> tuple[float | None, ...]:
    cells = [v for v in reading.cell_v or [] if math.isfinite(v)]
    temps = [t for t in reading.temperature_c or [] if math.isfinite(t)]
    return tuple(
        plain(x)
        for x in (
            reading.t_s,
            reading.pack_v,
            reading.current_a,
            reading.soc,
            min(cells) if cells else None,
            max(cells) if cells else None,
            max(temps) if temps else None,
        )
    )


@dataclass(frozen=True)
class Sample:
    seq: int
    doc: dict[str, Any]
    at_unix: float = 0.0  # when it was taken (wall clock): a watcher's latency is measured from it


class LiveSource(Protocol):
    """What the web app reads (and, for the twin, acts on)."""

    kind: str  # "twin" or "device"
    label: str

    def latest(self) -> Sample: ...
    def history(self, since_s: float | None) -> dict[str, list[Any]]: ...
    def events(
        self, kinds: list[str], since_s: float | None, until_s: float | None, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[dict[str, Any]]]: ...
    def diagnosis(self) -> dict[str, Any]: ...
    def limits(self) -> dict[str, Any]: ...
    def log_control(self, what: str, accepted: bool, origin: str, reason: str, fields: dict[str, Any]) -> None: ...
    def act(self, step: dict[str, Any]) -> None: ...
    def clock_s(self) -> float: ...
    def hold_up_s(self) -> float | None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


class _Sampler:
    """The latest reading and the history, filled by a thread calling ``read`` every ``every_s``."""

    def __init__(self, read: Callable[[], tuple[PackReading | None, str | None]], every_s: float) -> None:
        self._read = read
        self.every_s = every_s
        self._lock = threading.Lock()
        self._latest = Sample(0, reading_doc(None))
        self._rows: deque[tuple[float | None, ...]] = deque(maxlen=HISTORY_ROWS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="openbms-sampler", daemon=True)

    def start(self) -> None:
        self.take()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.take()

    def take(self) -> None:
        """One reading into the latest and the history. Nothing a reading can do stops the
        sampler: a failure becomes the reading's error, shown on the page."""
        try:
            reading, error = self._read()
        except Exception as err:  # noqa: BLE001 - a page that stops updating silently is worse
            log.warning("reading failed: %s", err)
            reading, error = None, f"reading failed: {err}"
        doc = reading_doc(reading, error)
        with self._lock:
            self._latest = Sample(self._latest.seq + 1, doc, time.time())
            if reading is not None:
                self._rows.append(history_row(reading))

    def latest(self) -> Sample:
        with self._lock:
            return self._latest

    def history(self, since_s: float | None) -> dict[str, list[Any]]:
        with self._lock:
            rows = [r for r in self._rows if since_s is None or (r[0] is not None and r[0] >= since_s)]
        return {name: [r[i] for r in rows] for i, name in enumerate(HISTORY_COLUMNS)}


class _QuietPort:
    """The emulator's port when nobody speaks a BMS protocol to the twin: serving is waiting."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def serve(self, emulator: Emulator, timeout_s: float) -> None:
        self._stop.wait(timeout_s)

    def close(self) -> None:
        return None


class TwinSource:
    """A scenario's twin running in real time (× ``speed``) in a thread, forever after its timeline."""

    kind = "twin"

    def __init__(self, runner: ScenarioRunner, speed: float = 1.0) -> None:
        self.runner = runner
        self.twin = runner.twin
        self.label = runner.scenario.name
        self.speed = speed
        # The emulator owns the lock the twin steps under and paces it; it answers no port here.
        self.emulator = Emulator(runner, "jbd", allow_control=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="openbms-twin", daemon=True)
        self._sampler = _Sampler(self._read, SAMPLE_EVERY_S)
        self.failure: str | None = None  # why the twin's thread stopped, if it did

    def _run(self) -> None:
        try:
            run_emulator(self.emulator, _QuietPort(self._stop), speed=self.speed, stop=self._stop)  # type: ignore[arg-type]
        except Exception as err:  # noqa: BLE001 - shown on the page and by the CLI, never silent
            self.failure = f"the twin stopped: {err}"

    def _read(self) -> tuple[PackReading | None, str | None]:
        if self.failure is not None:
            return None, self.failure
        with self.emulator.lock:
            return self.twin.reading(0), None

    def start(self) -> None:
        self._sampler.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sampler.stop()

    def latest(self) -> Sample:
        return self._sampler.latest()

    def history(self, since_s: float | None) -> dict[str, list[Any]]:
        return self._sampler.history(since_s)

    def clock_s(self) -> float:
        with self.emulator.lock:
            return float(self.twin.t_s)

    def hold_up_s(self) -> float | None:
        return float(self.twin.hold_up_s)

    def events(
        self, kinds: list[str], since_s: float | None, until_s: float | None, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        with self.emulator.lock:
            total, rows = self.runner.nvm.events_page(0, kinds, since_s, until_s, offset, limit)
        return total, [plain(e) for e in rows]

    def diagnosis(self) -> dict[str, Any]:
        from openbms.diagnose.engine import diagnose
        from openbms.diagnose.from_twin import RECENT_EVENTS, snapshot_of
        from openbms.diagnose.report import diagnosis_json

        with self.emulator.lock:
            _, rows = self.runner.nvm.events_page(0, offset=-RECENT_EVENTS)
            history = [{k: v for k, v in e.items() if k not in ("id", "pack", "run")} for e in rows]
            verdict = diagnose(snapshot_of(self.twin, 0, history))
        return plain(diagnosis_json(verdict))

    def limits(self) -> dict[str, Any]:
        return profile_limits(self.twin.bms.table)

    def act(self, step: dict[str, Any]) -> None:
        if isinstance(step, dict) and len(step) == 1 and FETS_ACTION in step:
            charge, discharge = fet_request(step[FETS_ACTION], self.latest().doc)
            with self.emulator.lock:  # as a monitor's write over the link: the BMS logs it too
                heard = self.twin.control_write(0, "http", "fet", True, charge_on=charge, discharge_on=discharge)
            if not heard:
                raise ActionError("the BMS does not listen now (asleep, unpowered or hung)")
        else:
            with self.emulator.lock:
                try:
                    self.runner.act(step)
                except ScenarioError as err:
                    raise ActionError(str(err)) from None
        self._sampler.take()

    def log_control(self, what: str, accepted: bool, origin: str, reason: str, fields: dict[str, Any]) -> None:
        with self.emulator.lock:
            event = Event(
                float(self.twin.t_s),
                0,
                "control_write",
                {"protocol": "http", "what": what, "accepted": accepted, "origin": origin, "reason": reason, **fields},
            )
            self.twin._record([event])


def profile_limits(table: Any) -> dict[str, Any]:
    """The protection table's cell-voltage and temperature limits, for the bars on the page."""
    names = list(table.names)

    def level(name: str, column: Any) -> float | None:
        if name not in names:
            return None
        j = names.index(name)
        return plain(float(column[j])) if bool(table.enabled[j]) else None

    return {
        "cell_v_max_v": level("cell_overvoltage", table.trip),
        "cell_v_warn_high_v": level("cell_overvoltage", table.warn),
        "cell_v_min_v": level("cell_undervoltage", table.trip),
        "cell_v_warn_low_v": level("cell_undervoltage", table.warn),
        "temperature_max_c": level("discharge_overtemperature", table.trip),
    }


class DeviceSource:
    """A real board (or an emulated one) read through its port every ``interval_s``. Every poll
    goes into its history file (``devices.history``: SQLite, WAL, committed per poll), and the
    events the history derives (faults set and cleared, silences, answers) feed the page's event
    log and the diagnosis, with what earlier runs recorded: a cut-off followed by silence reads
    as sleep, not as a dead board."""

    kind = "device"

    def __init__(
        self, url: str, interval_s: float, profile: str, history_path: Path | None, keep_s: float | None = None
    ) -> None:
        from openbms.bms.protections import ProtectionTable
        from openbms.devices.history import KEEP_S, HistoryRecorder, load_history
        from openbms.devices.reader import DeviceReader
        from openbms.profiles import load_profile

        self.url = url
        self.label = url
        self._profile = load_profile(profile)
        self._table = ProtectionTable.from_profile(self._profile)
        self._events: list[dict[str, Any]] = []
        self._recorder = None
        if history_path is not None:
            if history_path.is_file():
                self._events = load_history(history_path, url)
            self._recorder = HistoryRecorder(history_path, url, KEEP_S if keep_s is None else keep_s)
        try:
            self._reader = DeviceReader(url)
        except BaseException:
            if self._recorder is not None:
                self._recorder.close()
            raise
        t0 = self._recorder.t0_unix if self._recorder is not None else None
        self._t0_unix = t0 if t0 is not None else time.time()
        self._io = threading.Lock()
        self._last: PackReading | None = None
        self.history_problem: str | None = None  # why the last poll could not be recorded
        self._sampler = _Sampler(self._read, interval_s)

    def _read(self) -> tuple[PackReading | None, str | None]:
        from dataclasses import replace

        from openbms.devices.history import MAX_EVENTS, HistoryError

        with self._io:
            poll = self._reader.poll()
            now = time.time()
            if self._recorder is not None:
                try:
                    events = self._recorder.record(poll, now)
                except HistoryError as err:  # a full disk must not blind the page: it says so
                    self.history_problem = str(err)
                    log.warning("%s", err)
                else:
                    self.history_problem = None
                    self._events = (self._events + events)[-MAX_EVENTS:]
        if poll.reading is None:
            return None, poll.error
        reading = replace(poll.reading, t_s=now - self._t0_unix)
        self._last = reading
        return reading, None

    def start(self) -> None:
        self._sampler.start()

    def stop(self) -> None:
        self._sampler.stop()
        with self._io:
            self._reader.close()
            if self._recorder is not None:
                self._recorder.close()

    def latest(self) -> Sample:
        return self._sampler.latest()

    def history(self, since_s: float | None) -> dict[str, list[Any]]:
        return self._sampler.history(since_s)

    def clock_s(self) -> float:
        """Seconds since the history began (this run, when nothing is recorded)."""
        return time.time() - self._t0_unix

    def hold_up_s(self) -> float | None:
        return None  # nobody measured this board's hold-up: the wizard waits the full time

    def events(
        self, kinds: list[str], since_s: float | None, until_s: float | None, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """The board's history events (at most the history's last MAX_EVENTS are kept here)."""
        rows = [
            plain(e)
            for e in list(self._events)
            if (not kinds or e.get("kind") in kinds)
            and (since_s is None or e.get("t_s", 0.0) >= since_s)
            and (until_s is None or e.get("t_s", 0.0) <= until_s)
        ]
        start = max(len(rows) + offset, 0) if offset < 0 else offset
        return len(rows), rows[start : None if limit is None else start + limit]

    def diagnosis(self) -> dict[str, Any]:
        from openbms.diagnose.engine import diagnose
        from openbms.diagnose.from_device import snapshot_from_reading
        from openbms.diagnose.report import diagnosis_json

        sample = self.latest().doc
        error = None if sample.get("ok") else str(sample.get("error"))
        reading = self._last if error is None else None
        snapshot = snapshot_from_reading(reading, error, history=list(self._events), profile=self._profile)
        return plain(diagnosis_json(diagnose(snapshot)))

    def limits(self) -> dict[str, Any]:
        return profile_limits(self._table)

    def act(self, step: dict[str, Any]) -> None:
        """Only the FETs (JBD and Daly boards): everything else a person does with their hands."""
        from openbms.devices.errors import FrameError
        from openbms.devices.reader import DeviceError
        from openbms.devices.transport import TransportError

        if not (isinstance(step, dict) and len(step) == 1 and FETS_ACTION in step):
            raise ActionError('a real board takes only {"fets": …} from this page: do the rest with your hands')
        charge, discharge = fet_request(step[FETS_ACTION], self.latest().doc)
        with self._io:
            try:
                accepted = self._reader.set_fets(charge, discharge)
            except DeviceError as err:
                raise ActionError(str(err)) from None
            except (TransportError, FrameError) as err:
                raise ActionError(f"the board did not take the FET write: {err}") from None
        if not accepted:
            raise ActionError("the board refused the FET write")
        self._sampler.take()

    def log_control(self, what: str, accepted: bool, origin: str, reason: str, fields: dict[str, Any]) -> None:
        log.info("control %s from %s: %s %s", what, origin, "accepted" if accepted else "refused", reason)


def default_history_path(url: str) -> Path:
    """Where ``serve --device`` keeps a board's history unless told: one file per device URL,
    ``$XDG_DATA_HOME/openbms/history/`` (``~/.local/share`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "openbms" / "history" / (re.sub(r"[^A-Za-z0-9._-]+", "_", url).strip("_") + ".sqlite")
