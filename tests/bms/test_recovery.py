"""docs/behaviour.md §4–§5 recovery against the brain alone: one test per transition of the recovery table.

Rows are recovery classes (auto, charger, load-removal, soft, latched, persistent), each with a
fault that exercises it; columns are the clearers: the fault's own release when its condition is
gone, a soft reset (``soft`` command, reset ``button``, ``charger`` wake), a hard reset (``boot``
from the snapshot ``persistent_snapshot`` gave before the power loss) and a service clear. Each
transition is checked both ways ("root cause first"): it clears exactly when the table says, with
the right ``fault_cleared.by`` and ``reset`` event, and never while the condition is present.
Then sleep and wake, the states of §5 and the deep-discharge recovery charge.

Same bench as ``test_protections``: a 4-cell 100 Ah LiFePO4 pack, one cycle every 0.1 s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from test_protections import (
    CAPACITY_AH,
    DT_S,
    EPS,
    NAN,
    Driver,
    cells,
    healthy_start,
    measurements,
    of,
)

from openbms.bms.events import Event
from openbms.bms.recovery_classes import CLEARERS
from openbms.bms.recovery_classes import RECOVERY_CLASSES as CLASSES

# docs/behaviour.md §4's table: what clears each class (with its condition gone).
#   self: by itself; soft: soft reset; hard: power removed ≥ hold-up; service: authenticated clear
#   (for latched: only if the profile allows it).
TABLE: dict[str, dict[str, bool]] = {
    "auto": {"self": True, "soft": True, "hard": True, "service": True},
    "charger": {"self": True, "soft": True, "hard": True, "service": True},
    "load-removal": {"self": True, "soft": True, "hard": True, "service": True},
    "soft": {"self": False, "soft": True, "hard": True, "service": True},
    "latched": {"self": False, "soft": False, "hard": True, "service": False},
    "persistent": {"self": False, "soft": False, "hard": False, "service": True},
}
ALLOW_LATCHED_CLEAR = {"reset.service_clears_latched": True}
SLEEP_DELAY_S = 300.0
REARM_S = 120.0
RECOVERY_CHARGE_A = 0.05 * CAPACITY_AH


# --------------------------------------------------------------------------- helpers
def run_until(d: Driver, kind: str, timeout_s: float, fault: str | None = None, **changes: Any) -> Event:
    m = measurements(**changes)
    for _ in range(round(timeout_s / DT_S)):
        found = of(d.steps(1, m), kind, fault)
        if found:
            return found[0]
    raise AssertionError(f"no {kind} ({fault}) within {timeout_s} s")


def power_cycle(d: Driver, off_s: float = 700.0) -> dict[str, Any]:
    """A full power loss (longer than the 600 s hold-up) and a boot from the snapshot the
    non-volatile memory took before it (through JSON, as a store would keep it)."""
    snapshot = json.loads(json.dumps(d.bms.persistent_snapshot(0)))
    d.k += round(off_s / DT_S)
    d.bms.idle(d.t_s - DT_S)  # the controller did not run during the outage
    d.bms.boot(np.ones(1, dtype=bool), [snapshot], method="hard")
    return snapshot


def resets(events: list[Event]) -> list[dict[str, Any]]:
    return [e.fields for e in of(events, "reset")]


def cleared(events: list[Event], fault: str) -> list[str]:
    """The ``by`` of every ``fault_cleared`` of ``fault``."""
    return [e.fields["by"] for e in of(events, "fault_cleared", fault)]


def persisted(events: list[Event], fault: str) -> list[str]:
    """The ``method`` of every ``fault_persisted_after_reset`` of ``fault``."""
    return [e.fields["method"] for e in of(events, "fault_persisted_after_reset", fault)]


def klass(d: Driver, fault: str) -> str:
    (details,) = [f for f in d.bms.fault_details(0) if f["fault"] == fault]
    return str(details["class"])


def fets_turned_on(events: list[Event]) -> set[str]:
    return {e.fields["fet"] for e in of(events, "fet_changed") if e.fields["on"]}


# --------------------------------------------------------------------------- the rows
def _trip_on(fault: str, timeout_s: float, **readings: Any) -> Callable[[Driver], None]:
    def trip(d: Driver) -> None:
        run_until(d, "fault_set", timeout_s, fault, **readings)

    return trip


def _trip_short(d: Driver) -> None:
    m = measurements(
        short_circuit_tripped=True,
        short_circuit_at_s=d.t_s - 0.05,
        short_circuit_peak_a=800.0,
        load_present=True,
    )
    assert of(d.steps(1, m), "fault_set", "short_circuit")


def _trip_overcurrent_three_times(d: Driver) -> None:
    for _ in range(2):
        run_until(d, "fault_set", 2.0, "discharge_overcurrent", current_a=-200.0)
        run_until(d, "fault_cleared", 31.0, "discharge_overcurrent")
    event = run_until(d, "fault_set", 2.0, "discharge_overcurrent", current_a=-200.0)
    assert event.fields["class"] == "latched"


@dataclass(frozen=True)
class Row:
    """A fault of one recovery class, tripped, with read-outs where its condition is still
    present or gone (for a latched or persistent fault: its trip condition has gone away)."""

    id: str
    fault: str
    klass: str
    trip: Callable[[Driver], None]
    present: dict[str, Any]
    gone: dict[str, Any]
    fets_active: tuple[bool, bool]  # (charge, discharge) FETs while it is active and present
    by: str | None = None  # fault_cleared.by of its own release; None: it never releases
    release_s: float = 0.0  # its own release delay
    others: tuple[str, ...] = ()  # faults the same read-outs trip alongside

    def start(self, overrides: dict[str, Any] | None = None) -> Driver:
        d = healthy_start(overrides)
        self.trip(d)
        assert self.fault in d.bms.active_faults(0)
        assert klass(d, self.fault) == self.klass
        return d


ROWS = [
    Row(
        "auto-charge_overtemperature",
        "charge_overtemperature",
        "auto",
        _trip_on("charge_overtemperature", 3.0, cell_t_c=46.0),
        present={"cell_t_c": 42.0},  # below the trip, not yet back at the 40 °C release
        gone={"cell_t_c": 38.0},
        fets_active=(False, True),
        by="auto",
        release_s=5.0,
    ),
    Row(
        "charger-cell_undervoltage",
        "cell_undervoltage",
        "charger",
        _trip_on("cell_undervoltage", 3.0, cell_v=2.45),
        present={"cell_v": 2.70},  # above the trip, not yet back at the 2.90 V release
        gone={"cell_v": 2.95, "current_a": 10.0},  # a charger lifted the cells
        fets_active=(True, False),
        by="charger",
        release_s=2.0,
    ),
    Row(
        "load_removal-discharge_overcurrent",
        "discharge_overcurrent",
        "load-removal",
        _trip_on("discharge_overcurrent", 2.0, current_a=-200.0),
        present={"current_a": 0.0, "load_present": True},  # the FET is open, the load still there
        gone={"current_a": 0.0, "load_present": False},
        fets_active=(True, False),
        by="load_removal",
        release_s=30.0,
    ),
    Row(
        "load_removal-short_circuit",
        "short_circuit",
        "load-removal",
        _trip_short,
        present={"current_a": 0.0, "load_present": True},  # the short is still connected
        gone={"current_a": 0.0, "load_present": False},
        fets_active=(False, False),
        by="load_removal",
        release_s=60.0,
    ),
    Row(
        "soft-comm_error",
        "comm_error",
        "soft",
        _trip_on("comm_error", 11.0, link_ok=False),
        present={"link_ok": False},
        gone={"link_ok": True},
        fets_active=(True, True),  # a warning: no path blocked
    ),
    Row(
        "latched-cell_overvoltage_latched",
        "cell_overvoltage_latched",
        "latched",
        _trip_on("cell_overvoltage_latched", 2.0, cell_v=3.85),
        present={"cell_v": 3.85},
        gone={"cell_v": 3.30},
        fets_active=(False, False),
        others=("cell_overvoltage",),
    ),
    Row(
        "latched-sensor_fault",
        "sensor_fault",
        "latched",
        _trip_on("sensor_fault", 2.0, cell_v=cells(3.30, NAN, 3.30, 3.30), stack_v=13.2),
        present={"cell_v": cells(3.30, NAN, 3.30, 3.30), "stack_v": 13.2},
        gone={},
        fets_active=(False, False),
    ),
    Row(
        "latched-afe_fault_not_answering",
        "afe_fault",
        "latched",
        _trip_on("afe_fault", 2.0, afe_ok=False),
        present={"afe_ok": False},
        gone={},  # the glitch is gone
        fets_active=(False, False),
    ),
    Row(
        "latched-escalated_discharge_overcurrent",
        "discharge_overcurrent",
        "latched",
        _trip_overcurrent_three_times,
        present={"current_a": 0.0, "load_present": True},
        gone={"current_a": 0.0, "load_present": False},
        fets_active=(True, False),
    ),
    Row(
        "persistent-deep_discharge",
        "deep_discharge",
        "persistent",
        _trip_on("deep_discharge", 11.0, cell_v=1.95),
        present={"cell_v": 1.95},
        gone={"cell_v": 3.00},  # recovered by a recovery charge
        fets_active=(True, False),  # the charge FET stays on for a ≤ 0.05 C recovery charge
        others=("cell_undervoltage",),
    ),
    Row(
        "persistent-afe_fault_damaged",
        "afe_fault",
        "persistent",
        _trip_on("afe_fault", 2.0, afe_damaged=True),
        present={"afe_damaged": True},
        gone={},  # the AFE (board) was repaired
        fets_active=(False, False),
    ),
]
ROW_IDS = [r.id for r in ROWS]
SOFT_METHODS = ("soft", "button")


def test_rows_cover_every_class() -> None:
    assert {r.klass for r in ROWS} == set(CLASSES) == set(TABLE)


def test_the_brains_clearer_table_is_the_specs() -> None:
    """The brain reads its rule from ``recovery_classes.CLEARERS``; this file's TABLE is docs/behaviour.md §4's."""
    brain = {
        c.recovery_class: {"self": c.by_itself, "soft": c.soft_reset, "hard": c.hard_reset, "service": c.service}
        for c in CLEARERS
    }
    assert brain == TABLE


def _soft_reset(d: Driver, method: str, readings: dict[str, Any]) -> list[Event]:
    """A soft reset in the cycle after one cycle of ``readings`` (so the brain has seen them)."""
    events = d.steps(1, **readings)
    if method == "button":
        return events + d.steps(1, measurements(reset_button=True, **readings))
    return events + d.bms.soft_reset([0], d.t_s, method)


# --------------------------------------------------------------------------- column: by itself
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_clears_by_itself_only_when_the_table_says(row: Row) -> None:
    d = row.start()
    events = d.run(max(3 * row.release_s, 120.0), **row.gone)
    if TABLE[row.klass]["self"]:
        assert cleared(events, row.fault) == [row.by]
        assert d.bms.state_name(0) == "normal"
        assert d.fets() == (True, True)
    else:
        assert cleared(events, row.fault) == []
        assert row.fault in d.bms.active_faults(0)
        assert klass(d, row.fault) == row.klass
    assert resets(events) == []


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_never_clears_by_itself_while_the_condition_is_present(row: Row) -> None:
    d = row.start()
    events = d.run(max(3 * row.release_s, 120.0), **row.present)
    assert cleared(events, row.fault) == []
    assert row.fault in d.bms.active_faults(0)
    assert d.fets() == row.fets_active


def test_auto_fault_releases_exactly_after_its_release_delay() -> None:
    d = ROWS[0].start()
    t1 = d.t_s
    m = measurements(cell_t_c=40.0)
    assert of(d.steps(50, m), "fault_cleared") == []  # t1 … t1 + 5 s − one cycle
    (event,) = of(d.steps(1, m), "fault_cleared", "charge_overtemperature")
    assert event.t_s == pytest.approx(t1 + 5.0)
    assert event.fields["by"] == "auto"


def test_charger_fault_keeps_charging_allowed_throughout() -> None:
    d = healthy_start()
    events = d.run(3.0, cell_v=2.45)  # tripped
    events += d.run(60.0, cell_v=2.60, current_a=10.0)  # charging, still below the release
    assert "cell_undervoltage" in d.bms.active_faults(0)
    assert not [e for e in of(events, "fet_changed") if e.fields["fet"] == "charge"]
    assert d.fets() == (True, False)
    assert d.commands is not None and d.commands.charge_current_limit_a[0] > 0.0
    event = run_until(d, "fault_cleared", 3.0, "cell_undervoltage", cell_v=2.90, current_a=10.0)
    assert event.fields["by"] == "charger"
    assert d.fets() == (True, True)


# --------------------------------------------------------------------------- column: soft reset
@pytest.mark.parametrize("method", SOFT_METHODS)
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_soft_reset_with_the_condition_gone(row: Row, method: str) -> None:
    d = row.start()
    events = _soft_reset(d, method, row.gone)
    (reset,) = resets(events)
    assert reset["method"] == method
    if TABLE[row.klass]["soft"]:
        assert cleared(events, row.fault) == ["soft_reset"]
        assert reset["result"] == "ok"
        assert "reason" not in reset
        assert persisted(events, row.fault) == []
        events = d.run(1.0, **row.gone)  # and it does not come back
        assert of(events, "fault_set", row.fault) == []
        assert row.fault not in d.bms.active_faults(0)
    else:
        assert cleared(events, row.fault) == []
        assert reset["result"] == "refused"
        assert row.fault in reset["reason"]
        assert row.fault in d.bms.active_faults(0)
        assert klass(d, row.fault) == row.klass


@pytest.mark.parametrize("method", SOFT_METHODS)
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_soft_reset_with_the_condition_present_does_not_clear(row: Row, method: str) -> None:
    d = row.start()
    events = _soft_reset(d, method, row.present)
    events += d.run(1.0, **row.present)
    assert cleared(events, row.fault) == []
    assert row.fault in d.bms.active_faults(0)
    assert d.fets() == row.fets_active
    (reset,) = resets(events)
    assert reset["method"] == method
    assert row.fault in reset["reason"]
    if TABLE[row.klass]["soft"]:
        assert reset["result"] == "ok"  # the reset ran; the fault's condition is still there
        assert persisted(events, row.fault) == [method]
    else:
        assert reset["result"] == "refused"


def test_soft_reset_restarts_a_release_timer_when_the_condition_persists() -> None:
    """Load-removal, load still there: persisted. Load removed: the 30 s count starts then."""
    d = ROWS[2].start()
    d.run(5.0, current_a=0.0, load_present=True)
    assert persisted(d.bms.soft_reset([0], d.t_s, "soft"), "discharge_overcurrent") == ["soft"]
    t1 = d.t_s
    event = run_until(d, "fault_cleared", 31.0, "discharge_overcurrent")
    assert event.t_s == pytest.approx(t1 + 30.0)


def test_button_press_sees_the_load_removed_in_the_same_read_out() -> None:
    """A scenario's ``disconnect: load`` and ``press: reset_button`` at the same instant reach the
    brain in one read-out: the button's reset must judge the load from that read-out."""
    d = ROWS[2].start()
    d.run(2.0, current_a=0.0, load_present=True)
    events = d.steps(1, measurements(reset_button=True, current_a=0.0, load_present=False))
    assert cleared(events, "discharge_overcurrent") == ["soft_reset"]
    assert persisted(events, "discharge_overcurrent") == []


