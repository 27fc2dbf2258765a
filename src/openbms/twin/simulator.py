"""The twin and the brain, wired the way real hardware wires them.

Each cycle: the pack's physics advance one step under the FET states last commanded, the AFE
measures, and the brain decides. The brain sees only ``Measurements`` and answers only
``Commands``, exactly as it would on a real board.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openbms.bms.brain import Bms, PackConfig
from openbms.bms.events import Event
from openbms.bms.interface import Commands
from openbms.bms.profile import Profile
from openbms.chemistry import CellParams
from openbms.twin.afe import AnalogFrontEnd
from openbms.twin.cells import Spread
from openbms.twin.pack import Pack, StepResult, Topology


@dataclass
class TwinConfig:
    cell: CellParams
    topology: Topology
    profile: Profile
    packs: int = 1
    soc: float = 0.5
    temperature_c: float = 25.0
    spread: Spread = field(default_factory=Spread)
    dt_s: float = 0.1


class Twin:
    """A batch of packs with their BMS boards and brains, advanced together."""

    def __init__(self, config: TwinConfig, keep_events: bool = True) -> None:
        self.config = config
        self.dt_s = config.dt_s
        self.pack = Pack(
            config.cell,
            config.topology,
            config.packs,
            config.profile.hardware,
            config.soc,
            config.temperature_c,
            config.spread,
        )
        self.afe = AnalogFrontEnd(config.profile.hardware.afe, config.spread.seed)
        group_soc = self.pack._groups_mean(self.pack.cells.soc)
        self.bms = Bms(
            config.profile,
            PackConfig(
                series=config.topology.series,
                capacity_ah=config.cell.capacity_ah * config.topology.parallel,
                ocv=config.cell.ocv,
            ),
            packs=config.packs,
            initial_soc=group_soc,
        )
        self.pack.afe_protection = self.bms.afe_config()
        self.keep_events = keep_events
        self.events: list[Event] = []
        self.event_count = 0
        self.t_s = 0.0
        self.commands = self._decide(self._idle_step())

    def _idle_step(self) -> StepResult:
        n = self.config.packs
        return StepResult(
            current_a=np.zeros(n),
            short_circuit_tripped=np.zeros(n, dtype=bool),
            short_circuit_at_s=np.full(n, np.nan),
            short_circuit_peak_a=np.zeros(n),
        )

    def _decide(self, result: StepResult) -> Commands:
        measurements = self.afe.measure(self.pack, result)
        commands, events = self.bms.step(measurements, self.t_s)
        self.pack.charge_fet = commands.charge_fet
        self.pack.discharge_fet = commands.discharge_fet
        self.pack.balance = commands.balance
        self.event_count += len(events)
        if self.keep_events:
            self.events.extend(events)
        self.last_measurements = measurements
        return commands

    def step(self) -> list[Event]:
        """Advance one control cycle; return the events it produced."""
        before = len(self.events)
        result = self.pack.advance(self.dt_s, self.t_s)
        self.t_s = round(self.t_s + self.dt_s, 9)
        self.commands = self._decide(result)
        return self.events[before:]

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()
