"""The twin and the brain, wired the way real hardware wires them.

Each cycle: the pack's physics advance one step under the FET states last applied, the AFE
measures, and the brain decides. The brain sees only ``Measurements`` and answers only
``Commands``, exactly as it would on a real board. Around it sits the board: the supply that the
balance connector feeds (with a hold-up capacitor), the main leads, the reset button, the
monitoring link, the AFE's watchdog, and the non-volatile memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from openbms.bms import states
from openbms.bms.brain import Bms, PackConfig
from openbms.bms.events import Event
from openbms.bms.interface import Commands, Measurements
from openbms.bms.nvm import NonVolatileMemory, NvmError
from openbms.bms.plausibility import REASONS
from openbms.bms.profile import Profile
from openbms.bms.reading import TWIN_PROTOCOL, PackReading
from openbms.chemistry import CellParams
from openbms.twin.afe import AnalogFrontEnd
from openbms.twin.board import BoardProfile, default_board
from openbms.twin.cells import Spread
from openbms.twin.external import LOAD_CURRENT, LOAD_NONE, LOAD_POWER, LOAD_RESISTANCE, Charger, Load
from openbms.twin.pack import Pack, StepResult, Topology

BoolArray = npt.NDArray[np.bool_]
# Which packs a terminal verb acts on: one index, a slice (``ALL_PACKS``) or an index / mask
# array, as numpy indexes; a batch (bench, soak) sets up thousands of packs in one call.
PackIndex = int | slice | npt.NDArray[np.bool_] | npt.NDArray[np.intp]
Amount = float | npt.NDArray[np.float64]
ALL_PACKS = slice(None)

TWIN_NAME = "openbms twin"  # the name the twin's board reports


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
    board: BoardProfile = field(default_factory=default_board)  # the hardware the brain runs on


class TwinError(ValueError):
    """A request the twin cannot carry out (the message says why)."""


class Twin:
    """A batch of packs with their BMS boards and brains, advanced together."""

    def __init__(self, config: TwinConfig, keep_events: bool = True, nvm: NonVolatileMemory | None = None) -> None:
        self.config = config
        self.dt_s = config.dt_s
        n, series = config.packs, config.topology.series
        self.pack = Pack(
            config.cell,
            config.topology,
            n,
            config.board,
            config.soc,
            config.temperature_c,
            config.spread,
            config.board.bleed_resistance_ohm,
        )
        self.afe = AnalogFrontEnd(config.board.afe, config.spread.seed, n, series)
        group_soc = self.pack._groups_mean(self.pack.cells.soc)
        self.bms = Bms(
            config.profile,
            PackConfig(
                series=series,
                capacity_ah=config.cell.capacity_ah * config.topology.parallel,
                ocv=config.cell.ocv,
                coulombic_efficiency=config.cell.coulombic_efficiency,
            ),
            packs=n,
            initial_soc=group_soc,
        )
        self.pack.afe_protection = self.bms.afe_config()
        self.nvm = nvm
        self.keep_events = keep_events
        self.events: list[Event] = []
        self.event_count = 0
        self.t_s = 0.0
        # The board.
        self.hold_up_s = config.board.supply.hold_up_s
        self.balance_connected = np.ones(n, dtype=bool)
        self.unpowered_since_s = np.full(n, np.nan)
        self.hung = np.zeros(n, dtype=bool)
        self.silent_s = np.zeros(n)  # how long the controller has not talked to the AFE
        self.link_errors = np.zeros(n, dtype=bool)
        self.fet_stuck_charge = np.zeros(n, dtype=bool)
        self.fet_stuck_discharge = np.zeros(n, dtype=bool)
        self._button = np.zeros(n, dtype=bool)
        latched_ov = config.profile.protections.get("cell_overvoltage_latched")
        self._afe_ov_v = latched_ov.trip if latched_ov is not None else np.inf
        # What a person did to each pack since its BMS last booted (the diagnosis may ask).
        self.cells_replaced: list[list[int]] = [[] for _ in range(n)]
        self._power_on_from_memory()
        self.commands = self._decide(self._idle_step())

    def _power_on_from_memory(self) -> None:
        """A board whose memory already holds a pack's snapshot (a file a previous run wrote)
        powers on from it, as a real board would (docs/behaviour.md §7): its first cycle is a boot that
        re-trips the persistent faults before any FET closes, so the state is ``locked`` from
        the start and the first save writes them back instead of a clean slate."""
        if self.nvm is None:
            return
        series = self.config.topology.series
        for pack in range(self.config.packs):
            snapshot = self.nvm.load(pack)
            if snapshot is None:
                continue
            cells = len(snapshot.get("soc", []))
            if cells != series:
                raise NvmError(
                    f"the event log {self.nvm.path} remembers pack {pack + 1} with {cells} cells, "
                    f"but this pack has {series}; use another file"
                )
            self.bms.restore(pack, snapshot)  # the BMS is booting already (method power_on)

    # ------------------------------------------------------------------ stepping
    def _idle_step(self) -> StepResult:
        n = self.config.packs
        return StepResult(
            current_a=np.zeros(n),
            short_circuit_tripped=np.zeros(n, dtype=bool),
            short_circuit_at_s=np.full(n, np.nan),
            short_circuit_peak_a=np.zeros(n),
        )

    @property
    def powered(self) -> BoolArray:
        return self.balance_connected

    @property
    def running(self) -> BoolArray:
        return self.balance_connected & ~self.hung

    def _decide(self, result: StepResult) -> Commands:
        pack = self.pack
        charger_present = pack.external.charger_outputs(pack.terminal_visible_v_for_charger()) | (
            pack.external.charger_connected & (pack.external.charger_min_battery_v <= 0) & pack.main_leads
        )
        measurements = self.afe.measure(
            pack, result, self.dt_s, ~self.link_errors, self._button & self.running, charger_present
        )
        return self.decide_on(measurements)

    def decide_on(self, measurements: Measurements) -> Commands:
        """The cycle's second half, once the AFE has measured: the brain decides, the board applies
        its commands and keeps its memory. The compiled engine (``openbms.fast``) measures quiet
        cycles itself and hands the others to this, so they have one implementation."""
        self._button[:] = False
        running = self.running
        events: list[Event] = []
        if running.all():
            commands, events = self.bms.step(measurements, self.t_s)
        elif running.any():
            commands, events = self.bms.step(measurements, self.t_s, running)
        else:
            self.bms.idle(self.t_s)
            commands = self.bms.limits
        self._apply(commands)
        self.last_measurements = measurements
        self._record(events)
        return commands

    def _apply(self, commands: Commands) -> None:
        """Drive the FETs: no power, no gate drive; a hung controller keeps its last command
        until the AFE's watchdog opens both; a stuck FET conducts whatever it is told."""
        self.silent_s = np.where(self.hung, self.silent_s + self.dt_s, 0.0)
        watchdog = self.silent_s >= self.config.board.afe.watchdog_s
        drive = self.powered & ~watchdog
        # The AFE's own over-voltage comparator (as BQ769x0 parts have) cuts charging without the
        # controller: it is what still protects the cells while the firmware hangs.
        afe_ov = (self.pack.group_v >= self._afe_ov_v).any(axis=1) & self.hung
        self.pack.charge_fet = (commands.charge_fet & drive & ~afe_ov) | self.fet_stuck_charge
        self.pack.discharge_fet = (commands.discharge_fet & drive) | self.fet_stuck_discharge
        self.pack.balance = commands.balance & self.running[:, None]
        supply = self.config.board.supply
        draw = np.where(self.bms.sleeping, supply.sleep_a, supply.quiescent_a)
        self.pack.supply_draw_a = np.where(self.powered, draw, 0.0)

    def _record(self, events: list[Event]) -> None:
        bms = self.bms
        if self.nvm is not None:
            if events:
                self.nvm.append(events)
            due = bms.dirty & self.running
            if due.any():
                snapshots = {int(p): bms.persistent_snapshot(int(p)) for p in np.nonzero(due)[0]}
                self.nvm.save(snapshots, self.t_s)
                bms.saved(due, self.t_s)
        self.event_count += len(events)
        if self.keep_events:
            self.events.extend(events)

    def _board_event(self, pack: int, kind: str, fields: dict[str, Any]) -> Event:
        event = Event(self.t_s, pack, kind, fields)
        self._record([event])
        return event

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

    # ------------------------------------------------------------------ what a user sees
    def listening(self, pack: int) -> bool:
        """Whether pack ``pack``'s controller hears its monitoring link: a sleeping, unpowered or
        hung BMS keeps its link silent (docs/behaviour.md §4, §5)."""
        return bool(self.running[pack] and not self.bms.sleeping[pack])

    def state_name(self, pack: int) -> str:
        if not self.powered[pack]:
            return states.STATES[states.OFF]
        if self.hung[pack]:
            return states.STATES[states.UNRESPONSIVE]
        return self.bms.state_name(pack)

    # ------------------------------------------------------------------ the world at the terminals
    # Verbs for what is plugged into a pack's terminals, so that callers (the scenario runner, the
    # procedure runner, tests, bench) never write the ``External`` arrays themselves.
    def connect_load(
        self,
        pack: PackIndex,
        *,
        current_a: Amount | None = None,
        power_w: Amount | None = None,
        resistance_ohm: Amount | None = None,
    ) -> None:
        """Connect a constant-current, constant-power or resistive load (exactly one), replacing
        whatever load was connected."""
        given = [
            (m, v)
            for m, v in ((LOAD_CURRENT, current_a), (LOAD_POWER, power_w), (LOAD_RESISTANCE, resistance_ohm))
            if v is not None
        ]
        if len(given) != 1:
            raise TwinError("a load needs exactly one of current_a, power_w and resistance_ohm")
        ext = self.pack.external
        ext.load_mode[pack], ext.load_value[pack] = given[0]

    def disconnect_load(self, pack: PackIndex) -> None:
        ext = self.pack.external
        ext.load_mode[pack], ext.load_value[pack] = LOAD_NONE, 0.0

    def connected_load(self, pack: int) -> Load | None:
        """The load on the terminals (None: none), to reconnect it later with ``Load.kwargs``."""
        ext = self.pack.external
        mode = int(ext.load_mode[pack])
        return None if mode == LOAD_NONE else Load(mode, float(ext.load_value[pack]))

    def connect_charger(
        self, pack: PackIndex, voltage_v: Amount, current_a: Amount, min_battery_v: Amount = 0.0
    ) -> None:
        """A CC/CV charger; a smart one (``min_battery_v`` > 0) starts only above that voltage."""
        ext = self.pack.external
        ext.charger_connected[pack] = True
        ext.charger_v[pack], ext.charger_a[pack] = voltage_v, current_a
        ext.charger_min_battery_v[pack] = min_battery_v

    def disconnect_charger(self, pack: PackIndex) -> None:
        self.pack.external.charger_connected[pack] = False

    def connected_charger(self, pack: int) -> Charger | None:
        """The charger on the terminals and its settings (None: none)."""
        ext = self.pack.external
        if not ext.charger_connected[pack]:
            return None
        return Charger(float(ext.charger_v[pack]), float(ext.charger_a[pack]), float(ext.charger_min_battery_v[pack]))

    def short(self, pack: PackIndex, resistance_ohm: Amount) -> None:
        self.pack.external.short_ohm[pack] = resistance_ohm

    def clear_short(self, pack: PackIndex) -> None:
        self.pack.external.short_ohm[pack] = np.inf

    def set_ambient(self, pack: PackIndex, temperature_c: Amount) -> None:
        """The air around the pack, which its cells exchange heat with."""
        self.pack.ambient_c[pack] = temperature_c

    def set_current_profile(self, pack: int, current_a: float | None) -> None:
        """The current a profile drives through the terminals now (positive charging); None: no
        profile. A profile is played by its caller, which sets each point when it is due."""
        self.pack.external.profile_a[pack] = np.nan if current_a is None else current_a

    def reading(self, pack: int) -> PackReading:
        """What pack ``pack``'s BMS reports now, and what a person at it sees: the one view of a
        pack that the runner, the diagnosis, the emulator and tests read (never the internals).

        Values are the AFE's measurements as the brain last saw them, not the pack's true physics
        (the telemetry records those)."""
        bms, m, pk = self.bms, self.last_measurements, self.pack
        # The brain keeps SOH, its counters, resets and failed cells in its non-volatile record;
        # this is the one place the record is read as a getter.
        memory = bms.persistent_snapshot(pack)
        capacity_ah = bms.pack.capacity_ah
        soc = float(bms.pack_soc[pack])
        return PackReading(
            protocol=TWIN_PROTOCOL,
            cell_v=[float(v) for v in m.cell_v[pack]],
            temperature_c=[float(t) for t in m.cell_t_c[pack]],
            fet_temperature_c=float(m.fet_t_c[pack]),
            current_a=float(m.current_a[pack]),
            pack_v=float(m.stack_v[pack]),
            soc=soc,
            charge_fet=bool(pk.charge_fet[pack]),
            discharge_fet=bool(pk.discharge_fet[pack]),
            faults=bms.active_faults(pack),
            balancing=[int(c) + 1 for c in np.nonzero(bms.balance[pack])[0]],
            cycles=int(memory["counters"]["cycles"]),
            remaining_ah=soc * capacity_ah,
            nominal_ah=capacity_ah,
            name=TWIN_NAME,
            warnings=bms.active_warnings(pack),
            balancer_enabled=bool(bms.profile.balancing.enabled),
            charger_present=bool(m.charger_present[pack]),
            load_present=bool(m.load_present[pack]),
            uptime_s=float(self.t_s),
            t_s=float(self.t_s),
            state=self.state_name(pack),
            fault_details=bms.fault_details(pack),
            soc_uncertain=bool(bms.soc.uncertain[pack]),
            soh=memory["soh"],
            charge_current_limit_a=float(self.commands.charge_current_limit_a[pack]),
            discharge_current_limit_a=float(self.commands.discharge_current_limit_a[pack]),
            charge_voltage_limit_v=float(self.commands.charge_voltage_limit_v[pack]),
            reset_counts=memory["reset_counts"],
            counters=memory["counters"],
            failed_cells=memory["failed_cells"],
            link_ok=bool(m.link_ok[pack]),
            sensor_reason=REASONS[int(bms.sensors.reason[pack])],
            charger_connected=bool(pk.external.charger_connected[pack]),
            main_leads=bool(pk.main_leads[pack]),
            balance_connector=bool(self.balance_connected[pack]),
            cells_replaced=list(self.cells_replaced[pack]),
        )

    # ------------------------------------------------------------------ a person's hands
    def press_reset_button(self, pack: int) -> None:
        """Pressed: the running controller sees it in its next cycle; a hung one never does."""
        self._button[pack] = True

    def command_soft_reset(self, pack: int) -> list[Event]:
        """``soft_reset`` over the monitoring link: heard only by a running, awake controller
        whose link works."""
        if not self.listening(pack) or self.link_errors[pack]:
            return []
        events = self.bms.soft_reset([pack], self.t_s, "soft")
        self._record(events)
        return events

    def control_write(self, pack: int, protocol: str, what: str, allowed: bool, **request: Any) -> bool:
        """A write from a monitor over the link (FET control). Logged whether or not it is carried
        out; carried out only when ``allowed`` (the emulator's --allow-control).

        A FET write that names only one of ``charge_on`` / ``discharge_on`` (Daly 0xD9 / 0xDA, JK
        0xAB / 0xAC each address one FET) leaves the other at the operator's standing command,
        never at the FETs' physical state: that state changes only at the next step, so reading
        it let a second write within one step undo the first. Writes apply in arrival order and
        each is logged with both values as they stand after it.
        """
        if what == "fet":
            request = {
                "charge_on": not bool(self.bms.operator_charge_off[pack]),
                "discharge_on": not bool(self.bms.operator_discharge_off[pack]),
                **request,
            }
        accepted = bool(allowed and self.listening(pack))
        self._board_event(pack, "control_write", {"protocol": protocol, "what": what, "accepted": accepted, **request})
        if accepted and what == "fet":
            self.bms.operator_fets(pack, bool(request["charge_on"]), bool(request["discharge_on"]), self.t_s)
        return accepted

    def command_service_clear(self, pack: int, fault: str, authenticated: bool = True) -> list[Event]:
        if not self.running[pack] or self.link_errors[pack]:
            return []
        events = self.bms.service_clear(pack, fault, authenticated, self.t_s)
        self._record(events)
        return events

    def disconnect_main_leads(self, pack: int) -> None:
        if not self.pack.main_leads[pack]:
            return
        flowing = float(self.pack.current_a[pack])
        if abs(flowing) > self.config.board.unsafe_disconnect_a:
            self._board_event(pack, "unsafe_disconnect_under_load", {"current_a": round(flowing, 3)})
        self.pack.main_leads[pack] = False

    def connect_main_leads(self, pack: int) -> None:
        if self.pack.main_leads[pack]:
            return
        if not self.balance_connected[pack]:
            self._board_event(
                pack,
                "reconnect_order_violation",
                {"detail": "main leads plugged before the balance connector"},
            )
            if self.config.board.reconnect_order_damages_afe:
                self.afe.damaged[pack] = True
        self.pack.main_leads[pack] = True

    def disconnect_balance_connector(self, pack: int) -> None:
        if not self.balance_connected[pack]:
            return
        self.balance_connected[pack] = False
        self.unpowered_since_s[pack] = self.t_s

    def connect_balance_connector(self, pack: int) -> None:
        """Power returns. Past the hold-up time the controller boots from non-volatile memory;
        before it, its memory survived and nothing volatile is cleared."""
        if self.balance_connected[pack]:
            return
        off_s = self.t_s - float(self.unpowered_since_s[pack])
        self.balance_connected[pack] = True
        self.unpowered_since_s[pack] = np.nan
        if off_s < self.hold_up_s:
            self._board_event(
                pack,
                "hard_reset_incomplete",
                {"off_s": round(off_s, 3), "hold_up_s": self.hold_up_s},
            )
            self._board_event(
                pack,
                "reset",
                {
                    "method": "hard",
                    "result": "incomplete",
                    "reason": f"power was off {off_s:.0f} s, less than the {self.hold_up_s:.0f} s hold-up",
                },
            )
            return
        rows = np.zeros(self.config.packs, dtype=bool)
        rows[pack] = True
        self.hung[pack] = False
        self.silent_s[pack] = 0.0
        self.afe.power_lost(rows)
        # A board without non-volatile memory (nvm=None, as in throughput benchmarks) boots blank.
        remembered = [self.nvm.load(i) if self.nvm is not None else None for i in range(self.config.packs)]
        self.bms.boot(rows, remembered, method="hard")
        self.cells_replaced[pack] = []

    def replace_cell(self, pack: int, cell: int, soc: float) -> Event | None:
        """Fit a new cell in series group ``cell`` (0-based): refused unless both connectors are
        unplugged. Returns the refusal event, or None when the cell was replaced."""
        if self.pack.main_leads[pack] or self.balance_connected[pack]:
            return self._board_event(
                pack,
                "warning",
                {
                    "warning": "replace_cell_refused",
                    "cell": cell + 1,
                    "reason": "unplug the main leads and the balance connector first",
                },
            )
        p = self.config.topology.parallel
        cells = self.pack.cells
        idx = slice(cell * p, (cell + 1) * p)
        soc_all = cells.soc.copy()
        soc_all[pack, idx] = soc
        cells.set_soc(soc_all)
        cells.v_rc[:, pack, idx] = 0.0
        soh = cells.soh.copy()
        soh[pack, idx] = 1.0
        cells.set_soh(soh)
        cells.capacity_ah[pack, idx] = cells.params.capacity_ah
        cells._refresh_capacity()
        cells.temperature_c[pack, idx] = self.pack.ambient_c[pack]
        for k in range(cell * p, (cell + 1) * p):
            self.pack.set_internal_short(pack, k, np.inf)
        self.cells_replaced[pack].append(cell + 1)
        return None