def test_soft_reset_clears_only_its_classes_among_several_faults() -> None:
    """comm_error (soft), an auto fault whose condition is gone, a latched one: one reset."""
    d = healthy_start()
    run_until(d, "fault_set", 11.0, "comm_error", link_ok=False)
    run_until(d, "fault_set", 2.0, "afe_fault", afe_ok=False)
    run_until(d, "fault_set", 3.0, "charge_overtemperature", cell_t_c=46.0)
    d.steps(1, cell_t_c=38.0)
    events = d.bms.soft_reset([0], d.t_s, "soft")
    assert sorted(e.fields["fault"] for e in of(events, "fault_cleared")) == [
        "charge_overtemperature",
        "comm_error",
    ]
    assert {e.fields["by"] for e in of(events, "fault_cleared")} == {"soft_reset"}
    (reset,) = resets(events)
    assert reset["result"] == "refused" and "afe_fault" in reset["reason"]
    assert d.bms.active_faults(0) == ["afe_fault"]
    d.run(1.0)
    assert d.bms.state_name(0) == "latched"


def test_soft_command_on_a_healthy_pack_is_logged_and_changes_nothing() -> None:
    d = healthy_start()
    events = d.bms.soft_reset([0], d.t_s, "soft")
    assert resets(events) == [{"method": "soft", "result": "ok"}]
    assert [e for e in events if e.kind != "reset"] == []
    d.run(1.0)
    assert d.fets() == (True, True)
    assert d.bms.state_name(0) == "normal"


