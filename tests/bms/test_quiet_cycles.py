"""The brain's quiet-cycle shortcuts change nothing a pack would see: a debounce counts from the
first cycle of an uninterrupted presence, and a pack's events do not depend on its batch.

Why: the brain skips the trip, warning, release and recovery-charge debounces in a cycle where no
pack of its batch needs them, to stay cheap for thousands of packs. Each debounce also keeps
"was the condition seen last cycle" per (pack, protection), and the count adds a cycle only when
it was. A skipped cycle must leave exactly what the counting path would have left, or a condition
seen for one cycle is remembered across the quiet cycles after it: the count then starts one
cycle early when the condition returns, and only when no OTHER pack kept the batch busy.

Same bench as ``test_protections``: a 4-cell 100 Ah LiFePO4 pack, one cycle every 0.1 s, the lfp
profile's delays (docs/behaviour.md §3): ``cell_overvoltage`` trips at 3.65 V after 1 s, warns at
3.60 V after half that (0.5 s), releases at 3.40 V after 2 s; ``deep_discharge`` trips at 2.00 V
after 10 s and allows a recovery charge of 0.05 C (5 A; 10 % grace: above 5.5 A) that opens the
charge FET once it has been exceeded for 1 s. Every expected time below is counted by hand from
that rule: the first sample that sees a condition counts 0, each further one adds 0.1 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from test_protections import DT_S, SERIES, Driver, measurements, of

from openbms.bms.events import Event
from openbms.bms.interface import Measurements

HEALTHY: dict[str, Any] = {"cell_v": 3.30}
OVER = {"cell_v": 3.70}  # above the 3.65 V trip (and the 3.60 V warning), below the 3.80 V latch
WARN_ONLY = {"cell_v": 3.62}  # above the 3.60 V warning, below the 3.65 V trip
RELEASED = {"cell_v": 3.40}  # at the 3.40 V release
FLAT = {"cell_v": 1.95}  # below the 2.00 V deep discharge (and the under-voltage trip and warning)
NEAR_FLAT = {"cell_v": 2.20}  # deep discharge condition gone, still under-voltage
OVER_RATE_A = 6.0  # above 5.5 A: over the recovery charge rate
RECOVERY_A = 3.0  # within it

# The other pack of a two-pack brain: none, healthy (every shortcut may be taken), or flat from
# the start, so that from 11 s on it has trip and warning conditions, active faults and a
# recovery charge: every debounce runs in every cycle.
NEIGHBOURS: dict[str, dict[str, Any] | None] = {"alone": None, "quiet": HEALTHY, "busy": FLAT}
PRELUDE_S = 12.0  # the busy neighbour's deep discharge is active (tripped at 11 s) from here on


class Bench:
    """Pack 0 driven through a scenario, alone or beside a neighbour that reads ``other``."""

    def __init__(self, other: dict[str, Any] | None) -> None:
        self.other = other
        self.d = Driver(packs=1 if other is None else 2)
        self.run(1.0, **HEALTHY)
        assert self.d.fets(0) == (True, True)
        self.run(PRELUDE_S - 1.0, **HEALTHY)

    @property
    def t_s(self) -> float:
        return self.d.t_s

    def reading(self, **pack0: Any) -> Measurements:
        """Pack 0 reads ``pack0`` (healthy where not given; a charger exactly when charging unless
        ``charger_present`` says), the neighbour its own reading."""
        rows = [pack0] if self.other is None else [pack0, self.other]
        currents = np.array([float(r.get("current_a", 0.0)) for r in rows])
        return measurements(
            len(rows),
            cell_v=np.array([np.broadcast_to(np.asarray(r.get("cell_v", 3.30), float), (SERIES,)) for r in rows]),
            current_a=currents,
            charger_present=np.array(
                [bool(r.get("charger_present", c > 0.0)) for r, c in zip(rows, currents, strict=True)]
            ),
        )

    def steps(self, n: int, **pack0: Any) -> list[Event]:
        """``n`` cycles; pack 0's events."""
        return [e for e in self.d.steps(n, self.reading(**pack0)) if e.pack == 0]

    def run(self, duration_s: float, **pack0: Any) -> list[Event]:
        return self.steps(round(duration_s / DT_S), **pack0)

    def first(self, kind: str, name: str, timeout_s: float, **pack0: Any) -> float:
        """Run until pack 0's first ``kind`` event about ``name``; its time."""
        for _ in range(round(timeout_s / DT_S)):
            found = of(self.steps(1, **pack0), kind, name)
            if found:
                return found[0].t_s
        raise AssertionError(f"no {kind} of {name} within {timeout_s} s")


