"""The closed loop: carry a recommended procedure out in the twin, step by step, and check it.

Each step's ``action`` is done with the twin's own hands (unplug, wait, press, charge); its
``check`` says what must hold afterwards. The first step whose check fails stops the procedure,
with the reason. Some steps only a person can do (replace the BMS board, call a technician): the
twin stops there and hands over, reported as "for a person to do", which is not a failure. A
person's charger and loads are remembered, so "reconnect your loads" puts back what was there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from openbms.diagnose.engine import Diagnosis
from openbms.diagnose.procedures import ProcedureStep
from openbms.twin.external import Charger
from openbms.twin.faults import FaultSpec, repair
from openbms.twin.simulator import Twin
from openbms.units import parse_duration_s

WAKE_WAIT_S = 30.0
SETTLE_S = 10.0
RECONNECT_SOC = 0.2  # charge a flat pack this far before the loads come back
TEST_S = 180.0  # a test run long enough for a fault that comes straight back to show
LONG_WAIT_S = 4 * 3600.0
DEFAULT_CHARGER_C_RATE = 0.2
# Steps the twin's hands cannot do and that a person must: the procedure is handed over there.
PERSON_ACTIONS = frozenset({"replace the BMS board", "call service"})

Outcome = Literal["done", "failed", "for_a_person"]


@dataclass(frozen=True)
class StepOutcome:
    index: int
    text: str
    ok: bool
    detail: str
    for_a_person: bool = False


@dataclass(frozen=True)
class ApplyResult:
    """``ok`` is False only when a step or the final check failed; a hand-over to a person is ok,
    with ``outcome`` "for_a_person" and the steps left in ``for_a_person``."""

    ok: bool
    outcomes: list[StepOutcome]
    final_state: str
    message: str
    outcome: Outcome = "done"
    for_a_person: list[str] = field(default_factory=list)


Progress = Callable[[int, int, str], None]


class ProcedureRunner:
    """Runs one diagnosis's steps on pack ``pack`` of ``twin``."""

    def __init__(self, twin: Twin, pack: int = 0) -> None:
        self.twin = twin
        self.pack = pack
        self.load = twin.connected_load(pack)
        reading = twin.reading(pack)
        charge_v = reading.charge_voltage_limit_v or 0.0
        capacity = reading.nominal_ah or 0.0
        self.charger = twin.connected_charger(pack) or Charger(charge_v, DEFAULT_CHARGER_C_RATE * capacity, 0.0)

    # ------------------------------------------------------------------ hands
    def _run(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        steps = max(1, int(round(seconds / self.twin.dt_s)))
        for _ in range(steps):
            self.twin.step()
            if until is not None and until():
                return True
        return until() if until is not None else True

    def _state(self) -> str:
        return self.twin.state_name(self.pack)

    def _connect_charger(self, current_a: float | None = None) -> None:
        charger = self.charger
        amps = charger.current_a if current_a is None else current_a
        self.twin.connect_charger(self.pack, charger.voltage_v, amps, charger.min_battery_v)

    def _disconnect(self, what: str) -> None:
        twin, p = self.twin, self.pack
        if what in ("load", "all"):
            twin.disconnect_load(p)
            twin.clear_short(p)
            twin.set_current_profile(p, None)
        if what in ("charger", "all"):
            twin.disconnect_charger(p)

    def _reconnect_load(self) -> None:
        """The load that was on the terminals when the procedure began (none: none)."""
        if self.load is None:
            self.twin.disconnect_load(self.pack)
        else:
            self.twin.connect_load(self.pack, **self.load.kwargs())

    # ------------------------------------------------------------------ steps
    def do(self, step: ProcedureStep) -> tuple[bool, str]:  # noqa: PLR0911, PLR0912 - one branch per action
        action, twin, p = step.action or "", self.twin, self.pack
        if action == "disconnect load":
            self._disconnect("load")
            self._run(1.0)
        elif action == "disconnect load and wait":
            self._disconnect("load")
            self._run(5 * 60.0, lambda: self._state() == "normal")
        elif action == "charge until normal":
            self._connect_charger()
            self._run(LONG_WAIT_S, lambda: self._state() == "normal")
            self._disconnect("charger")
        elif action == "disconnect charger":
            self._disconnect("charger")
            self._run(1.0)
        elif action == "disconnect charger and load":
            self._disconnect("all")
            self._run(1.0)
        elif action == "connect charger":
            if twin.connected_charger(p) is None:
                self._connect_charger()
            self._run(WAKE_WAIT_S, lambda: self._state() != "sleep")
        elif action == "reconnect charger after rest":
            if self._state() == "sleep":
                self._disconnect("charger")
                self._run(10 * 60.0)
                self._connect_charger()
                self._run(WAKE_WAIT_S, lambda: self._state() != "sleep")
        elif action == "press reset button":
            if self._state() == "sleep" or step.check == "soft reset":
                twin.press_reset_button(p)
                self._run(SETTLE_S)
        elif action == "reconnect load":
            if twin.state_name(p) != "normal" or float(twin.bms.pack_soc[p]) < RECONNECT_SOC:
                # Discharge comes back once the cells are above the release threshold: keep charging.
                if twin.connected_charger(p) is None:
                    self._connect_charger()
                self._run(
                    LONG_WAIT_S,
                    lambda: self._state() == "normal" and float(twin.bms.pack_soc[p]) >= RECONNECT_SOC,
                )
            # The seed: once the BMS is active, reconnect the loads; the charger stays on.
            self._reconnect_load()
            self._run(SETTLE_S)
        elif action == "disconnect main_leads":
            twin.disconnect_main_leads(p)
        elif action == "disconnect balance_connector":
            twin.disconnect_balance_connector(p)
            self._run(1.0)
        elif action.startswith("wait "):
            self._run(parse_duration_s(action.removeprefix("wait ")))
        elif action == "connect balance_connector":
            twin.connect_balance_connector(p)
        elif action == "connect main_leads":
            twin.connect_main_leads(p)
            self._run(SETTLE_S)
        elif action == "test":
            self._connect_charger()
            self._run(LONG_WAIT_S, lambda: self._state() == "normal")
            self._disconnect("charger")
            if self.load is not None:
                self._reconnect_load()
            self._run(TEST_S)
        elif action.startswith("ambient "):
            twin.set_ambient(p, float(action.split()[1]))
            self._disconnect("load")
            self._run(LONG_WAIT_S, lambda: self._state() == "normal")
        elif action.startswith("recovery charge "):
            amps = float(action.split()[2])
            self._connect_charger(current_a=amps)
            limit = self.twin.bms.profile.protections["deep_discharge"].trip
            self._run(LONG_WAIT_S, lambda: float(np.nanmin(self.twin.last_measurements.cell_v[p])) > limit + 0.2)
        elif action.startswith("service_clear "):
            fault = action.split()[1]
            faults = (
                [f["fault"] for f in twin.reading(p).fault_details or [] if f["class"] == "persistent"]
                if fault == "all"
                else [fault]
            )
            for name in faults:
                twin.command_service_clear(p, str(name))
            self._run(1.0)
        elif action.startswith("replace cell "):
            cell = int(action.split()[2])
            refused = twin.replace_cell(p, cell - 1, 0.5)
            if refused is not None:
                return False, "the cell cannot be replaced while the connectors are plugged in"
        elif action == "repair link":
            repair(twin, p, FaultSpec("monitor_link_errors"))
            self._run(1.0)
        elif action.startswith("repair open_balance_wire "):
            repair(twin, p, FaultSpec("open_balance_wire", cell=int(action.split()[2]) - 1))
        elif action:
            return False, f"the twin cannot carry out {action!r}"
        return self.verify(step)

    def verify(self, step: ProcedureStep) -> tuple[bool, str]:
        state = self._state()
        check = step.check
        if check is None:
            return True, f"state {state}"
        if check == "awake":
            return state != "sleep", f"state {state}" + (" (still asleep)" if state == "sleep" else "")
        if check == "soft reset":
            return True, f"state {state}"
        if check == "powered off":
            return state == "off", f"state {state}"
        if check == "booted":
            return state not in ("off", "unresponsive"), f"state {state}"
        if check == "normal":
            faults = self.twin.reading(self.pack).faults
            blocking = [f for f in faults if f != "cell_imbalance" and f != "comm_error"]
            ok = state == "normal" and not blocking
            return ok, f"state {state}" + (f", active faults: {', '.join(faults)}" if faults else "")
        return False, f"unknown check {check!r}"


def apply(twin: Twin, diagnosis: Diagnosis, pack: int = 0, progress: Progress | None = None) -> ApplyResult:
    """Carry out ``diagnosis.steps`` on the twin; stop at the first step whose check fails."""
    runner = ProcedureRunner(twin, pack)
    outcomes: list[StepOutcome] = []
    steps = _with_twin_actions(diagnosis)
    for i, step in enumerate(steps, start=1):
        if progress is not None:
            progress(i, len(steps), step.text)
        if step.action in PERSON_ACTIONS:
            return _hand_over(twin, pack, outcomes, steps, i)
        ok, detail = runner.do(step)
        outcomes.append(StepOutcome(i, step.text, ok, detail))
        if not ok:
            return ApplyResult(
                False, outcomes, twin.state_name(pack), f"step {i} did not work: {detail}", outcome="failed"
            )
    state = twin.state_name(pack)
    if diagnosis.recommendation in ("soft_reset", "hard_reset", "replace_cells", "fix_root_cause", "service"):
        ok, detail = runner.verify(ProcedureStep(text="the battery works again", check="normal"))
        if not ok:
            return ApplyResult(
                False, outcomes, state, f"after the procedure the BMS is not back: {detail}", outcome="failed"
            )
    return ApplyResult(True, outcomes, state, f"done: state {state}")


def _hand_over(
    twin: Twin, pack: int, outcomes: list[StepOutcome], steps: list[ProcedureStep], first: int
) -> ApplyResult:
    """Step ``first`` is a person's: it and every step after it are left for a person to do."""
    state = twin.state_name(pack)
    left = steps[first - 1 :]
    outcomes = outcomes + [
        StepOutcome(i, step.text, True, "for a person to do", for_a_person=True)
        for i, step in enumerate(left, start=first)
    ]
    message = (
        f"for a person to do from step {first} on: {left[0].text} The twin cannot do this, so it cannot "
        f"check the result; the BMS is {state} until then."
    )
    return ApplyResult(
        True, outcomes, state, message, outcome="for_a_person", for_a_person=[step.text for step in left]
    )


def _with_twin_actions(diagnosis: Diagnosis) -> list[ProcedureStep]:
    """The person's steps, with what only the twin needs spelled out (which cell to replace)."""
    steps = list(diagnosis.steps)
    if diagnosis.recommendation == "replace_cells":
        out: list[ProcedureStep] = []
        for step in steps:
            out.append(step)
            if step.action == "disconnect balance_connector":
                out += [
                    ProcedureStep(text=f"Replace cell {c}.", action=f"replace cell {c}")
                    for c in diagnosis.damaged_cells
                ]
            if step.action == "connect main_leads":
                out.append(
                    ProcedureStep(
                        text="A technician clears the faults the damaged cells left behind (service command).",
                        action="service_clear all",
                    )
                )
        steps = out
    if diagnosis.recommendation == "fix_root_cause" and any(s.action == "repair link" for s in steps):
        steps.append(
            ProcedureStep(
                text="Then clear the stale code with a soft reset (the reset button).",
                action="press reset button",
                check="soft reset",
            )
        )
    return steps


__all__ = ["PERSON_ACTIONS", "ApplyResult", "StepOutcome", "apply"]