# --------------------------------------------------------------------------- column: hard reset
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_hard_reset_with_the_condition_gone(row: Row) -> None:
    d = row.start()
    d.steps(1, **row.gone)
    power_cycle(d)
    t_boot = d.t_s
    events = d.steps(1, **row.gone)
    assert resets(events) == [{"method": "hard", "result": "ok"}]
    if TABLE[row.klass]["hard"]:
        assert row.fault not in d.bms.active_faults(0)
        assert of(events, "fault_set", row.fault) == []
        assert persisted(events, row.fault) == []
        assert d.fets() == (True, True)
        assert d.bms.state_name(0) == "normal"
    else:  # kept in non-volatile memory
        assert row.fault in d.bms.active_faults(0)
        assert klass(d, row.fault) == row.klass
        assert d.bms.state_name(0) == "locked"
        assert "discharge" not in fets_turned_on(events)
    events = d.run(5.0, **row.gone)
    assert (row.fault in d.bms.active_faults(0)) == (not TABLE[row.klass]["hard"])
    assert all(e.t_s >= t_boot for e in events)


@pytest.mark.parametrize("row", [r for r in ROWS if TABLE[r.klass]["hard"]], ids=lambda r: r.id)
def test_hard_reset_logs_what_it_cleared(row: Row) -> None:
    """docs/behaviour.md §7: ``fault_cleared`` has ``by: hard_reset`` — the log must not show a fault set
    and never cleared after a hard reset took it away."""
    d = row.start()
    d.steps(1, **row.gone)
    power_cycle(d)
    events = d.steps(1, **row.gone)
    assert cleared(events, row.fault) == ["hard_reset"]