def _blip_then_over(bench: Bench, blip: dict[str, Any], k: int, kind: str, name: str, steady: dict[str, Any]) -> float:
    """One cycle of ``blip``, ``k`` healthy cycles, then ``steady`` until ``kind``: how long after
    the first steady cycle it came."""
    bench.steps(1, **blip)
    bench.steps(k, **HEALTHY)
    t1 = bench.t_s
    return round(bench.first(kind, name, 5.0, **steady) - t1, 9)


# --------------------------------------------------------------------------- (a) one pack
@pytest.mark.parametrize("k", [1, 2, 3, 10, 50])
def test_a_one_cycle_blip_does_not_shorten_a_later_trip(k: int) -> None:
    """An over-voltage seen for one cycle, gone for k, then back for good: the fault sets 1 s
    (10 cycles) after the first cycle of the lasting presence, never a cycle before."""
    bench = Bench(None)
    assert _blip_then_over(bench, OVER, k, "fault_set", "cell_overvoltage", OVER) == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 2, 10])
def test_a_one_cycle_blip_does_not_hasten_a_later_warning(k: int) -> None:
    """The same for the warning tier: it rises half the trip delay (0.5 s) after the first cycle
    of the lasting presence."""
    bench = Bench(None)
    assert _blip_then_over(bench, WARN_ONLY, k, "warning", "cell_overvoltage", WARN_ONLY) == pytest.approx(0.5)


def test_a_one_cycle_blip_at_the_start_still_trips_by_the_delay() -> None:
    """With no cycle in between the blip is simply the first sample: 1 s after it."""
    bench = Bench(None)
    t0 = bench.t_s
    assert bench.first("fault_set", "cell_overvoltage", 5.0, **OVER) == pytest.approx(t0 + 1.0)


# --------------------------------------------------------------------------- (b) batch independence
def _trip_after_blip(bench: Bench) -> list[float]:
    """Blip, 3 quiet cycles, lasting over-voltage: the fault 1.0 s after the lasting presence."""
    return [_blip_then_over(bench, OVER, 3, "fault_set", "cell_overvoltage", OVER)]


def _warning_after_blip(bench: Bench) -> list[float]:
    """Blip, 3 quiet cycles, lasting warning-level voltage: the warning 0.5 s after it."""
    return [_blip_then_over(bench, WARN_ONLY, 3, "warning", "cell_overvoltage", WARN_ONLY)]


def _release_after_retrip(bench: Bench) -> list[float]:
    """A fault released (its release seen at the clearing cycle), tripped again, then released
    again: each release 2.0 s after the first cycle at the release voltage."""
    found = []
    for _ in range(2):
        bench.first("fault_set", "cell_overvoltage", 5.0, **OVER)
        t1 = bench.t_s
        found.append(round(bench.first("fault_cleared", "cell_overvoltage", 5.0, **RELEASED) - t1, 9))
        bench.steps(3, **HEALTHY)
    return found


def _deep_discharge(bench: Bench, **pack0: Any) -> float:
    """Flat cells (with ``pack0``'s current) until deep discharge sets: its time, 10 s after the first."""
    t1 = bench.t_s
    at = bench.first("fault_set", "deep_discharge", 15.0, **FLAT, **pack0)
    assert at == pytest.approx(t1 + 10.0)
    return at


