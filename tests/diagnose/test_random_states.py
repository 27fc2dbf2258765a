"""Issue 4, item 3: the diagnosis on many random troubled states of a small pack, checked
against the twin's hidden truth.

Each case builds a 4S1P LiFePO4 twin (10–20 Ah, dt 1 s, hold-up 60 s), drives it into trouble
with a randomly chosen family of faults and conditions (random starting SOC, loads, shorts,
temperatures, injected faults, conditions removed or left in place, earlier reset attempts,
random run times), then asks ``diagnose(snapshot_of(twin))`` and checks:

(a) a recommended soft or hard reset, carried out by ``apply``, brings the BMS back to normal;
(b) a recommended reset never masks a present condition: the twin's ground truth holds no cause
    that a reset cannot remove, and after the reset no fault comes back within three minutes;
(c) ``replace_cells`` exactly when the ground truth says cells are damaged, and ``service``
    exactly when (no cells are damaged and) a persistent fault is active.

Every case is reproducible from its index: its generator is ``default_rng([SEED, index])`` and a
failure message carries the case's log of what was done.

Faults left out on purpose, because the state they make is ambiguous by design (the BMS cannot
see them, so no diagnosis could be held to the ground truth): a drifting sensor, a stuck current
sensor, a capacity fade the BMS has not yet measured, an internal short that has not yet shown,
and a second hidden fault behind a first one (each family carries one fault of the board or the
cells, with any mix of outside conditions).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from openbms.bms.nvm import NonVolatileMemory
from openbms.chemistry import load_chemistry
from openbms.diagnose.apply import apply
from openbms.diagnose.engine import RECOMMENDATIONS, diagnose
from openbms.diagnose.from_twin import snapshot_of
from openbms.profiles import load_profile
from openbms.twin.board import load_board
from openbms.twin.cells import Spread
from openbms.twin.external import LOAD_CURRENT
from openbms.twin.faults import FaultSpec, inject, repair
from openbms.twin.pack import Topology
from openbms.twin.simulator import Twin, TwinConfig

SEED = 20261125
N_CASES = 120
SERIES = 4
HOLD_UP_S = 60.0
CHARGE_CELL_V = 3.55  # a compatible LFP charger's set point per cell (56.8 V on 16S)
POST_S = 180.0  # after a reset: no fault may come back within this time
MIN_PER_RECOMMENDATION = 3

# Limits the ground truth is judged by: the default LFP profile's (docs/behaviour.md §3).
DEEP_DISCHARGE_V = 2.0
UV_TRIP_V = 2.5
DEAD_V = 0.5 * DEEP_DISCHARGE_V
COLLAPSE_GAP_V = 0.5
MIN_SOH = 0.6
OVERCURRENT_C = 1.5
# (fault, hot?, trip °C, release °C)
TEMPERATURE_LIMITS = (
    ("charge_overtemperature", True, 45.0, 40.0),
    ("discharge_overtemperature", True, 60.0, 55.0),
    ("charge_undertemperature", False, 0.0, 5.0),
    ("discharge_undertemperature", False, -20.0, -15.0),
)
PROFILE = load_profile("lfp")
BOARD = load_board(overrides={"supply.hold_up_s": HOLD_UP_S})
BOARD_ORDER_DAMAGES = load_board(overrides={"supply.hold_up_s": HOLD_UP_S, "reconnect_order_damages_afe": True})
LFP = load_chemistry("lfp")


# ----------------------------------------------------------------------------- a pack and two hands
class World:
    """One twin with a person's hands, and a log of everything done to it."""

    def __init__(
        self,
        rng: np.random.Generator,
        soc: float,
        temperature_c: float = 25.0,
        soc_spread: float = 0.005,
        order_damages_afe: bool = False,
    ) -> None:
        self.rng = rng
        self.capacity_ah = round(float(rng.uniform(10.0, 20.0)), 1)
        seed = int(rng.integers(1, 1 << 30))
        self.twin = Twin(
            TwinConfig(
                cell=LFP.scaled_to(self.capacity_ah),
                topology=Topology(SERIES, 1),
                profile=PROFILE,
                board=BOARD_ORDER_DAMAGES if order_damages_afe else BOARD,
                packs=1,
                soc=soc,
                temperature_c=temperature_c,
                spread=Spread(capacity=0.02, resistance=0.05, soc=soc_spread, seed=seed),
                dt_s=1.0,
            ),
            nvm=NonVolatileMemory(),
        )
        self.log = [
            f"{SERIES}S1P {self.capacity_ah} Ah LFP, soc {soc:.3f}, {temperature_c:.1f} °C, spread seed {seed}"
            + (", reconnect order damages the AFE" if order_damages_afe else "")
        ]

    # what the test may look at
    def faults(self) -> set[str]:
        return set(self.twin.bms.active_faults(0))

    def state(self) -> str:
        return self.twin.state_name(0)

    def note(self, text: str) -> None:
        self.log.append(f"t={self.twin.t_s:.0f}s {text}")

    # time
    def run(self, seconds: float) -> None:
        steps = int(round(seconds))
        if steps > 0:
            self.note(f"run {steps}s")
            self.twin.run(steps)

    def run_until(self, what: str, done: Callable[[], bool], limit_s: float) -> bool:
        start = self.twin.t_s
        while not done():
            if self.twin.t_s - start >= limit_s:
                self.note(f"run until {what}: not reached in {limit_s:.0f}s")
                return False
            self.twin.step()
        self.note(f"ran {self.twin.t_s - start:.0f}s until {what}")
        return True

    def u(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    # the world outside the terminals
    def load(self, c_rate: float) -> None:
        self.twin.connect_load(0, current_a=c_rate * self.capacity_ah)
        self.note(f"load {c_rate * self.capacity_ah:.1f} A ({c_rate:.2f} C)")

    def unload(self) -> None:
        self.twin.disconnect_load(0)
        self.note("disconnect load")

    def short(self, ohm: float) -> None:
        self.twin.short(0, ohm)
        self.note(f"short {ohm * 1000:.0f} mΩ across the terminals")

    def unshort(self) -> None:
        self.twin.clear_short(0)
        self.note("remove the short")

    def charger(self, c_rate: float, cell_v: float = CHARGE_CELL_V, min_battery_v: float = 0.0) -> None:
        self.twin.connect_charger(0, cell_v * SERIES, c_rate * self.capacity_ah, min_battery_v)
        smart = f", smart: starts at {min_battery_v:.1f} V" if min_battery_v > 0 else ""
        self.note(f"charger {cell_v * SERIES:.1f} V {c_rate * self.capacity_ah:.1f} A{smart}")

    def uncharge(self) -> None:
        self.twin.disconnect_charger(0)
        self.note("disconnect charger")

    def ambient(self, c: float) -> None:
        self.twin.pack.ambient_c[0] = c
        self.note(f"ambient {c:.1f} °C")

    def inject(self, fault: str, **kw: object) -> None:
        inject(self.twin, 0, FaultSpec(fault, **kw))  # type: ignore[arg-type]
        self.note(f"inject {fault} {kw}")

    def repair(self, fault: str, **kw: object) -> None:
        repair(self.twin, 0, FaultSpec(fault, **kw))  # type: ignore[arg-type]
        self.note(f"repair {fault} {kw}")

    # a person's reset attempts
    def press(self) -> None:
        self.twin.press_reset_button(0)
        self.note("press the reset button")
        self.twin.run(5)

    def soft_command(self) -> None:
        self.twin.command_soft_reset(0)
        self.note("soft_reset command")
        self.twin.run(2)

    def power_cycle(self, off_s: float) -> None:
        twin = self.twin
        self.note(f"hard reset: unplug main leads and balance connector for {off_s:.0f}s (hold-up {HOLD_UP_S:.0f}s)")
        twin.disconnect_main_leads(0)
        twin.disconnect_balance_connector(0)
        twin.run(int(round(off_s)))
        twin.connect_balance_connector(0)
        twin.connect_main_leads(0)
        twin.run(5)

    def attempts(self, p: float, complete_hard: float = 0.0) -> None:
        """Random earlier reset attempts: button, soft command, an incomplete hard reset, and
        (with probability ``complete_hard``) a complete one."""
        if not self.chance(p):
            return
        options = ["button", "soft", "incomplete_hard"]
        for choice in self.rng.choice(options, size=int(self.rng.integers(1, 3)), replace=False):
            if choice == "button":
                self.press()
            elif choice == "soft":
                self.soft_command()
            else:
                self.power_cycle(self.u(5.0, HOLD_UP_S - 10.0))
            self.run(self.u(0.0, 20.0))
        if self.chance(complete_hard):
            self.power_cycle(self.u(HOLD_UP_S + 5.0, HOLD_UP_S + 60.0))


# ----------------------------------------------------------------------------- the families of trouble
def fam_run_flat(w: World) -> None:
    """Ran flat on a load: under-voltage cut-off, maybe asleep; load left on or removed; on a
    cold night, asleep with a charger that the cold blocked (seed case 2)."""
    cold = float(w.twin.pack.ambient_c[0]) < 0
    w.load(w.u(0.4, 1.2))
    w.run_until("cell_undervoltage", lambda: "cell_undervoltage" in w.faults(), 3 * 3600)
    if cold:
        w.unload()
        w.charger(w.u(0.1, 0.4))
        w.run_until("sleep", lambda: w.state() == "sleep", 900)
        if w.chance(0.6):
            w.ambient(w.u(20, 30))
            w.run_until("cells above 5.3 °C", lambda: w.twin.pack.cells.temperature_c[0].min() > 5.3, 3600)
        w.run(w.u(0, 300))
    else:
        if w.chance(0.7):
            w.unload()
        w.run(w.u(0, 120) if w.chance(0.45) else w.u(320, 700))
        if w.chance(0.25):
            smart = w.chance(0.5)
            w.charger(w.u(0.1, 0.4), min_battery_v=0.9 * SERIES * 3.2 if smart else 0.0)
            w.run(w.u(5, 40))
    w.attempts(0.35)


def fam_overload(w: World) -> None:
    """A heavy appliance trips discharge_overcurrent, once or three times (then it latches)."""
    trips = 3 if w.chance(0.35) else 1
    amps_c = w.u(1.7, 3.0)
    for k in range(trips):
        w.load(amps_c)
        w.run(2)
        if k < trips - 1:
            w.unload()
            w.run(w.u(32, 45))
    if w.chance(0.65):
        w.unload()
        w.run(w.u(0, 29) if w.chance(0.6) else w.u(31, 90))
    else:
        w.run(w.u(0, 60))
    w.attempts(0.35)


def fam_short(w: World) -> None:
    """A short across the terminals, once or three times (then it latches)."""
    trips = 3 if w.chance(0.35) else 1
    ohm = w.u(0.003, 0.05)
    for k in range(trips):
        w.short(ohm)
        w.run(1)
        if k < trips - 1:
            w.unshort()
            w.run(w.u(62, 80))
    if w.chance(0.65):
        w.unshort()
        w.run(w.u(0, 55) if w.chance(0.6) else w.u(62, 120))
    else:
        w.run(w.u(0, 60))
    w.attempts(0.35)


def fam_cold_or_hot(w: World) -> None:
    """A cold night or a hot day: the temperature protections, passed or still there."""
    start = float(w.twin.pack.ambient_c[0])
    kind = "cold_gone" if -2.5 < start < 0 else "hot_gone" if 45 < start < 50 else "present"
    w.note(kind)
    if w.chance(0.5):
        w.load(w.u(0.1, 0.5))
    if kind == "cold_gone":
        w.ambient(w.u(20, 30))
        w.run_until("cells above 5.3 °C", lambda: w.twin.pack.cells.temperature_c[0].min() > 5.3, 3600)
    elif kind == "hot_gone":
        w.ambient(w.u(15, 25))
        w.run_until("cells below 39.7 °C", lambda: w.twin.pack.cells.temperature_c[0].max() < 39.7, 3600)
    w.run(w.u(0, 12) if w.chance(0.5) else w.u(10, 120))
    w.attempts(0.35)


def fam_afe_glitch(w: World) -> None:
    """Erratic readings from the AFE: sensor_fault latches; resets tried or not."""
    if w.chance(0.4):
        w.load(w.u(0.1, 0.6))
    w.inject("afe_glitch")
    w.run(w.u(3, 120))
    w.attempts(0.6)


def fam_firmware_hang(w: World) -> None:
    """The controller hangs: the BMS is silent, the AFE watchdog opens the FETs."""
    if w.chance(0.5):
        w.load(w.u(0.1, 0.6))
    w.inject("firmware_hang")
    w.run(w.u(10, 300))
    if w.chance(0.3):
        w.charger(w.u(0.1, 0.3))
        w.run(w.u(10, 60))
        w.uncharge()
    w.attempts(0.6)


def fam_link_errors(w: World) -> None:
    """The monitoring link throws errors: comm_error; the link repaired or not."""
    if w.chance(0.5):
        w.load(w.u(0.1, 0.6))
    w.inject("monitor_link_errors")
    w.run(w.u(12, 120))
    if w.chance(0.6):
        w.repair("monitor_link_errors")
        w.run(w.u(1, 60))
    w.attempts(0.35)


def fam_internal_short(w: World) -> None:
    """A cell shorts internally (small resistance) and drains itself until it shows."""
    cell = int(w.rng.integers(0, SERIES))
    w.inject("cell_internal_short", cell=cell, resistance_ohm=w.u(0.05, 0.4) * w.capacity_ah / 10.0)
    w.run_until(
        f"cell {cell + 1} clearly behind the others",
        lambda: _collapsed(w.twin, cell, margin_v=0.05),
        6 * 3600,
    )
    w.run(w.u(0, 900))
    w.attempts(0.3)


def fam_capacity_fade(w: World) -> None:
    """A cell with most of its capacity gone; a full charge then a discharge let the BMS learn it."""
    cell = int(w.rng.integers(0, SERIES))
    w.inject("capacity_fade", cell=cell, soh=w.u(0.2, 0.5))
    w.charger(0.5)
    w.run_until(
        "a full point",
        lambda: any(e.kind == "soc_recalibrated" and e.fields.get("soc") == 1.0 for e in w.twin.events),
        2 * 3600,
    )
    w.uncharge()
    w.load(w.u(0.8, 1.3))
    w.run_until("cell_undervoltage", lambda: "cell_undervoltage" in w.faults(), 3 * 3600)
    w.unload()
    w.run_until("cell_failure", lambda: "cell_failure" in w.faults(), 600)
    w.run(w.u(0, 300))
    w.attempts(0.3)


def fam_open_wire(w: World) -> None:
    """A balance lead breaks; mended or not."""
    cell = int(w.rng.integers(0, SERIES))
    w.inject("open_balance_wire", cell=cell)
    w.run(w.u(3, 60))
    if w.chance(0.4):
        w.repair("open_balance_wire", cell=cell)
        w.run(w.u(5, 60))
    w.attempts(0.35)


def fam_sensor_stuck(w: World) -> None:
    """A cell-voltage or temperature reading freezes away from the truth."""
    k = int(w.rng.integers(1, SERIES + 1))
    if w.chance(0.6):
        true_v = float(w.twin.pack.group_v[0, k - 1])
        w.inject("sensor_stuck", sensor=f"cell_v_{k}", value=round(true_v + w.u(0.08, 0.3) * w.rng.choice([-1, 1]), 3))
    else:
        w.inject("sensor_stuck", sensor=f"cell_t_{k}", value=round(w.u(10, 18) if w.chance(0.5) else w.u(32, 38), 1))
    if w.chance(0.5):
        w.load(w.u(0.1, 0.6))
    w.run(w.u(100, 300))
    if w.chance(0.3):
        w.repair("sensor_stuck", sensor=f"cell_v_{k}")
        w.repair("sensor_stuck", sensor=f"cell_t_{k}")
        w.run(w.u(5, 60))
    w.attempts(0.35)


def fam_fet_stuck_discharge(w: World) -> None:
    """The discharge FET welded closed: the BMS opens it at the cut-off and the load drains on."""
    w.inject("fet_stuck_closed", fet="discharge")
    w.load(w.u(0.5, 1.2))
    w.run_until("afe_fault", lambda: "afe_fault" in w.faults(), 3 * 3600)
    if w.chance(0.4):
        w.unload()
    w.run(w.u(0, 120) if w.chance(0.4) else w.u(300, 2400))
    w.attempts(0.3)


def fam_fet_stuck_charge(w: World) -> None:
    """The charge FET welded closed: a charger set too high goes on pushing past the cut-off."""
    w.inject("fet_stuck_closed", fet="charge")
    w.charger(w.u(0.2, 0.5), cell_v=3.9)
    w.run_until("afe_fault", lambda: "afe_fault" in w.faults(), 3 * 3600)
    if w.chance(0.6):
        w.uncharge()
    w.run(w.u(0, 120))
    w.attempts(0.3)


def fam_combo(w: World) -> None:
    """Two outside troubles at once (overload, short, link errors, cold or heat), each removed or not."""
    kinds = list(w.rng.choice(["overload", "short", "link", "temperature"], size=2, replace=False))
    w.note(f"combo {kinds}")
    for kind in kinds:
        if kind == "overload":
            w.load(w.u(1.7, 3.0))
            w.run(2)
            if w.chance(0.6):
                w.unload()
        elif kind == "short":
            w.short(w.u(0.003, 0.05))
            w.run(1)
            if w.chance(0.6):
                w.unshort()
        elif kind == "link":
            w.inject("monitor_link_errors")
            w.run(12)
            if w.chance(0.6):
                w.repair("monitor_link_errors")
        else:
            w.run(3)  # the start temperature (cold or hot) trips its protections
    w.run(w.u(0, 25) if w.chance(0.5) else w.u(25, 90))
    w.attempts(0.35)


def fam_deep_discharge(w: World) -> None:
    """A pack left flat until its cells are below 2.0 V: deep_discharge, persistent."""
    w.run(w.u(30, 300))
    if w.chance(0.4):
        w.charger(0.04)
        w.run(w.u(30, 400))
        if w.chance(0.5):
            w.uncharge()
    if w.chance(0.4):
        w.twin.command_service_clear(0, "deep_discharge")
        w.note("service clear deep_discharge")
        w.run(2)
    w.attempts(0.35)


def fam_healthy(w: World) -> None:
    """Nothing wrong: loads, charging, resets done for no reason."""
    choice = w.rng.choice(["load", "charger", "rest"])
    if choice == "load":
        w.load(w.u(0.1, 0.9))
    elif choice == "charger":
        w.charger(w.u(0.1, 0.5))
    w.run(w.u(10, 400))
    w.attempts(0.5, complete_hard=0.4)


def fam_wrong_order(w: World) -> None:
    """A hard reset with the main leads plugged first, on a board that does not survive it."""
    w.twin.disconnect_main_leads(0)
    w.twin.disconnect_balance_connector(0)
    w.run(w.u(HOLD_UP_S + 5, 200))
    w.twin.connect_main_leads(0)
    w.twin.connect_balance_connector(0)
    w.note("main leads plugged before the balance connector")
    w.run(w.u(5, 60))
    w.attempts(0.4)


def fam_cell_replaced(w: World) -> None:
    """A weak cell cut the pack off; the owner unplugs the BMS and replaces the cell."""
    cell = int(w.rng.integers(0, SERIES))
    w.inject("capacity_fade", cell=cell, soh=w.u(0.2, 0.5))
    w.load(w.u(0.5, 1.2))
    w.run_until("cell_undervoltage", lambda: "cell_undervoltage" in w.faults(), 3 * 3600)
    w.unload()
    w.run(w.u(10, 200))
    w.twin.disconnect_main_leads(0)
    w.twin.disconnect_balance_connector(0)
    soc = w.u(0.2, 0.6)
    refused = w.twin.replace_cell(0, cell, soc)
    assert refused is None
    w.note(f"unplug both connectors, replace cell {cell + 1} (soc {soc:.2f})")
    w.run(w.u(1, 120))


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[World], None]
    weight: float
    soc: tuple[float, float] = (0.3, 0.9)
    temperature_c: Callable[[np.random.Generator], float] = lambda rng: float(rng.uniform(15, 30))
    soc_spread: float = 0.005
    order_damages_afe: bool = False


