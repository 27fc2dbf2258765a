"""Cell parameter sets for the equivalent-circuit twin.

A parameter set is data, not code: a named record per chemistry in ``data/chemistries.yaml`` (every
number with its unit and source, read by ``openbms.chemistry.records``) and the CSV tables it names,
whose origins are in ``data/PROVENANCE.md`` and ``data/PROVENANCE-nmc-lto.md``. This module only
reads them and turns them into the arrays the batch model needs. All
tables are resampled onto a uniform SOC grid so that a look-up in the hot path is an index
computation, not a search.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from openbms.chemistry.records import RECORDS_FILE, ChemistryRecord, chemistry_records
from openbms.inputs import InputLimitError, read_text_limited

FloatArray = npt.NDArray[np.float64]

OCV_GRID_POINTS = 1001
OCV_NOISE_TOLERANCE_V = 0.001
_KELVIN = 273.15
# Below SOC 0 a real cell keeps falling towards 0 V; the tables stop at their lower cut-off, so the
# twin extends them linearly to 0 V over this much further (negative) SOC.
SOC_SPAN_TO_ZERO_VOLT = 0.03


class ChemistryError(ValueError):
    """A cell parameter set could not be read: one sentence says which file and why."""


@dataclass(frozen=True)
class OcvTable:
    """Open-circuit voltage on a uniform SOC grid from 0 to 1, with physical extrapolation.

    Below SOC 0 the voltage falls linearly to 0 V (an over-discharged cell collapses); above SOC 1
    it keeps the last slope (an overcharged cell rises steeply).
    """

    ocv_v: FloatArray

    @property
    def _slope(self) -> FloatArray:
        slope = self.__dict__.get("_slope_cache")
        if slope is None:
            slope = np.append(np.diff(self.ocv_v), 0.0)
            object.__setattr__(self, "_slope_cache", slope)
        return slope

    @staticmethod
    def from_points(soc: FloatArray, ocv_v: FloatArray, source: str) -> OcvTable:
        soc = np.asarray(soc, dtype=float)
        ocv_v = np.asarray(ocv_v, dtype=float)
        if soc.ndim != 1 or soc.size < 2 or soc.size != ocv_v.size:
            raise ChemistryError(f"{source}: an OCV table needs at least two (soc, ocv_v) rows")
        if not (np.all(np.isfinite(soc)) and np.all(np.isfinite(ocv_v))):
            raise ChemistryError(f"{source}: the OCV table holds a value that is not a number")
        if np.any(np.diff(soc) <= 0):
            raise ChemistryError(f"{source}: the soc column must increase strictly")
        if soc[0] > 1e-9 or soc[-1] < 1 - 1e-9:
            raise ChemistryError(f"{source}: the soc column must run from 0 to 1")
        # Measured tables wobble by a fraction of a millivolt on the plateau; a real fall is an error.
        if np.any(np.diff(ocv_v) < -OCV_NOISE_TOLERANCE_V) or ocv_v[0] <= 0:
            raise ChemistryError(f"{source}: ocv_v must be positive and must not fall as soc rises")
        grid = np.linspace(0.0, 1.0, OCV_GRID_POINTS)
        return OcvTable(ocv_v=np.maximum.accumulate(np.interp(grid, soc, ocv_v)))

    @property
    def grid_soc(self) -> FloatArray:
        return np.linspace(0.0, 1.0, self.ocv_v.size)

    def voltage_v(self, soc: FloatArray) -> FloatArray:
        """OCV at any SOC array, vectorised, with the extrapolations described above."""
        table = self.ocv_v
        last = table.size - 1
        clipped = np.clip(soc, 0.0, 1.0)
        x = clipped * last
        index = x.astype(np.intp)
        np.minimum(index, last - 1, out=index)
        x -= index
        ocv = table[index]
        ocv += x * self._slope[index]
        if not np.array_equal(clipped, soc):
            below = table[0] * np.clip(1.0 + soc / SOC_SPAN_TO_ZERO_VOLT, 0.0, 1.0)
            slope_top = (table[-1] - table[-2]) * last
            ocv = np.where(soc < 0.0, below, ocv)
            ocv = np.where(soc > 1.0, table[-1] + (soc - 1.0) * slope_top, ocv)
        return ocv

    def soc_from_voltage(self, ocv_v: FloatArray) -> FloatArray:
        """Inverse look-up (flat regions return their first SOC): for initialising cells from OCV."""
        return np.interp(ocv_v, self.ocv_v, self.grid_soc)


@dataclass(frozen=True)
class CellParams:
    """One cell's equivalent-circuit and thermal parameters at its rated capacity.

    Resistances are at ``reference_temperature_c`` and SOC 0.5; ``r0_*_factor`` tables (uniform SOC
    grid) shape R0 over SOC separately for charge and discharge, and an Arrhenius factor
    exp(arrhenius_k (1/T - 1/T_ref)) scales every resistance with temperature.
    """

    name: str
    capacity_ah: float
    ocv: OcvTable
    r0_ohm: float
    rc: tuple[tuple[float, float], ...]
    thermal_mass_j_per_k: float
    cooling_w_per_k: float
    r0_discharge_factor: FloatArray = field(default_factory=lambda: np.ones(2))
    r0_charge_factor: FloatArray = field(default_factory=lambda: np.ones(2))
    arrhenius_k: float = 0.0
    reference_temperature_c: float = 25.0
    coulombic_efficiency: float = 1.0
    self_discharge_per_day: float = 0.0
    source: str = ""

    def scaled_to(self, capacity_ah: float) -> CellParams:
        """The same cell design at another capacity: resistances ∝ 1/Ah, capacitances and heat ∝ Ah.

        This is the first approximation the data notes suggest (a bigger cell is more of the same
        electrode in parallel).
        """
        if capacity_ah <= 0:
            raise ChemistryError("capacity_ah must be positive")
        k = capacity_ah / self.capacity_ah
        return replace(
            self,
            capacity_ah=capacity_ah,
            r0_ohm=self.r0_ohm / k,
            rc=tuple((r / k, c * k) for r, c in self.rc),
            thermal_mass_j_per_k=self.thermal_mass_j_per_k * k,
            cooling_w_per_k=self.cooling_w_per_k * k,
        )

    def temperature_factor(self, temperature_c: FloatArray) -> FloatArray:
        if self.arrhenius_k == 0.0:
            return np.ones_like(temperature_c)
        t_k = np.maximum(temperature_c + _KELVIN, 200.0)
        return np.exp(self.arrhenius_k * (1.0 / t_k - 1.0 / (self.reference_temperature_c + _KELVIN)))


MAX_TABLE_BYTES = 1_000_000  # an OCV table has a few hundred rows; bounds what a typo can cost


def _read_csv_text(text: str, source: str) -> dict[str, FloatArray]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise ChemistryError(f"{source}: the file is empty")
    columns: dict[str, list[float]] = {name.strip(): [] for name in reader.fieldnames}
    for line_no, row in enumerate(reader, start=2):
        for key, value in row.items():
            if key is None or value is None or value.strip() == "":
                continue
            try:
                columns[key.strip()].append(float(value))
            except ValueError as err:
                raise ChemistryError(f"{source} line {line_no}: {value!r} is not a number") from err
    return {k: np.asarray(v, dtype=float) for k, v in columns.items()}


def _package_table(filename: str) -> dict[str, FloatArray]:
    text = resources.files("openbms.chemistry").joinpath("data", filename).read_text("utf-8")
    return _read_csv_text(text, filename)


def _uniform(soc: FloatArray, values: FloatArray, points: int = 101) -> FloatArray:
    return np.interp(np.linspace(0.0, 1.0, points), soc, values)


def _split_resistance(record: ChemistryRecord, r_dc_ohm: float) -> tuple[float, tuple[tuple[float, float], ...]]:
    """R0 and the RC pairs as the record's shares of one DC resistance (C = tau / R)."""
    pairs = []
    for pair in record.rc_pairs:
        r_ohm = pair.fraction_of_dc.value * r_dc_ohm
        pairs.append((r_ohm, pair.tau_s.value / r_ohm))
    return record.r0_fraction_of_dc.value * r_dc_ohm, tuple(pairs)