@pytest.mark.parametrize(
    "row",
    ROWS,
    ids=ROW_IDS,
)
def test_hard_reset_with_the_condition_present_re_trips_at_once(row: Row) -> None:
    d = row.start()
    d.steps(1, **row.present)
    power_cycle(d)
    t_boot = d.t_s
    events = d.steps(1, **row.present)  # the first cycle after the boot
    (event,) = of(events, "fault_set", row.fault)
    assert event.t_s == pytest.approx(t_boot)  # no trip delay
    assert persisted(events, row.fault) == ["hard"]
    assert resets(events) == [{"method": "hard", "result": "ok"}]
    # Every protection was evaluated before a FET closed: only the paths it allows closed.
    assert d.fets() == row.fets_active
    assert fets_turned_on(events) == {
        fet for fet, on in zip(("charge", "discharge"), row.fets_active, strict=True) if on
    }
    events = d.run(5.0, **row.present)
    assert cleared(events, row.fault) == []
    assert d.fets() == row.fets_active


def test_boot_trips_a_remembered_fault_in_the_hysteresis_band_without_its_trip_condition() -> None:
    """2.70 V is above the 2.50 V trip: only the memory of the active fault makes it re-trip."""
    d = ROWS[1].start()
    d.steps(1, cell_v=2.70)
    power_cycle(d)
    events = d.steps(1, cell_v=2.70)
    assert [e.fields["fault"] for e in of(events, "fault_set")] == ["cell_undervoltage"]
    assert fets_turned_on(events) == {"charge"}