def _temperature(rng: np.random.Generator) -> float:
    # cold and still cold, hot and still hot, cold then warmed, hot then cooled (fam_cold_or_hot)
    return float(rng.choice([rng.uniform(-30, -3), rng.uniform(61, 72), rng.uniform(-2, -0.5), rng.uniform(45.5, 47)]))


def _run_flat_temperature(rng: np.random.Generator) -> float:
    return float(rng.uniform(-8, -1) if rng.random() < 0.25 else rng.uniform(15, 30))


def _combo_temperature(rng: np.random.Generator) -> float:
    return float(rng.choice([rng.uniform(15, 30), rng.uniform(-25, -1), rng.uniform(61, 70)], p=[0.5, 0.25, 0.25]))


FAMILIES = (
    Family("run_flat", fam_run_flat, 10, soc=(0.03, 0.12), temperature_c=_run_flat_temperature),
    Family("overload", fam_overload, 10, soc=(0.4, 0.9)),
    Family("short", fam_short, 8, soc=(0.4, 0.9)),
    Family("cold_or_hot", fam_cold_or_hot, 6, temperature_c=_temperature),
    Family("afe_glitch", fam_afe_glitch, 5),
    Family("firmware_hang", fam_firmware_hang, 7),
    Family("link_errors", fam_link_errors, 7),
    Family("internal_short", fam_internal_short, 5, soc=(0.1, 0.3)),
    Family("capacity_fade", fam_capacity_fade, 4, soc=(0.93, 0.97)),
    Family("open_wire", fam_open_wire, 4),
    Family("sensor_stuck", fam_sensor_stuck, 4),
    Family("fet_stuck_discharge", fam_fet_stuck_discharge, 3, soc=(0.04, 0.1)),
    Family("fet_stuck_charge", fam_fet_stuck_charge, 3, soc=(0.9, 0.97)),
    Family("deep_discharge", fam_deep_discharge, 5, soc=(0.0, 0.0), soc_spread=0.0),
    Family("combo", fam_combo, 8, soc=(0.2, 0.9), temperature_c=_combo_temperature),
    Family("healthy", fam_healthy, 6),
    Family("wrong_order", fam_wrong_order, 3, order_damages_afe=True),
    Family("cell_replaced", fam_cell_replaced, 4, soc=(0.05, 0.15)),
)