def _charge_fet_since(bench: Bench, t_s: float) -> list[tuple[bool, float]]:
    """Pack 0's charge FET changes from ``t_s`` on (that cycle included): (on, time)."""
    events = [e for e in of(bench.d.events, "fet_changed") if e.pack == 0 and e.t_s >= t_s - 1e-9]
    return [(bool(e.fields["on"]), e.t_s) for e in events if e.fields["fet"] == "charge"]


def _overrate_after_blip(bench: Bench) -> list[float]:
    """Over the recovery rate for one cycle, the fault cleared by service, flat again with an
    over-rate charge from the start: the charge FET opens 1.0 s after the trip (the first cycle
    of the recovery charge), not a cycle before."""
    _deep_discharge(bench)
    bench.steps(1, **NEAR_FLAT, current_a=OVER_RATE_A)  # the one-cycle over-rate
    assert of(bench.d.bms.service_clear(0, "deep_discharge", True, bench.t_s), "fault_cleared")
    bench.steps(3, **NEAR_FLAT)
    at = _deep_discharge(bench, current_a=OVER_RATE_A)
    bench.steps(15, **FLAT, current_a=OVER_RATE_A)
    return [round(t - at, 9) for on, t in _charge_fet_since(bench, at) if not on]


def _blocked_then_new_episode(bench: Bench) -> list[float]:
    """The recovery charge blocked for over-rate, the fault cleared by service with the charger
    still there: a new deep discharge starts a new recovery charge, which a charge within the
    rate keeps (no charge FET change from the trip to 5 s after it)."""
    _deep_discharge(bench)
    bench.run(2.0, **NEAR_FLAT, current_a=OVER_RATE_A)
    assert not bench.d.fets(0)[0]  # blocked for over-rate
    bench.steps(1, **NEAR_FLAT, charger_present=True)  # the FET open: no current, the charger there
    assert of(bench.d.bms.service_clear(0, "deep_discharge", True, bench.t_s), "fault_cleared")
    bench.steps(3, **NEAR_FLAT, charger_present=True)
    assert bench.d.fets(0)[0]
    at = _deep_discharge(bench, current_a=RECOVERY_A)
    bench.run(5.0, **FLAT, current_a=RECOVERY_A)
    return [t for _, t in _charge_fet_since(bench, at)]


SCENARIOS: dict[str, tuple[Callable[[Bench], list[float]], list[float]]] = {
    "trip": (_trip_after_blip, [1.0]),
    "warning": (_warning_after_blip, [0.5]),
    "release": (_release_after_retrip, [2.0, 2.0]),
    "recovery_overrate": (_overrate_after_blip, [1.0]),
    "recovery_blocked": (_blocked_then_new_episode, []),
}


@pytest.mark.parametrize("neighbour", NEIGHBOURS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_b_event_times_hold_whatever_the_neighbour(scenario: str, neighbour: str) -> None:
    """Each scenario's hand-counted times for pack 0, alone, beside a quiet pack, beside a busy one."""
    run, expected = SCENARIOS[scenario]
    assert run(Bench(NEIGHBOURS[neighbour])) == pytest.approx(expected)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_b_a_packs_events_and_state_do_not_depend_on_its_neighbour(scenario: str) -> None:
    """Pack 0's every event, and every per-pack array of its brain, are the same alone and beside
    a quiet or a busy pack: a brain steps each pack on its own row."""
    run, _ = SCENARIOS[scenario]
    benches = {name: Bench(other) for name, other in NEIGHBOURS.items()}
    for bench in benches.values():
        run(bench)
    alone = benches.pop("alone")
    mine = [e.as_dict() for e in alone.d.events if e.pack == 0]
    for name, bench in benches.items():
        assert [e.as_dict() for e in bench.d.events if e.pack == 0] == mine, name
        for (holder, attribute), (other_holder, other_attribute) in zip(
            alone.d.bms._row_arrays(), bench.d.bms._row_arrays(), strict=True
        ):
            assert attribute == other_attribute
            ours, theirs = getattr(holder, attribute)[0], getattr(other_holder, attribute)[0]
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{name}: {type(holder).__name__}.{attribute}")