def test_boot_without_memory_of_the_fault_does_not_re_trip_in_the_band() -> None:
    d = ROWS[1].start()
    d.steps(1, cell_v=2.70)
    d.k += 7000
    d.bms.idle(d.t_s - DT_S)
    d.bms.boot(np.ones(1, dtype=bool), [None], method="hard")
    events = d.steps(1, cell_v=2.70)
    assert of(events, "fault_set") == []
    assert of(events, "fault_persisted_after_reset") == []
    assert d.fets() == (True, True)


def test_hard_reset_keeps_a_persistent_fault_across_two_power_losses() -> None:
    d = ROWS[9].start()
    for _ in range(2):
        d.steps(1, cell_v=3.00)
        power_cycle(d)
        d.steps(1, cell_v=3.00)
        assert "deep_discharge" in d.bms.active_faults(0)
        assert klass(d, "deep_discharge") == "persistent"
    assert d.bms.persistent_snapshot(0)["reset_counts"]["hard"] == 2


# --------------------------------------------------------------------------- column: service clear
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_service_clear_authenticated_with_the_condition_gone(row: Row) -> None:
    d = row.start()
    d.steps(1, **row.gone)
    events = d.bms.service_clear(0, row.fault, True, d.t_s)
    (reset,) = resets(events)
    assert reset["method"] == "service" and reset["fault"] == row.fault
    if TABLE[row.klass]["service"]:
        assert cleared(events, row.fault) == ["service"]
        assert reset["result"] == "ok"
        assert row.fault not in d.bms.active_faults(0)
        events = d.run(1.0, **row.gone)
        assert of(events, "fault_set", row.fault) == []
    else:  # latched, and the default profile does not allow it
        assert cleared(events, row.fault) == []
        assert reset["result"] == "refused"
        assert "profile" in reset["reason"]
        assert row.fault in d.bms.active_faults(0)


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_service_clear_not_authenticated_is_refused(row: Row) -> None:
    d = row.start(ALLOW_LATCHED_CLEAR)
    d.steps(1, **row.gone)
    events = d.bms.service_clear(0, row.fault, False, d.t_s)
    assert cleared(events, row.fault) == []
    (reset,) = resets(events)
    assert (reset["method"], reset["result"]) == ("service", "refused")
    assert "authenticated" in reset["reason"]
    assert row.fault in d.bms.active_faults(0)


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_service_clear_with_the_condition_present_is_refused(row: Row) -> None:
    d = row.start(ALLOW_LATCHED_CLEAR)  # so a latched fault reaches the condition check
    d.steps(1, **row.present)
    events = d.bms.service_clear(0, row.fault, True, d.t_s)
    events += d.run(1.0, **row.present)
    assert cleared(events, row.fault) == []
    (reset,) = resets(events)
    assert (reset["method"], reset["result"]) == ("service", "refused")
    assert reset["reason"] == "condition still present"
    assert row.fault in d.bms.active_faults(0)
    assert d.fets() == row.fets_active


@pytest.mark.parametrize("row", [r for r in ROWS if r.klass == "latched"], ids=lambda r: r.id)
def test_service_clear_of_a_latched_fault_when_the_profile_allows_it(row: Row) -> None:
    d = row.start(ALLOW_LATCHED_CLEAR)
    d.steps(1, **row.gone)
    events = d.bms.service_clear(0, row.fault, True, d.t_s)
    assert cleared(events, row.fault) == ["service"]
    assert resets(events) == [{"method": "service", "result": "ok", "fault": row.fault}]
    d.run(3.0, **row.gone)
    assert d.bms.active_faults(0) == []
    assert d.fets() == (True, True)
    assert d.bms.state_name(0) == "normal"


def test_service_clear_of_a_fault_that_is_not_active_is_refused() -> None:
    d = healthy_start()
    (event,) = d.bms.service_clear(0, "deep_discharge", True, d.t_s)
    assert event.kind == "reset"
    assert event.fields["result"] == "refused" and event.fields["reason"] == "fault not active"


def test_every_reset_is_counted_for_non_volatile_memory() -> None:
    d = ROWS[4].start()  # comm_error
    d.bms.soft_reset([0], d.t_s, "soft")
    d.steps(1, measurements(reset_button=True))
    d.bms.service_clear(0, "comm_error", False, d.t_s)
    counts = d.bms.persistent_snapshot(0)["reset_counts"]
    assert (counts["soft"], counts["button"], counts["service"], counts["hard"]) == (1, 1, 1, 0)


# --------------------------------------------------------------------------- sleep
UV = {"cell_v": 2.45}  # under-voltage, no current


def _under_voltage(charger: bool = False) -> tuple[Driver, float]:
    d = healthy_start()
    event = run_until(d, "fault_set", 3.0, "cell_undervoltage", charger_present=charger, **UV)
    return d, event.t_s


def asleep(charger: bool = False) -> Driver:
    d, _ = _under_voltage(charger)
    run_until(d, "sleep", SLEEP_DELAY_S + 1.0, charger_present=charger, **UV)
    assert d.bms.sleeping[0]
    return d