# ----------------------------------------------------------------------------- the ground truth
def _collapsed(twin: Twin, cell: int, margin_v: float = 0.0) -> bool:
    """The cell (0-based) has visibly fallen behind the others: below the under-voltage limit
    while the rest sit well above it, more than half a volt behind their median."""
    v = twin.pack.group_v[0]
    median = float(np.median(v))
    return bool(
        v[cell] < UV_TRIP_V - margin_v
        and median - v[cell] > COLLAPSE_GAP_V + margin_v
        and median > UV_TRIP_V + margin_v
    )


@dataclass
class Truth:
    damaged: list[int]  # 1-based
    causes: list[str]  # what a reset cannot remove
    persistent: list[str]


def ground_truth(twin: Twin) -> Truth:
    pack, afe, bms = twin.pack, twin.afe, twin.bms
    v = pack.group_v[0]
    soh = pack.cells.soh[0]
    shorted = np.isfinite(pack.internal_short_ohm[0])
    learned_failed = bms.health.failed[0]
    learned_soh = float(bms.soc.capacity_ah[0] / bms.pack.capacity_ah)
    damaged = []
    for k in range(SERIES):
        dead = v[k] < DEAD_V
        short_shown = shorted[k] and (_collapsed(twin, k) or learned_failed[k])
        fade_learned = soh[k] < MIN_SOH and (learned_failed[k] or learned_soh < MIN_SOH)
        if dead or short_shown or fade_learned:
            damaged.append(k + 1)
    causes = []
    ext = pack.external
    if shorted.any():
        causes.append(f"internal short on cell(s) {list(np.nonzero(shorted)[0] + 1)}")
    if (soh < MIN_SOH).any():
        causes.append(f"capacity fade on cell(s) {list(np.nonzero(soh < MIN_SOH)[0] + 1)}")
    if afe.open_wire[0].any():
        causes.append("open balance wire")
    if np.isfinite(afe.stuck_v[0]).any() or np.isfinite(afe.stuck_t[0]).any() or np.isfinite(afe.stuck_i[0]):
        causes.append("stuck sensor")
    if afe.drift_v_per_h[0].any() or afe.drift_t_per_h[0].any() or afe.drift_i_per_h[0]:
        causes.append("drifting sensor")
    if afe.damaged[0]:
        causes.append("AFE damaged")
    if twin.fet_stuck_charge[0] or twin.fet_stuck_discharge[0]:
        causes.append("FET stuck closed")
    if twin.link_errors[0]:
        causes.append("monitoring link errors")
    if np.isfinite(ext.short_ohm[0]):
        causes.append("short still connected")
    if ext.load_mode[0] == LOAD_CURRENT and ext.load_value[0] >= OVERCURRENT_C * bms.pack.capacity_ah:
        causes.append("overload still connected")
    temps = pack.cells.temperature_c[0]
    active = set(bms.active_faults(0))
    for fault, hot, trip, release in TEMPERATURE_LIMITS:
        value = float(temps.max() if hot else temps.min())
        beyond_trip = value >= trip if hot else value <= trip
        not_released = value > release if hot else value < release
        if beyond_trip or (fault in active and not_released):
            causes.append(f"{fault}: cells at {value:.1f} °C")
    if v.min() <= DEEP_DISCHARGE_V:
        causes.append(f"a cell below the deep-discharge limit ({v.min():.2f} V)")
    persistent = [str(f["fault"]) for f in bms.fault_details(0) if f["class"] == "persistent"]
    return Truth(damaged, causes, persistent)


