"""The pack: cells in series groups of parallel cells, FETs, thermal model, external world.

``Pack.advance`` moves the physics one step with the FET states the brain last commanded. The
AFE's hardware short-circuit detector acts inside the step: when the discharge current reaches
its threshold the FETs open after the programmed delay, so the charge that flows and the trip
time are those of the real hardware, not rounded to the control cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from openbms.bms.interface import AfeProtectionConfig
from openbms.chemistry import CellParams
from openbms.twin.board import BoardProfile
from openbms.twin.cells import CellBank, Spread
from openbms.twin.external import External

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

NEIGHBOUR_CONDUCTANCE_FRACTION = 0.5  # cell-to-cell heat exchange relative to cooling to ambient


@dataclass(frozen=True)
class Topology:
    series: int
    parallel: int

    @property
    def cells(self) -> int:
        return self.series * self.parallel


@dataclass(frozen=True)
class StepResult:
    current_a: FloatArray  # pack terminal current over the step (mean), positive charging
    short_circuit_tripped: BoolArray
    short_circuit_at_s: FloatArray
    short_circuit_peak_a: FloatArray


class Pack:
    """A batch of identical-design packs, each with its own cells, FETs and surroundings."""

    def __init__(
        self,
        params: CellParams,
        topology: Topology,
        packs: int,
        board: BoardProfile,
        soc: float,
        temperature_c: float,
        spread: Spread,
        balance_resistance_ohm: float,
    ) -> None:
        self.params = params
        self.balance_resistance_ohm = balance_resistance_ohm
        self.topology = topology
        self.packs = packs
        self.board = board
        self.cells = CellBank(params, packs, topology.cells, soc, temperature_c, spread)
        self.external = External(packs)
        self.ambient_c = np.full(packs, float(temperature_c))
        self.cooling_factor = np.ones((packs, topology.cells))
        self.fet_t_c = np.full(packs, float(temperature_c))
        self.charge_fet = np.zeros(packs, dtype=bool)
        self.discharge_fet = np.zeros(packs, dtype=bool)
        self.afe_protection = AfeProtectionConfig(False, float("inf"), 0.0)
        self.current_a = np.zeros(packs)
        self.cell_current_a = np.zeros((packs, topology.cells))
        self.cell_v = self.cells.ocv_v()
        self.group_v = self._groups_mean(self.cell_v)
        self.pack_v = self.group_v.sum(axis=1)
        self.balance = np.zeros((packs, topology.series), dtype=bool)
        self.main_leads = np.ones(packs, dtype=bool)  # B−/B+ between the cells and the BMS
        self.internal_short_ohm = np.full((packs, topology.cells), np.inf)
        self.supply_draw_a = np.zeros(packs)  # what the BMS board takes from the stack
        self._has_neighbours = topology.cells > 1
        self._has_shorts = False

    # ------------------------------------------------------------------ topology helpers
    def _grouped(self, x: FloatArray) -> FloatArray:
        return x.reshape(self.packs, self.topology.series, self.topology.parallel)

    def _groups_mean(self, x: FloatArray) -> FloatArray:
        if self.topology.parallel == 1:
            return x
        return self._grouped(x).mean(axis=2)

    def group_temperature_c(self) -> FloatArray:
        """What a sensor on each series group reads: the warmest of its parallel cells."""
        if self.topology.parallel == 1:
            return self.cells.temperature_c
        return self._grouped(self.cells.temperature_c).max(axis=2)

    def terminal_visible_v(self) -> FloatArray:
        """Voltage a charger sees at the pack terminals: 0 V when both FETs are open."""
        return np.where(self.charge_fet | self.discharge_fet, self.pack_v, 0.0)

    # ------------------------------------------------------------------ the step
    def advance(self, dt_s: float, t_start_s: float) -> StepResult:
        cells = self.cells
        e, r, r0 = cells.thevenin(dt_s, self.current_a > 0.0)
        # Series groups of parallel cells: each group is a Thevenin source, the string their sum.
        p = self.topology.parallel
        if p == 1:
            e_group, r_group = e, r
        else:
            g = 1.0 / self._grouped(r)
            r_group = 1.0 / g.sum(axis=2)
            e_group = (self._grouped(e) * g).sum(axis=2) * r_group
        fet_r = 2.0 * self.board.fet.on_resistance_ohm
        e_pack = e_group.sum(axis=1)
        r_pack = r_group.sum(axis=1) + fet_r

        ext = self.external
        draw = ext.draw_a(e_pack, r_pack)
        outputs = ext.charger_outputs(self.terminal_visible_v_for_charger())
        wanted = draw + ext.charge_a(e_pack, r_pack, draw, outputs)
        wanted = np.where(self.main_leads, wanted, 0.0)
        wanted = np.where(self.charge_fet, wanted, np.minimum(wanted, 0.0))
        wanted = np.where(self.discharge_fet, wanted, np.maximum(wanted, 0.0))

        # The AFE's short-circuit detector: conducts for the programmed delay, then opens.
        cfg = self.afe_protection
        scd = cfg.short_circuit_enabled & (-wanted >= cfg.short_circuit_trip_a)
        fraction = np.where(scd, min(cfg.short_circuit_delay_s / dt_s, 1.0), 1.0)
        current = wanted * fraction  # mean current over the step
        if scd.any():
            self.charge_fet = self.charge_fet & ~scd
            self.discharge_fet = self.discharge_fet & ~scd

        if p == 1:
            cell_i = np.broadcast_to(current[:, None], cells.shape)
        else:
            v_group = e_group + r_group * current[:, None]
            cell_i = ((v_group[:, :, None] - self._grouped(e)) / self._grouped(r)).reshape(cells.shape)
        cells.extra_leak_a = self._internal_drain_a()
        cell_v, heat_w = cells.advance(dt_s, cell_i, r0)
        self._advance_thermal(dt_s, heat_w, current, fet_r)

        self.current_a = np.where(scd, 0.0, current)
        self.cell_current_a = cell_i
        self.cell_v = cell_v
        self.group_v = self._groups_mean(cell_v) if p > 1 else cell_v
        self.pack_v = self.group_v.sum(axis=1)
        return StepResult(
            current_a=current,
            short_circuit_tripped=scd,
            short_circuit_at_s=np.where(scd, t_start_s + cfg.short_circuit_delay_s, np.nan),
            short_circuit_peak_a=np.where(scd, -wanted, 0.0),
        )

    def set_internal_short(self, pack: int, cell_index: int, resistance_ohm: float) -> None:
        self.internal_short_ohm[pack, cell_index] = resistance_ohm
        self._has_shorts = bool(np.isfinite(self.internal_short_ohm).any())

    def terminal_visible_v_for_charger(self) -> FloatArray:
        return np.where(self.main_leads, self.terminal_visible_v(), 0.0)

    def _internal_drain_a(self) -> FloatArray:
        """Current that leaves each cell inside the pack: balancing bleed, internal shorts and
        the BMS board's own supply (drawn from the whole stack)."""
        drain = np.broadcast_to((self.supply_draw_a / self.topology.parallel)[:, None], self.cells.shape)
        if self.balance.any():
            bleed = self.balance * self.group_v / self.balance_resistance_ohm
            if self.topology.parallel > 1:
                bleed = np.repeat(bleed / self.topology.parallel, self.topology.parallel, axis=1)
            drain = drain + bleed
        if self._has_shorts:
            drain = drain + np.where(np.isfinite(self.internal_short_ohm), self.cell_v / self.internal_short_ohm, 0.0)
        return drain

    def _advance_thermal(self, dt_s: float, heat_w: FloatArray, current_a: FloatArray, fet_r: float) -> None:
        """Lumped heat balance per cell, semi-implicit so it is stable for any step."""
        cells = self.cells
        mass = cells.params.thermal_mass_j_per_k * cells.capacity_ah / cells.params.capacity_ah
        h = cells.params.cooling_w_per_k * self.cooling_factor
        t = cells.temperature_c
        ambient = self.ambient_c[:, None]
        if self._has_neighbours:
            k = NEIGHBOUR_CONDUCTANCE_FRACTION * cells.params.cooling_w_per_k
            left = np.concatenate([t[:, :1], t[:, :-1]], axis=1)
            right = np.concatenate([t[:, 1:], t[:, -1:]], axis=1)
            a = dt_s / mass
            cells.temperature_c = (t + a * (heat_w + h * ambient + k * (left + right))) / (1.0 + a * (h + 2.0 * k))
        else:
            a = dt_s / mass
            cells.temperature_c = (t + a * (heat_w + h * ambient)) / (1.0 + a * h)
        fet = self.board.fet
        b = dt_s / fet.thermal_mass_j_per_k
        fet_heat = current_a * current_a * fet_r
        self.fet_t_c = (self.fet_t_c + b * (fet_heat + fet.cooling_w_per_k * self.ambient_c)) / (
            1.0 + b * fet.cooling_w_per_k
        )
