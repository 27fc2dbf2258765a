"""Random but valid scenarios for the differential test of the two engines (tests/fast/test_engine.py)
and its nightly-size fuzzer (scripts/fuzz_engines.py), kept in one place so both draw the same kind
of timeline.

Why random timelines: the fast engine runs quiet cycles in a compiled kernel and hands every
discrete cycle back to Python; a bug in that hand-over shows only for some order of events (a
fault injected while a profile plays, a hard reset during a short, ...). The library scenarios
test the orders someone thought of; these draw the rest. Every draw comes from one
``random.Random``: hypothesis passes one it controls (``st.randoms``), the fuzzer a seeded one.

Each scenario is a YAML document plus, when it plays a current profile, small CSV files beside it;
the simulated cycles of one scenario stay under ``MAX_CYCLES`` so a few hundred run in minutes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from openbms.bms.events import FAULT_NAMES
from openbms.scenario.schema import INJECTABLE_FAULTS

MAX_CYCLES = 2000  # simulated control cycles per scenario (runs and run_until timeouts together)
MIN_RUN_S = 5.0
MAX_RUN_S = 1800.0
DTS = (0.1, 0.5, 1.0)


@dataclass(frozen=True)
class Chemistry:
    """What the generator needs of a chemistry to draw sensible currents and voltages."""

    name: str
    nominal_v: float  # per cell, for power and resistance loads
    charge_v: tuple[float, float]  # per cell: a charger's set point, from polite to over-voltage
    min_battery_v: tuple[float, float]  # per cell: a charger's wake threshold, from low to high


CHEMISTRIES = (
    Chemistry("lfp", 3.25, (3.40, 3.90), (2.0, 3.4)),
    Chemistry("nmc", 3.65, (4.00, 4.40), (2.5, 4.0)),
    Chemistry("lto", 2.30, (2.55, 2.95), (1.5, 2.6)),
)


@dataclass
class RandomScenario:
    """One generated scenario: its document, the CSV files it names, and a label for messages."""

    document: dict[str, Any]
    csv_files: dict[str, str] = field(default_factory=dict)

    def yaml_text(self) -> str:
        return yaml.safe_dump(self.document, sort_keys=False, width=120)

    def write(self, folder: Path, stem: str = "scenario") -> Path:
        """Write the YAML and its CSV files into ``folder``; the YAML's path (what load_scenario reads)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.csv_files.items():
            (folder / name).write_text(text)
        path = folder / f"{stem}.yaml"
        path.write_text(self.yaml_text())
        return path


def _seconds(value: float) -> str:
    """A duration as the scenario format writes it (``12.5s``), exact to the millisecond."""
    return f"{round(value, 3):g}s"