# ----------------------------------------------------------------------------- one case
@dataclass
class Outcome:
    index: int
    family: str
    recommendation: str
    problems: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def _family(rng: np.random.Generator) -> Family:
    weights = np.array([f.weight for f in FAMILIES])
    return FAMILIES[int(rng.choice(len(FAMILIES), p=weights / weights.sum()))]


def family_of(index: int) -> str:
    return _family(np.random.default_rng([SEED, index])).name


def run_case(index: int) -> Outcome:
    start = time.perf_counter()
    rng = np.random.default_rng([SEED, index])
    family = _family(rng)
    soc = float(rng.uniform(*family.soc))
    w = World(rng, soc, family.temperature_c(rng), family.soc_spread, family.order_damages_afe)
    family.make(w)
    twin = w.twin
    snapshot = snapshot_of(twin)
    d = diagnose(snapshot)
    truth = ground_truth(twin)
    out = Outcome(index, family.name, d.recommendation, log=w.log)
    state = twin.state_name(0)
    faults = ", ".join(f"{f['fault']}({f['class']})" for f in twin.bms.fault_details(0)) or "none"
    out.log.append(
        f"diagnosed at t={twin.t_s:.0f}s: state {state}, faults {faults}, cell_v {snapshot.cell_v} → "
        f"{d.recommendation}: {'; '.join(r.text for r in d.reasons)}"
    )
    out.log.append(f"truth: damaged {truth.damaged}, causes {truth.causes}, persistent {truth.persistent}")

    # (c) replace_cells exactly when cells are damaged; service exactly when a persistent fault remains
    if truth.damaged and d.recommendation != "replace_cells":
        out.problems.append(f"(c) cells {truth.damaged} are damaged but the advice is {d.recommendation}")
    if d.recommendation == "replace_cells" and not truth.damaged:
        out.problems.append(f"(c) replace_cells (cells {d.damaged_cells}) although no cell is damaged")
    if d.recommendation == "replace_cells" and truth.damaged and set(d.damaged_cells) != set(truth.damaged):
        out.problems.append(f"(c) replace cells {d.damaged_cells}, but the damaged ones are {truth.damaged}")
    if not truth.damaged and truth.persistent and d.recommendation != "service":
        out.problems.append(f"(c) persistent {truth.persistent} active but the advice is {d.recommendation}")
    if d.recommendation == "service" and not truth.persistent:
        out.problems.append("(c) service although no persistent fault is active")

    if d.recommendation in ("soft_reset", "hard_reset"):
        # (b) no reset while a cause that no reset removes is still there
        if truth.causes:
            out.problems.append(f"(b) {d.recommendation} recommended while {truth.causes}")
        # (a) the reset, carried out, brings the BMS back
        result = apply(twin, d)
        out.log.append(f"apply: ok={result.ok} final={result.final_state}: {result.message}")
        out.log += [
            f"  step {o.index}: {'ok' if o.ok else 'FAILED'} {o.text[:60]} → {o.detail}" for o in result.outcomes
        ]
        if not (result.ok and twin.state_name(0) == "normal"):
            out.problems.append(f"(a) apply of {d.recommendation} ended {twin.state_name(0)}: {result.message}")
        else:
            # (b) and nothing comes back within a few minutes
            mark = len(twin.events)
            twin.run(int(POST_S))
            back = [
                e.fields.get("fault")
                for e in twin.events[mark:]
                if e.kind == "fault_set" and e.fields.get("fault") != "cell_imbalance"
            ]
            if back or twin.state_name(0) != "normal":
                out.problems.append(
                    f"(b) within {POST_S:.0f}s after the {d.recommendation}: faults {back} came back, "
                    f"state {twin.state_name(0)}"
                )
    out.wall_s = time.perf_counter() - start
    return out