def test_sleep_after_300_s_of_under_voltage_and_not_before() -> None:
    d, t_trip = _under_voltage()
    m = measurements(**UV)
    # Up to t_trip + 300 s − one cycle: the fault has lasted less than 300 s.
    early = d.steps(round(SLEEP_DELAY_S / DT_S) - 1, m)
    assert of(early, "sleep") == []
    assert not d.bms.sleeping[0]
    (event,) = of(d.steps(1, m), "sleep")
    assert event.t_s == pytest.approx(t_trip + SLEEP_DELAY_S)


def test_sleep_turns_both_fets_off_and_reports_sleep() -> None:
    d, _ = _under_voltage()
    events = d.run(SLEEP_DELAY_S + 1.0, **UV)
    (event,) = of(events, "sleep")
    assert event.fields["reason"] == "cell_undervoltage"
    assert d.fets() == (False, False)
    assert [e.fields for e in of(events, "fet_changed")] == [{"fet": "charge", "on": False}]
    assert d.bms.state_name(0) == "sleep"
    assert d.commands is not None
    assert d.commands.charge_current_limit_a[0] == 0.0
    assert d.commands.discharge_current_limit_a[0] == 0.0
    assert "cell_undervoltage" in d.bms.active_faults(0)


def test_no_sleep_while_charge_current_flows() -> None:
    d, _ = _under_voltage()
    events = d.run(2 * SLEEP_DELAY_S, cell_v=2.60, current_a=10.0)  # still below the release
    assert of(events, "sleep") == []
    assert "cell_undervoltage" in d.bms.active_faults(0)
    assert d.fets() == (True, False)


def test_sleep_count_starts_again_after_a_charge() -> None:
    d, _ = _under_voltage()
    d.run(200.0, **UV)
    d.run(10.0, cell_v=2.60, current_a=10.0)
    assert of(d.run(SLEEP_DELAY_S - 1.0, **UV), "sleep") == []
    assert of(d.run(2.0, **UV), "sleep")


def test_current_noise_around_zero_does_not_keep_a_flat_pack_awake() -> None:
    """Current noise crosses the rest current (0.02 C: 0.1 A on a 5 Ah pack, where the lfp AFE's noise
    is σ 0.05 A) now and then; one sample 1.5× over it every 2 s is not a charger: the BMS still sleeps
    300 s after the trip."""
    d, t_trip = _under_voltage()
    over = 1.5 * d.bms.rest_current_a
    quiet, blip = measurements(cell_v=2.45, current_a=-0.03), measurements(cell_v=2.45, current_a=over)
    events: list[Event] = []
    for i in range(round((SLEEP_DELAY_S + 5.0) / DT_S)):
        events += d.steps(1, blip if i % round(2.0 / DT_S) == 0 else quiet)
    (event,) = of(events, "sleep")
    assert event.t_s == pytest.approx(t_trip + SLEEP_DELAY_S, abs=2 * DT_S)


def test_a_charge_shorter_than_the_confirmation_does_not_restart_the_count() -> None:
    d, t_trip = _under_voltage()
    d.run(200.0, **UV)
    d.run(3.0, cell_v=2.45, current_a=10.0)  # under the profile's 5 s: not yet a charger
    (event,) = of(d.run(SLEEP_DELAY_S, **UV), "sleep")
    assert event.t_s == pytest.approx(t_trip + SLEEP_DELAY_S, abs=2 * DT_S)


def test_no_sleep_without_under_voltage() -> None:
    d = healthy_start()
    events = d.run(2 * SLEEP_DELAY_S, cell_v=2.60)  # low, yet above the trip
    assert of(events, "sleep") == []
    assert d.fets() == (True, True)


def test_charging_is_never_blocked_by_under_voltage_while_awake() -> None:
    d, _ = _under_voltage()
    for _ in range(10):
        d.run(SLEEP_DELAY_S / 10 - 1.0, **UV)
        assert d.fets() == (True, False)
        assert d.commands is not None and d.commands.charge_current_limit_a[0] > 0.0


def test_charger_connected_to_a_sleeping_bms_wakes_it() -> None:
    """Asleep with no charger: the first charger connection is a rising edge that wakes it."""
    d = asleep()
    d.run(10.0, **UV)
    t_wake = d.t_s
    events = d.steps(1, charger_present=True, **UV)  # no current yet: the FETs are off
    (wake,) = of(events, "wake")
    assert wake.fields["by"] == "charger" and wake.t_s == pytest.approx(t_wake)
    (reset,) = resets(events)
    assert (reset["method"], reset["result"]) == ("charger", "ok")
    assert persisted(events, "cell_undervoltage") == ["charger"]  # still under-voltage
    assert not d.bms.sleeping[0]
    # The charge FET closes; discharge stays blocked until cell_undervoltage releases.
    assert d.fets() == (True, False)
    assert fets_turned_on(events) == {"charge"}
    assert d.bms.state_name(0) == "protected"