class _Builder:
    """Draws one scenario step by step, remembering what is plugged in and injected so repairs
    and disconnections usually undo something (a repair of nothing is legal but tests little)."""

    def __init__(self, rnd: random.Random, faults: tuple[str, ...]) -> None:
        self.rnd = rnd
        self.faults = faults
        self.chem = rnd.choice(CHEMISTRIES)
        self.series = rnd.randint(4, 16)
        self.parallel = rnd.randint(1, 3)
        self.capacity_ah = rnd.choice([None, round(rnd.uniform(2.0, 200.0), 1)])
        self.dt = rnd.choice(DTS)
        self.cycles_left = MAX_CYCLES
        self.injected: list[dict[str, Any]] = []
        self.csv_files: dict[str, str] = {}

    # ------------------------------------------------------------------ helpers
    @property
    def pack_ah(self) -> float:
        cell_ah = self.capacity_ah or {"lfp": 3.0, "nmc": 5.0, "lto": 4.2}[self.chem.name]
        return cell_ah * self.parallel

    def c_rate_current(self, low: float, high: float) -> float:
        """A current between ``low`` and ``high`` C, log-uniform so small and large both occur."""
        rate = math.exp(self.rnd.uniform(math.log(low), math.log(high)))
        return round(rate * self.pack_ah, 3)

    def cell(self) -> int:
        return self.rnd.randint(1, self.series)

    def sensor(self) -> str:
        kind = self.rnd.choice(["cell_v", "cell_t", "current"])
        return "current" if kind == "current" else f"{kind}_{self.cell()}"

    def duration(self) -> float | None:
        """A run's length (5 s to 30 min, log-uniform, whole cycles) within the cycle budget; None
        when the budget is spent."""
        most_s = min(MAX_RUN_S, self.cycles_left * self.dt)
        if most_s < self.dt:
            return None
        low = min(MIN_RUN_S, most_s)
        seconds = math.exp(self.rnd.uniform(math.log(low), math.log(most_s)))
        cycles = max(1, min(self.cycles_left, int(seconds / self.dt)))
        self.cycles_left -= cycles
        return cycles * self.dt

    # ------------------------------------------------------------------ document
    def pack(self) -> dict[str, Any]:
        rnd = self.rnd
        pack: dict[str, Any] = {
            "chemistry": self.chem.name,
            "series": self.series,
            "parallel": self.parallel,
            "soc": round(rnd.uniform(0.0, 1.0), 3),
            "temperature_c": round(rnd.uniform(-25.0, 65.0), 1),
            "spread": {
                "capacity": round(rnd.uniform(0.0, 0.1), 3),
                "resistance": round(rnd.uniform(0.0, 0.2), 3),
                "soc": round(rnd.uniform(0.0, 0.1), 3),
                "self_discharge": round(rnd.choice([0.0, rnd.uniform(0.0, 2.0)]), 3),
                "seed": rnd.randint(0, 10_000),
            },
        }
        if self.capacity_ah is not None:
            pack["capacity_ah"] = self.capacity_ah
        return pack

    def board(self) -> dict[str, Any] | None:
        """Sometimes a short hold-up, so an unplugging within the cycle budget is a hard reset."""
        if self.rnd.random() < 0.5:
            return {"set": {"supply.hold_up_s": self.rnd.choice([1, 5, 30, 120])}}
        return None

    def step(self) -> dict[str, Any] | None:
        kind = self.rnd.choices(
            [
                "run",
                "run_until",
                "load",
                "charger",
                "short",
                "ambient",
                "profile",
                "inject",
                "repair",
                "disconnect",
                "connect",
                "replace_cell",
                "press",
                "command",
                "expect",
                "note",
            ],
            weights=[30, 4, 8, 8, 3, 3, 4, 9, 4, 7, 5, 2, 2, 4, 3, 1],
        )[0]
        return getattr(self, f"_{kind}")()

    def _run(self) -> dict[str, Any] | None:
        seconds = self.duration()
        return None if seconds is None else {"run": _seconds(seconds)}

    def _run_until(self) -> dict[str, Any] | None:
        seconds = self.duration()
        if seconds is None:
            return None
        rnd = self.rnd
        cond = rnd.choice(
            [
                {"state": rnd.choice(["normal", "protected", "sleep", "latched", "off"])},
                {"faults": [rnd.choice(FAULT_NAMES)]},
                {"faults_absent": [rnd.choice(FAULT_NAMES)]},
                {"charge_fet": rnd.choice(["on", "off"])},
                {"discharge_fet": rnd.choice(["on", "off"])},
                {
                    "events": [
                        rnd.choice(["fault_set", "fault_cleared", "warning", "reset", "state_changed", "fet_changed"])
                    ]
                },
                {"soc": sorted([round(rnd.uniform(0, 1), 3), round(rnd.uniform(0, 1), 3)])},
            ]
        )
        return {"run_until": {**cond, "timeout": _seconds(seconds)}}

    def _load(self) -> dict[str, Any]:
        current = self.c_rate_current(0.02, 8.0)
        kind = self.rnd.choice(["current_a", "power_w", "resistance_ohm"])
        if kind == "current_a":
            return {"load": {"current_a": current}}
        volts = self.chem.nominal_v * self.series
        if kind == "power_w":
            return {"load": {"power_w": round(current * volts, 2)}}
        return {"load": {"resistance_ohm": round(volts / current, 5)}}

    def _charger(self) -> dict[str, Any]:
        rnd = self.rnd
        spec: dict[str, Any] = {
            "voltage_v": round(self.series * rnd.uniform(*self.chem.charge_v), 2),
            "current_a": self.c_rate_current(0.02, 2.0),
        }
        if rnd.random() < 0.35:
            spec["min_battery_v"] = round(self.series * rnd.uniform(*self.chem.min_battery_v), 2)
        return {"charger": spec}

    def _short(self) -> dict[str, Any]:
        return {"short": {"resistance_ohm": round(math.exp(self.rnd.uniform(math.log(0.001), math.log(2.0))), 5)}}

    def _ambient(self) -> dict[str, Any]:
        return {"ambient": {"temperature_c": round(self.rnd.uniform(-30.0, 70.0), 1)}}

    def _profile(self) -> dict[str, Any]:
        rnd = self.rnd
        t = 0.0
        rows = ["t_s,current_a"]
        for _ in range(rnd.randint(1, 6)):
            rows.append(f"{t:g},{rnd.choice([0.0, self.c_rate_current(0.02, 3.0)]) * rnd.choice([1, -1]):g}")
            t += round(rnd.uniform(self.dt, 300.0), 1)
        name = f"profile-{len(self.csv_files) + 1}.csv"
        self.csv_files[name] = "\n".join(rows) + "\n"
        return {"profile": {"csv": name}}

    def fault(self) -> dict[str, Any]:
        rnd = self.rnd
        name = rnd.choice(self.faults)
        spec: dict[str, Any] = {"fault": name}
        if name == "cell_internal_short":
            spec |= {"cell": self.cell(), "resistance_ohm": round(math.exp(rnd.uniform(math.log(0.05), 6.0)), 3)}
        elif name == "capacity_fade":
            spec |= {"cell": self.cell(), "soh": round(rnd.uniform(0.05, 1.0), 3)}
        elif name == "open_balance_wire":
            spec |= {"cell": self.cell()}
        elif name == "sensor_stuck":
            sensor = self.sensor()
            typical = {"cell_v": 3.0, "cell_t": 25.0}.get(sensor.rsplit("_", 1)[0], 0.0)
            value = rnd.choice([typical, round(rnd.uniform(-5.0, 130.0), 3), math.nan, math.inf, -math.inf])
            spec |= {"sensor": sensor, "value": value}
        elif name == "sensor_drift":
            spec |= {"sensor": self.sensor(), "per_hour": round(rnd.uniform(-20.0, 20.0), 3)}
        elif name == "fet_stuck_closed":
            spec |= {"fet": rnd.choice(["charge", "discharge"])}
        return spec

    def _inject(self) -> dict[str, Any]:
        spec = self.fault()
        self.injected.append(spec)
        return {"inject": spec}

    def _repair(self) -> dict[str, Any]:
        spec = self.rnd.choice(self.injected) if self.injected and self.rnd.random() < 0.8 else self.fault()
        kept = {k: v for k, v in spec.items() if k in ("fault", "cell", "sensor", "fet")}
        return {"repair": kept}

    def _disconnect(self) -> dict[str, Any]:
        target = self.rnd.choice(["load", "charger", "short", "profile", "main_leads", "balance_connector"])
        return {"disconnect": target}

    def _connect(self) -> dict[str, Any]:
        return {"connect": self.rnd.choice(["main_leads", "balance_connector"])}

    def _replace_cell(self) -> dict[str, Any]:
        return {"replace_cell": {"cell": self.cell(), "soc": round(self.rnd.uniform(0.0, 1.0), 3)}}

    def _press(self) -> dict[str, Any]:
        return {"press": "reset_button"}

    def _command(self) -> dict[str, Any]:
        if self.rnd.random() < 0.5:
            return {"command": "soft_reset"}
        fault = self.rnd.choice(FAULT_NAMES)
        return {"command": {"service_clear": fault, "authenticated": self.rnd.random() < 0.8}}

    def _expect(self) -> dict[str, Any]:
        """A check of the present state; pass or fail, both engines must report the same."""
        rnd = self.rnd
        return {
            "expect": rnd.choice(
                [
                    {"soc": [0.0, 1.0]},
                    {"state": rnd.choice(["normal", "protected", "sleep", "off"])},
                    {"faults_absent": [rnd.choice(FAULT_NAMES)]},
                    {"events": [rnd.choice(["fault_set", "warning", "reset"])]},
                    {"diagnosis": rnd.choice(["none", "fix_root_cause", "soft_reset", "hard_reset", "service"])},
                ]
            )
        }

    def _note(self) -> dict[str, Any]:
        return {"note": "a random note"}