# ----------------------------------------------------------------------------- the tests
@functools.cache
def outcome(index: int) -> Outcome:
    return run_case(index)


# Cases 27 and 74 (reconnecting the load after a cut-off too early) and 100 (a pack drained to 0 V
# through a stuck FET) once failed; each has a minimal reproduction below as well.
CASES = [pytest.param(i, id=f"case{i:03d}-{family_of(i)}") for i in range(N_CASES)]


@pytest.mark.parametrize("index", CASES)
def test_random_troubled_state_gets_safe_advice(index: int) -> None:
    o = outcome(index)
    assert not o.problems, f"case {index} ({o.family}): " + " | ".join(o.problems) + "\n    " + "\n    ".join(o.log)


def test_the_generator_spreads_over_all_six_recommendations() -> None:
    """Runs after the cases (the outcomes are cached), prints the histogram, and checks that
    every recommendation was exercised at least a few times."""
    outcomes = [outcome(i) for i in range(N_CASES)]
    histogram = Counter(o.recommendation for o in outcomes)
    by_family: dict[str, Counter[str]] = {}
    for o in outcomes:
        by_family.setdefault(o.family, Counter())[o.recommendation] += 1
    compute_s = sum(o.wall_s for o in outcomes)
    print(f"\n{N_CASES} random states, {compute_s:.1f}s of simulation and diagnosis")
    print("recommendation histogram:")
    for rec in RECOMMENDATIONS:
        print(f"  {rec:15s} {histogram[rec]:4d} {'#' * histogram[rec]}")
    print("by family:")
    for name, counts in sorted(by_family.items()):
        print(f"  {name:20s} " + ", ".join(f"{r} {n}" for r, n in counts.most_common()))
    thin = {rec: histogram[rec] for rec in RECOMMENDATIONS if histogram[rec] < MIN_PER_RECOMMENDATION}
    assert not thin, f"the generator gave too few states for {thin}: {dict(histogram)}"
    assert len(outcomes) >= 100