def test_after_a_charger_wake_discharge_waits_for_the_under_voltage_release() -> None:
    d = asleep()
    d.steps(1, charger_present=True, **UV)
    events = d.run(SLEEP_DELAY_S + 60.0, cell_v=2.70, current_a=10.0)  # charging, below 2.90 V
    assert of(events, "sleep") == []
    assert d.fets() == (True, False)
    event = run_until(d, "fault_cleared", 3.0, "cell_undervoltage", cell_v=2.95, current_a=10.0)
    assert event.fields["by"] == "charger"
    assert d.fets() == (True, True)
    assert d.bms.state_name(0) == "normal"


def test_charger_already_present_at_sleep_does_not_wake_it_however_long() -> None:
    """The cold night: a charger whose current was blocked stays connected while the BMS sleeps."""
    d = asleep(charger=True)
    events = d.run(3600.0, charger_present=True, **UV)
    assert of(events, "wake") == []
    assert d.bms.sleeping[0]
    assert d.bms.state_name(0) == "sleep"
    assert d.fets() == (False, False)


def test_charger_reconnected_after_a_rest_of_120_s_wakes_it() -> None:
    d = asleep(charger=True)
    d.run(60.0, charger_present=True, **UV)
    d.run(REARM_S, charger_present=False, **UV)  # disconnect, rest 120 s
    events = d.steps(1, charger_present=True, **UV)  # reconnect
    assert [e.fields["by"] for e in of(events, "wake")] == ["charger"]
    assert [r["method"] for r in resets(events)] == ["charger"]
    assert d.fets() == (True, False)


def test_charger_reconnected_after_a_shorter_rest_does_not_wake_it() -> None:
    d = asleep(charger=True)
    d.run(REARM_S - 1.0, charger_present=False, **UV)
    events = d.steps(1, charger_present=True, **UV)
    events += d.run(600.0, charger_present=True, **UV)
    assert of(events, "wake") == []
    assert d.bms.sleeping[0]
    # The seed's advice again: disconnect, rest (long enough this time), reconnect.
    d.run(REARM_S + 1.0, charger_present=False, **UV)
    assert of(d.steps(1, charger_present=True, **UV), "wake")


def test_charger_absent_at_sleep_entry_counts_as_long_gone() -> None:
    """Connected (current blocked), unplugged 10 s before the BMS fell asleep, back 20 s later."""
    d, t_trip = _under_voltage(charger=True)
    d.run(t_trip + SLEEP_DELAY_S - 10.0 - d.t_s, charger_present=True, **UV)
    d.run(10.0 + 20.0, charger_present=False, **UV)
    assert d.bms.sleeping[0]
    events = d.steps(1, charger_present=True, **UV)
    assert [e.fields["by"] for e in of(events, "wake")] == ["charger"]


def test_reset_button_wakes_a_sleeping_bms() -> None:
    d = asleep(charger=True)  # even with the charger that cannot wake it
    events = d.steps(1, measurements(reset_button=True, charger_present=True, **UV))
    assert [e.fields["by"] for e in of(events, "wake")] == ["button"]
    (reset,) = resets(events)
    assert (reset["method"], reset["result"]) == ("button", "ok")
    assert persisted(events, "cell_undervoltage") == ["button"]
    assert not d.bms.sleeping[0]
    assert d.fets() == (True, False)
    assert d.bms.state_name(0) == "protected"


def test_button_wake_without_charge_falls_asleep_again_after_300_s() -> None:
    d = asleep()
    d.steps(1, measurements(reset_button=True, **UV))
    assert not d.bms.sleeping[0]
    assert of(d.run(SLEEP_DELAY_S - 1.0, **UV), "sleep") == []
    assert of(d.run(2.0, **UV), "sleep")


def test_soft_command_does_not_reach_a_sleeping_bms() -> None:
    d = asleep()
    assert d.bms.soft_reset([0], d.t_s, "soft") == []  # its link is silent
    assert d.bms.sleeping[0]
    assert d.bms.persistent_snapshot(0)["reset_counts"]["soft"] == 0
    d.run(10.0, **UV)
    assert d.bms.state_name(0) == "sleep"
    assert d.fets() == (False, False)


def test_charger_wake_is_a_soft_reset_that_clears_a_soft_fault() -> None:
    d, _ = _under_voltage()
    run_until(d, "fault_set", 11.0, "comm_error", link_ok=False, **UV)
    run_until(d, "sleep", SLEEP_DELAY_S, **UV)  # link healthy again; comm_error stays (soft)
    assert "comm_error" in d.bms.active_faults(0)
    events = d.steps(1, charger_present=True, **UV)
    assert cleared(events, "comm_error") == ["soft_reset"]
    assert persisted(events, "cell_undervoltage") == ["charger"]
    assert d.bms.active_faults(0) == ["cell_undervoltage"]


def test_charger_wake_leaves_a_latched_fault() -> None:
    d, _ = _under_voltage()
    run_until(d, "fault_set", 2.0, "afe_fault", afe_ok=False, **UV)
    run_until(d, "sleep", SLEEP_DELAY_S, **UV)  # the glitch is gone, the latch stays
    assert d.bms.state_name(0) == "latched"  # latched outranks sleep
    events = d.steps(1, charger_present=True, **UV)
    assert [e.fields["by"] for e in of(events, "wake")] == ["charger"]
    assert cleared(events, "afe_fault") == []
    (reset,) = resets(events)
    assert (reset["method"], reset["result"]) == ("charger", "refused")
    assert "afe_fault" in reset["reason"]
    assert d.fets() == (False, False)
    assert d.bms.state_name(0) == "latched"