def _from_record(record: ChemistryRecord) -> CellParams:
    """The twin's parameters from a named record: the numbers stay in data, with their sources."""
    ocv = _package_table(record.ocv_csv.value)
    capacity_ah = record.capacity_ah.value
    if record.resistance_csv is not None:
        # A measured resistance table (the LFP cell): R_dc is its 25 °C discharge value at SOC 0.5,
        # and it shapes R0 over SOC separately for charge and discharge.
        rint = _package_table(record.resistance_csv.value)
        soc = rint["SOC"]
        r_dis_25 = rint["R_DCh(298.15)"]
        r_ch_25 = rint["R_Ch(T=298.15)"]
        r_dc_ohm = float(np.interp(0.5, soc, r_dis_25))
        # Arrhenius fit of the mean discharge resistance at 10, 25 and 40 °C (the 60 °C column of
        # the source repeats 40 °C, so it is left out of the fit).
        temps_k = np.array([283.15, 298.15, 313.15])
        mean_r = np.array([rint["R_DCh(T=283.15)"].mean(), r_dis_25.mean(), rint["R_DCh(313.15)"].mean()])
        arrhenius_k = float(np.polyfit(1.0 / temps_k - 1.0 / 298.15, np.log(mean_r), 1)[0])
        discharge_factor = _uniform(soc, r_dis_25 / r_dc_ohm)
        charge_factor = _uniform(soc, r_ch_25 / r_dc_ohm)
    else:
        if record.dc_resistance_ohm is None or record.arrhenius_temperature_k is None:  # checked on load
            raise ChemistryError(f"{record.name}: the record gives no resistance")
        r_dc_ohm = record.dc_resistance_ohm.value
        arrhenius_k = record.arrhenius_temperature_k.value
        # One figure, no SOC shape: the flat factors CellParams has by default.
        discharge_factor, charge_factor = np.ones(2), np.ones(2)
    r0_ohm, rc = _split_resistance(record, r_dc_ohm)
    return CellParams(
        name=record.name,
        capacity_ah=capacity_ah,
        ocv=OcvTable.from_points(ocv["soc"], ocv["ocv_v"], record.ocv_csv.value),
        r0_ohm=r0_ohm,
        rc=rc,
        thermal_mass_j_per_k=capacity_ah * record.heat_capacity_j_per_k_per_ah.value,
        cooling_w_per_k=capacity_ah * record.cooling_w_per_k_per_ah.value,
        arrhenius_k=arrhenius_k,
        coulombic_efficiency=record.coulombic_efficiency.value,
        self_discharge_per_day=record.self_discharge_fraction_per_day.value,
        r0_discharge_factor=discharge_factor,
        r0_charge_factor=charge_factor,
        source=record.description,
    )