def test_a_case_is_reproducible_from_its_index() -> None:
    first, second = run_case(0), run_case(0)
    assert first.recommendation == second.recommendation
    assert first.log == second.log


# ----------------------------------------------------------------------------- the bugs, minimal
def _small_twin(soc: float, seed: int = 1) -> Twin:
    return Twin(
        TwinConfig(
            cell=LFP.scaled_to(10.0),
            topology=Topology(SERIES, 1),
            profile=PROFILE,
            board=BOARD,
            soc=soc,
            spread=Spread(capacity=0.02, resistance=0.05, soc=0.005, seed=seed),
            dt_s=1.0,
        ),
        nvm=NonVolatileMemory(),
    )


def test_a_pack_drained_to_zero_volts_through_a_stuck_fet_needs_new_cells() -> None:
    twin = _small_twin(0.05)
    inject(twin, 0, FaultSpec("fet_stuck_closed", fet="discharge"))
    twin.connect_load(0, current_a=10.0)
    twin.run(900)
    assert (twin.pack.group_v[0] < DEAD_V).all()  # the truth: every cell is dead
    d = diagnose(snapshot_of(twin))
    assert d.recommendation == "replace_cells", [r.text for r in d.reasons]


def test_after_a_low_voltage_soft_reset_the_load_does_not_cut_the_pack_off_again_at_once() -> None:
    twin = _small_twin(0.08)
    twin.connect_load(0, current_a=9.0)
    while "cell_undervoltage" not in twin.bms.active_faults(0):
        twin.step()
    twin.run(400)  # asleep, the load still connected
    assert twin.state_name(0) == "sleep"
    d = diagnose(snapshot_of(twin))
    assert d.recommendation == "soft_reset"
    result = apply(twin, d)
    assert result.ok and twin.state_name(0) == "normal", result.message
    mark = len(twin.events)
    twin.run(int(POST_S))
    back = [e.fields for e in twin.events[mark:] if e.kind == "fault_set"]
    assert not back, f"within {POST_S:.0f}s: {back}"


def test_an_afe_glitch_at_a_one_second_cycle_is_cleared_by_a_hard_reset() -> None:
    """At dt 1 s a glitch latches sensor_fault before the jumps that make it "erratic" are counted;
    it must still be read as erratic (a hard reset clears it), not as a steady sensor fault."""
    advice = {}
    for seed in range(10):
        twin = _small_twin(0.6, seed)
        inject(twin, 0, FaultSpec("afe_glitch"))
        twin.run(20)
        assert twin.state_name(0) == "latched"
        reason = [e.fields.get("reason") for e in twin.events if e.kind == "fault_set"]
        advice[seed] = (diagnose(snapshot_of(twin)).recommendation, reason)
    wrong = {seed: a for seed, a in advice.items() if a[0] != "hard_reset"}
    assert not wrong, f"AFE glitch, 4S at dt 1 s, spread seeds 0-9: {wrong}"