def test_power_on_wakes_a_sleeping_bms_and_under_voltage_re_trips_at_once() -> None:
    d = asleep()
    power_cycle(d)
    events = d.steps(1, **UV)
    assert [e.fields["by"] for e in of(events, "wake")] == ["power_on"]
    assert persisted(events, "cell_undervoltage") == ["hard"]
    assert not d.bms.sleeping[0]
    assert d.fets() == (True, False)
    assert fets_turned_on(events) == {"charge"}
    assert d.bms.state_name(0) == "protected"


# --------------------------------------------------------------------------- states (docs/behaviour.md §5)
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_state_of_each_class(row: Row) -> None:
    d = row.start()
    d.steps(1, **row.present)
    blocking = row.fets_active != (True, True) or row.klass == "persistent"
    expected = {"latched": "latched", "persistent": "locked"}.get(row.klass, "protected" if blocking else "normal")
    assert d.bms.state_name(0) == expected


def test_state_normal_when_healthy() -> None:
    d = healthy_start()
    assert d.bms.state_name(0) == "normal"
    assert d.fets() == (True, True)


def test_state_sleep_outranks_protected() -> None:
    d = asleep()
    assert d.bms.state_name(0) == "sleep"


def test_state_locked_outranks_latched_and_sleep() -> None:
    d = healthy_start()
    run_until(d, "fault_set", 11.0, "deep_discharge", cell_v=1.95)
    run_until(d, "fault_set", 2.0, "afe_fault", afe_ok=False, cell_v=1.95)
    assert d.bms.state_name(0) == "locked"
    run_until(d, "sleep", SLEEP_DELAY_S, cell_v=1.95)
    assert d.bms.sleeping[0]
    assert d.bms.state_name(0) == "locked"
    assert d.fets() == (False, False)


def test_state_returns_to_normal_when_the_last_fault_clears() -> None:
    d = ROWS[0].start()
    events = d.run(6.0, cell_t_c=38.0)
    changes = [(e.fields["from"], e.fields["to"]) for e in of(events, "state_changed")]
    assert changes == [("protected", "normal")]


# --------------------------------------------------------------------------- deep discharge
def _deep() -> Driver:
    return ROWS[9].start()


def test_deep_discharge_allows_a_recovery_charge_of_005_c_for_as_long_as_it_takes() -> None:
    d = _deep()
    events = d.run(600.0, cell_v=1.95, current_a=RECOVERY_CHARGE_A)
    assert d.fets() == (True, False)
    assert not [e for e in of(events, "fet_changed") if e.fields["fet"] == "charge"]
    assert d.commands is not None
    assert 0.0 < d.commands.charge_current_limit_a[0] <= RECOVERY_CHARGE_A + EPS
    assert d.bms.state_name(0) == "locked"


def test_deep_discharge_opens_the_charge_fet_after_a_second_above_005_c() -> None:
    d = _deep()
    d.run(5.0, cell_v=1.95, current_a=RECOVERY_CHARGE_A)
    m = measurements(cell_v=1.95, current_a=0.06 * CAPACITY_AH)
    t0 = d.t_s
    d.steps(10, m)  # t0 … t0 + 0.9 s: less than a second above the rate
    assert d.fets() == (True, False)
    events = d.steps(1, m)
    assert [(e.fields["fet"], e.fields["on"], e.t_s) for e in of(events, "fet_changed")] == [
        ("charge", False, pytest.approx(t0 + 1.0))
    ]
    assert d.bms.state_name(0) == "locked"


def test_deep_discharge_keeps_the_charge_fet_open_until_the_charger_goes_away() -> None:
    d = _deep()
    d.run(2.0, cell_v=1.95, current_a=0.2 * CAPACITY_AH)
    assert d.fets() == (False, False)
    d.run(200.0, cell_v=1.95, current_a=0.0, charger_present=True)  # the charger stays (< sleep)
    assert d.fets() == (False, False)
    d.steps(1, cell_v=1.95, charger_present=False)  # it goes away: allowed again
    assert d.fets() == (True, False)
    d.run(60.0, cell_v=1.95, current_a=0.03 * CAPACITY_AH)  # a proper recovery charger
    assert d.fets() == (True, False)


def test_deep_discharge_blocks_discharge_whatever_the_voltage_until_serviced() -> None:
    d = _deep()
    d.run(600.0, cell_v=3.30)
    assert d.fets() == (True, False)
    assert d.bms.state_name(0) == "locked"
    assert [e.fields["by"] for e in of(d.bms.service_clear(0, "deep_discharge", True, d.t_s), "fault_cleared")] == [
        "service"
    ]
    d.run(1.0, cell_v=3.30)
    assert d.fets() == (True, True)
    assert d.bms.state_name(0) == "normal"