def _factory(name: str) -> Callable[[], CellParams]:
    """A loader for the record ``name``, so ``CHEMISTRIES`` keeps mapping names to callables."""

    def load() -> CellParams:
        return _from_record(chemistry_records()[name])

    load.__name__ = f"_{name}"
    load.__doc__ = f"The built-in {name!r} cell, from its record in data/{RECORDS_FILE}."
    return load


# Names in the order they were introduced; the records themselves live in data/chemistries.yaml.
CHEMISTRIES: dict[str, Callable[[], CellParams]] = {
    name: _factory(name) for name in ("lfp", "nmc", "lto", "lfp_prada2013")
}


def load_chemistry(name: str) -> CellParams:
    """The built-in parameter set ``name`` (``lfp``, ``nmc``, ``lto``) at its own rated capacity."""
    try:
        factory = CHEMISTRIES[name]
    except KeyError:
        raise ChemistryError(f"unknown chemistry {name!r}; choose one of {', '.join(sorted(CHEMISTRIES))}") from None
    return factory()


def load_user_cell(
    capacity_ah: float,
    r0_ohm: float,
    rc: list[tuple[float, float]] | tuple[tuple[float, float], ...],
    ocv_csv: Path,
    thermal_mass_j_per_k: float,
    cooling_w_per_k: float,
) -> CellParams:
    """A user's own cell (docs/behaviour.md §8 ``pack.cell``): constant resistances, their OCV table."""
    try:
        text = read_text_limited(Path(ocv_csv), MAX_TABLE_BYTES)
    except OSError as err:
        raise ChemistryError(f"cannot read the OCV table {ocv_csv}: {err.strerror or err}") from err
    except InputLimitError as err:
        raise ChemistryError(f"the OCV table {ocv_csv}: {err}") from None
    except UnicodeDecodeError:
        raise ChemistryError(f"the OCV table {ocv_csv} is not a text file (not UTF-8)") from None
    table = _read_csv_text(text, str(ocv_csv))
    if "soc" not in table or "ocv_v" not in table:
        raise ChemistryError(f"{ocv_csv}: the OCV table needs the columns soc and ocv_v")
    for label, value in (("capacity_ah", capacity_ah), ("thermal_mass_j_per_k", thermal_mass_j_per_k)):
        if not value > 0:
            raise ChemistryError(f"pack.cell.{label} must be positive")
    if r0_ohm < 0 or cooling_w_per_k < 0 or any(r <= 0 or c <= 0 for r, c in rc):
        raise ChemistryError("pack.cell resistances and capacitances must be positive")
    if len(rc) > 2:
        raise ChemistryError("pack.cell.rc takes at most two RC pairs")
    return CellParams(
        name="user",
        capacity_ah=capacity_ah,
        ocv=OcvTable.from_points(table["soc"], table["ocv_v"], str(ocv_csv)),
        r0_ohm=r0_ohm,
        rc=tuple((float(r), float(c)) for r, c in rc),
        thermal_mass_j_per_k=thermal_mass_j_per_k,
        cooling_w_per_k=cooling_w_per_k,
        source=f"user cell from {ocv_csv}",
    )
