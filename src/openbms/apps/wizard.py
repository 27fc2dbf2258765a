"""The seed's procedures (hard reset, soft reset, cell replacement) as a guided walk: one step at a
time, each checked against what the BMS (or the twin) reports before the next is offered.

The words are the diagnosis's own (``diagnose.procedures``); this module adds what a page needs:
for each step the check that must hold before going on, the twin actions that carry it out (the
page offers them as buttons when the source is a twin) and, for the wait, a countdown from the
board's hold-up time. A check that does not hold refuses the step with the reason, so nobody is
walked past an unsafe state (current still flowing, main leads plugged before the balance
connector, a board that never lost power).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openbms.diagnose.procedures import hard_reset_steps, replace_cell_steps, soft_reset_steps

REST_CURRENT_A = 0.5  # at most this much current counts as "nothing connected"
UNKNOWN_HOLD_UP_S = 15 * 60.0  # a board nobody measured: wait as the seed says


@dataclass(frozen=True)
class Facts:
    """What the check of a step reads: the latest reading (the API's document) and the clock."""

    reading: dict[str, Any]
    clock_s: float
    waited_s: float  # since the current step was offered, on the source's clock


Check = Callable[[Facts], str | None]  # None: holds; else why not


def _current(f: Facts) -> float:
    value = f.reading.get("current_a")
    return abs(float(value)) if isinstance(value, int | float) else 0.0


def loads_off(f: Facts) -> str | None:
    r = f.reading
    if not r.get("ok", False):
        return None  # a board that does not answer cannot say; the person confirms
    if r.get("charger_connected") or r.get("charger_present"):
        return "a charger is still connected: disconnect it first"
    if r.get("load_present"):
        return "a load is still connected: disconnect every load first"
    if _current(f) > REST_CURRENT_A:
        return f"{_current(f):.1f} A still flows: disconnect every charger and load first"
    return None


def main_leads_off(f: Facts) -> str | None:
    if f.reading.get("main_leads") is True:
        return "the main leads are still connected"
    if f.reading.get("ok", False) and _current(f) > REST_CURRENT_A:
        return f"{_current(f):.1f} A still flows through the main leads"
    return None


def powered_off(f: Facts) -> str | None:
    r = f.reading
    if r.get("ok", False) and r.get("state") not in ("off", None):
        return "the BMS still has power: disconnect the balance wire connector"
    if r.get("ok", False) and r.get("state") is None:
        return "the BMS still answers: disconnect the balance wire connector"
    return None


def balance_first(f: Facts) -> str | None:
    r = f.reading
    if r.get("main_leads") is True:
        return "the main leads are connected: unplug them, and plug the balance connector first"
    if r.get("balance_connector") is False or not r.get("ok", False) or r.get("state") == "off":
        return "the BMS has no power yet: plug the balance wire connector in"
    return None


def booted(f: Facts) -> str | None:
    r = f.reading
    if r.get("main_leads") is False:
        return "the main leads are not connected yet"
    if not r.get("ok", False) or r.get("state") in ("off", "unresponsive"):
        return "the BMS has not started yet"
    return None


def normal(f: Facts) -> str | None:
    r = f.reading
    if not r.get("ok", False):
        return "the BMS does not answer"
    if r.get("state") not in ("normal", None):
        return f"the BMS is in state {r.get('state')!r}, not normal"
    if r.get("faults"):
        return "faults are still active: " + ", ".join(r["faults"])
    return None


def awake(f: Facts) -> str | None:
    r = f.reading
    if not r.get("ok", False) or r.get("state") in ("off", "sleep", "unresponsive"):
        return "the BMS is not awake yet"
    return None


@dataclass(frozen=True)
class GuidedStep:
    text: str
    safety: str | None
    check: Check | None
    actions: tuple[dict[str, Any], ...] = ()  # twin actions that do it (timeline steps)
    wait_s: float = 0.0  # a countdown: the step cannot be left before


# What each procedure action of diagnose.procedures means here: its check and its twin actions.
_GUIDE: dict[str, tuple[Check | None, tuple[dict[str, Any], ...]]] = {
    "disconnect charger and load": (loads_off, ({"disconnect": "charger"}, {"disconnect": "load"})),
    "disconnect load": (None, ({"disconnect": "load"},)),
    "disconnect main_leads": (main_leads_off, ({"disconnect": "main_leads"},)),
    "disconnect balance_connector": (powered_off, ({"disconnect": "balance_connector"},)),
    "connect balance_connector": (balance_first, ({"connect": "balance_connector"},)),
    "connect main_leads": (booted, ({"connect": "main_leads"},)),
    "press reset button": (awake, ({"press": "reset_button"},)),
    "test": (normal, ()),
    "reconnect load": (normal, ()),
}
_CHECKS: dict[str, Check] = {"normal": normal, "awake": awake, "powered off": powered_off, "booted": booted}


def _guided(steps: list[Any], hold_up_s: float) -> list[GuidedStep]:
    out = []
    for step in steps:
        check, actions = _GUIDE.get(step.action or "", (None, ()))
        if check is None and step.check in _CHECKS:
            check = _CHECKS[step.check]
        wait_s = 0.0
        if (step.action or "").startswith("wait "):
            wait_s = hold_up_s + 60.0  # the hold-up and a minute's margin
        out.append(GuidedStep(step.text, step.safety, check, actions, wait_s))
    return out


def procedure(name: str, hold_up_s: float | None) -> list[GuidedStep]:
    """The guided steps of ``name`` (hard_reset, soft_reset, replace_cell); ``hold_up_s`` is the
    board's hold-up time when known (None: the seed's 15 minutes)."""
    known = hold_up_s is not None
    hold = hold_up_s if hold_up_s is not None else UNKNOWN_HOLD_UP_S
    if name == "hard_reset":
        return _guided(hard_reset_steps(hold, known), hold)
    if name == "soft_reset":
        return _guided(soft_reset_steps(None, asleep=False), hold)
    if name == "replace_cell":
        return _guided(replace_cell_steps([1], hold, known), hold)
    raise KeyError(name)


PROCEDURES = ("hard_reset", "soft_reset", "replace_cell")


@dataclass
class Walk:
    """One person's walk through a procedure: which step is offered and since when."""

    name: str
    steps: list[GuidedStep]
    index: int = 0
    offered_at_s: float = 0.0
    finished: bool = False
    log: list[str] = field(default_factory=list)

    def status(self, facts: Facts) -> dict[str, Any]:
        current = None if self.finished else self.steps[self.index]
        blocked = None if current is None else self._blocked(current, facts)
        return {
            "procedure": self.name,
            "index": self.index,
            "finished": self.finished,
            "steps": [{"text": s.text, "safety": s.safety, "actions": list(s.actions)} for s in self.steps],
            "current": None
            if current is None
            else {
                "text": current.text,
                "safety": current.safety,
                "actions": list(current.actions),
                "wait_left_s": max(current.wait_s - facts.waited_s, 0.0) if current.wait_s else 0.0,
                "blocked": blocked,
            },
            "log": list(self.log),
        }

    @staticmethod
    def _blocked(step: GuidedStep, facts: Facts) -> str | None:
        if step.wait_s and facts.waited_s < step.wait_s:
            return f"wait {step.wait_s - facts.waited_s:.0f} s more: the board keeps its memory that long"
        return step.check(facts) if step.check is not None else None

    def next(self, facts: Facts) -> str | None:
        """Go on to the next step if the current one's check holds; else the reason it does not."""
        if self.finished:
            return "the procedure is finished"
        why = self._blocked(self.steps[self.index], facts)
        if why is not None:
            return why
        self.log.append(f"step {self.index + 1} done at t={facts.clock_s:.0f} s")
        self.index += 1
        self.offered_at_s = facts.clock_s
        if self.index == len(self.steps):
            self.finished = True
            self.index = len(self.steps) - 1
        return None


class Walks:
    """The walks in progress, one per procedure name (a shared page: one person at a time)."""

    def __init__(self) -> None:
        self._walks: dict[str, Walk] = {}
        self.lock = threading.Lock()

    def start(self, name: str, hold_up_s: float | None, clock_s: float) -> Walk:
        walk = Walk(name, procedure(name, hold_up_s), offered_at_s=clock_s)
        self._walks[name] = walk
        return walk

    def get(self, name: str) -> Walk | None:
        return self._walks.get(name)