def random_scenario(
    rnd: random.Random, name: str = "random engine comparison", faults: tuple[str, ...] = INJECTABLE_FAULTS
) -> RandomScenario:
    """A valid scenario of 3 to 10 timeline steps drawn from ``rnd`` (see the module docstring);
    ``faults`` are the ones it may inject (the fuzzer leaves out one whose mismatch is known, to
    find the others)."""
    builder = _Builder(rnd, faults)
    document: dict[str, Any] = {
        "name": name,
        "pack": builder.pack(),
        "bms": {"profile": builder.chem.name},
    }
    board = builder.board()
    if board is not None:
        document["board"] = board
    document["dt"] = _seconds(builder.dt)
    timeline: list[dict[str, Any]] = []
    wanted = rnd.randint(3, 10)
    while len(timeline) < wanted - 1:
        step = builder.step()
        if step is None:  # the cycle budget is spent: fill with steps that take no time
            step = builder._inject() if rnd.random() < 0.5 else builder._command()
        timeline.append(step)
    # The last step lets the last action take effect: a run, unless one just ran (or the budget is spent).
    last = builder.step() if "run" in timeline[-1] or "run_until" in timeline[-1] else builder._run()
    timeline.append(last if last is not None else builder._command())
    document["timeline"] = timeline
    return RandomScenario(document, dict(builder.csv_files))
