"""Generate the NMC and LTO open-circuit-voltage tables shipped in ``openbms.chemistry.data``.

Why this exists: openbms ships OCV(SOC) tables as plain CSV data so that the package needs no
electrochemistry library at run time. For LiFePO4 there are measured tables; for NMC/graphite and
for lithium-titanate (LTO) cells we derive the tables from published, openly licensed electrode
open-circuit-potential (OCP) fits instead. This script is the single, reproducible record of how
the two CSV files were made; ``PROVENANCE-nmc-lto.md`` beside them explains the sources, licences
and caveats. Re-run it to regenerate (or, with ``--check``, to verify) the files::

    pip install "pybamm>=25.1"
    python bench/make_chemistry_tables.py            # writes the two CSV files
    python bench/make_chemistry_tables.py --check    # exit 1 if the shipped files differ
    python bench/make_chemistry_tables.py --dcr      # also print model pulse resistances

PyBaMM is an optional extra of the project and is imported lazily; only this script needs it.

How the tables are derived (full-cell OCV from two electrode OCPs, 25 degC, no hysteresis)::

    OCV(soc) = U_p(y(soc)) - U_n(x(soc))
    x(soc) = x_0 + soc * (x_100 - x_0)        # negative-electrode stoichiometry
    y(soc) = y_0 - soc * (y_0 - y_100)        # positive-electrode stoichiometry

* ``nmc_ocv_chen2020.csv`` -- LG M50 (NMC811 / graphite-SiOx), PyBaMM parameter set
  ``Chen2020``. U_p and U_n are that set's OCP functions; x_0, x_100, y_100, y_0 come from
  ``pybamm.lithium_ion.get_min_max_stoichiometries`` (the electrode-SOH solve with the set's own
  electrode capacities and cyclable lithium), which places OCV(0) on the 2.5 V lower cut-off and
  OCV(1) on the 4.2 V upper cut-off. The set's entropic coefficients are zero, so the table does
  not depend on temperature; it applies at the set's 298.15 K reference temperature.
* ``lto_ocv_yao2024_chen2020.csv`` -- a CONSTRUCTED NMC/LTO cell. U_p is the same Chen2020 NMC811
  OCP, used over exactly the lithiation window it has in the LG M50 cell (y_0, y_100 above). U_n is
  the Li4Ti5O12 OCP fit of Yao & Viswanathan 2024 (the "diffthermo" Redlich-Kister fit, MIT
  licence, to the LTO half-cell data of Ma et al. 2007), re-implemented below from its published
  coefficients. The LTO window x_0, x_100 is solved so that OCV(0) = 1.5 V and OCV(1) = 2.8 V,
  which makes the LTO electrode the capacity-limiting one at both ends (an anode-limited design,
  negative/positive capacity ratio about 0.72). This is an approximation of a real NMC/LTO cell,
  not a measurement of one.

Every table has 201 rows, soc 0.000 to 1.000 in steps of 0.005, ``ocv_v`` rounded to 5 decimals,
and is checked to rise strictly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Ocp = Callable[[FloatArray], FloatArray]  # an electrode open-circuit potential, V vs Li/Li+

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "src" / "openbms" / "chemistry" / "data"
NMC_FILE = "nmc_ocv_chen2020.csv"
LTO_FILE = "lto_ocv_yao2024_chen2020.csv"

N_POINTS = 201
DECIMALS = 5
PARAMETER_SET = "Chen2020"

# LTO full-cell voltage limits (V): 2.8 V is Toshiba's published SCiB upper limit and 1.5 V the
# lowest published discharge limit (SCiB below 0 degC; 2.3 V-nominal LTO cells generally).
LTO_V_MIN = 1.5
LTO_V_MAX = 2.8

# Yao & Viswanathan 2024 ("diffthermo") LTO OCP fit, copied from the MIT-licensed repository
# BattModels/Diffthermo_OCV_paper, file pybamm_OCV_functions/LTO.py (Copyright (c) 2024
# DiffthermoBatteryModels). The fit is a Redlich-Kister excess Gibbs energy with one miscibility
# gap between the phase boundaries below, inside which the potential is the coexistence value.
LTO_RK_OMEGAS = (14025.5664, 15593.5771, -100475.7578, -26389.4648)  # J/mol
LTO_G0 = -155432.9219  # J/mol
LTO_X_ALPHA = 0.1186100244522095
LTO_X_BETA = 0.8482373952865601
LTO_MU_COEX = -155770.73438  # J/mol
LTO_FIT_R = 8.314  # J/(mol K), as used by the fit
LTO_FIT_T = 300.0  # K, the temperature the fit was made at
LTO_FIT_F = 96485.0  # C/mol, as used by the fit
LTO_FIT_EPS = 1e-7


def lto_ocp_yao2024(sto: FloatArray) -> FloatArray:
    """Li4Ti5O12 open-circuit potential vs Li/Li+ (V) at normalised lithiation ``sto`` (0..1).

    Same formula and coefficients as the diffthermo fit: outside the miscibility gap
    mu = G0 + R T ln(x / (1 - x)) + sum_i Omega_i [(1-2x)^(i+1) - 2 i x (1-x) (1-2x)^(i-1)],
    inside it mu is the coexistence chemical potential; U = -mu / F. The potential falls as the
    LTO is lithiated (sto rises) and is exactly flat, about 1.6145 V, on the two-phase plateau.
    """
    x = np.asarray(sto, dtype=float)
    u = 1.0 - 2.0 * x
    mu = LTO_G0 + LTO_FIT_R * LTO_FIT_T * np.log((x + LTO_FIT_EPS) / (1.0 - x + LTO_FIT_EPS))
    for i, omega in enumerate(LTO_RK_OMEGAS):
        term = u ** (i + 1)
        if i > 0:
            term = term - 2.0 * i * x * (1.0 - x) * u ** (i - 1)
        mu = mu + omega * term
    outside_gap = (x < LTO_X_ALPHA) | (x > LTO_X_BETA)
    return np.asarray(-np.where(outside_gap, mu, LTO_MU_COEX) / LTO_FIT_F, dtype=float)


@dataclass(frozen=True)
class Window:
    """Electrode stoichiometry limits: x for the negative, y for the positive electrode."""

    x_0: float
    x_100: float
    y_0: float
    y_100: float

    def x(self, soc: FloatArray) -> FloatArray:
        return self.x_0 + soc * (self.x_100 - self.x_0)

    def y(self, soc: FloatArray) -> FloatArray:
        return self.y_0 - soc * (self.y_0 - self.y_100)


@dataclass(frozen=True)
class Table:
    """One generated OCV table and the numbers that describe how it was made."""

    filename: str
    soc: FloatArray
    ocv_v: FloatArray
    window: Window
    notes: dict[str, float]


def soc_grid() -> FloatArray:
    return np.linspace(0.0, 1.0, N_POINTS)


def bisect(f: Callable[[float], float], lo: float, hi: float, tol: float = 1e-13) -> float:
    """Root of a continuous ``f`` that changes sign on [lo, hi] (plain bisection)."""
    f_lo = f(lo)
    if f_lo * f(hi) > 0:
        raise ValueError(f"no sign change on [{lo}, {hi}]")
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        f_mid = f(mid)
        if (f_mid > 0) == (f_lo > 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def load_chen2020() -> tuple[Any, Ocp, Ocp]:
    """PyBaMM's Chen2020 parameter values and its positive / negative OCP functions."""
    import pybamm  # optional dependency, imported lazily

    values = pybamm.ParameterValues(PARAMETER_SET)
    u_p = values["Positive electrode OCP [V]"]
    u_n = values["Negative electrode OCP [V]"]

    def pos(y: FloatArray) -> FloatArray:
        return np.asarray(u_p(np.asarray(y, dtype=float)), dtype=float)

    def neg(x: FloatArray) -> FloatArray:
        return np.asarray(u_n(np.asarray(x, dtype=float)), dtype=float)

    return values, pos, neg


def chen2020_window(values: Any) -> Window:
    """Stoichiometry limits from PyBaMM's electrode-SOH solve for the Chen2020 cell."""
    import pybamm

    x_0, x_100, y_100, y_0 = (float(v) for v in pybamm.lithium_ion.get_min_max_stoichiometries(values))
    return Window(x_0=x_0, x_100=x_100, y_0=y_0, y_100=y_100)


def electrode_capacities_ah(values: Any) -> tuple[float, float]:
    """Negative and positive electrode capacities (A h) of the Chen2020 cell."""
    import pybamm

    param = pybamm.LithiumIonParameters()
    q_n = float(values.evaluate(param.n.Q_init))
    q_p = float(values.evaluate(param.p.Q_init))
    return q_n, q_p


def make_nmc(values: Any, u_p: Ocp, u_n: Ocp) -> Table:
    window = chen2020_window(values)
    soc = soc_grid()
    ocv = u_p(window.y(soc)) - u_n(window.x(soc))
    q_n, q_p = electrode_capacities_ah(values)
    notes = {
        "lower_cutoff_v": float(values["Lower voltage cut-off [V]"]),
        "upper_cutoff_v": float(values["Upper voltage cut-off [V]"]),
        "nominal_capacity_ah": float(values["Nominal cell capacity [A.h]"]),
        "esoh_capacity_ah": q_n * (window.x_100 - window.x_0),
        "negative_capacity_ah": q_n,
        "positive_capacity_ah": q_p,
        "reference_temperature_k": float(values["Reference temperature [K]"]),
    }
    return Table(NMC_FILE, soc, ocv, window, notes)


def make_lto(nmc_window: Window, u_p: Ocp) -> Table:
    """NMC811 (Chen2020, LG M50 window) against LTO (Yao 2024), LTO-limited at both ends."""
    y_0, y_100 = nmc_window.y_0, nmc_window.y_100
    up_0 = float(u_p(np.array([y_0]))[0])
    up_100 = float(u_p(np.array([y_100]))[0])

    def lto(x: float) -> float:
        return float(lto_ocp_yao2024(np.array([x]))[0])

    # Discharged end: LTO nearly empty, on its steep single-phase branch below the gap.
    x_0 = bisect(lambda x: up_0 - lto(x) - LTO_V_MIN, 1e-6, LTO_X_ALPHA - 1e-9)
    # Charged end: LTO just past the gap, where its potential starts to fall.
    x_100 = bisect(lambda x: up_100 - lto(x) - LTO_V_MAX, LTO_X_BETA + 1e-9, 1.0 - 1e-6)
    window = Window(x_0=x_0, x_100=x_100, y_0=y_0, y_100=y_100)
    soc = soc_grid()
    ocv = u_p(window.y(soc)) - lto_ocp_yao2024(window.x(soc))
    span = x_100 - x_0
    notes = {
        "lower_cutoff_v": LTO_V_MIN,
        "upper_cutoff_v": LTO_V_MAX,
        "negative_to_positive_capacity_ratio": (y_0 - y_100) / span,
        "plateau_soc_start": (LTO_X_ALPHA - x_0) / span,
        "plateau_soc_end": (LTO_X_BETA - x_0) / span,
        "mean_ocv_v": float(np.mean(0.5 * (ocv[1:] + ocv[:-1]))),  # trapezoid, uniform grid
        "lto_plateau_v": lto(0.5),
        "positive_ocp_at_soc0_v": up_0,
        "positive_ocp_at_soc1_v": up_100,
    }
    return Table(LTO_FILE, soc, ocv, window, notes)


def render(table: Table) -> str:
    """CSV text: header ``soc,ocv_v``, soc to 3 decimals, voltage to 5; checked as it goes."""
    rounded = np.round(table.ocv_v, DECIMALS)
    if table.soc.size != N_POINTS or not np.all(np.isfinite(rounded)):
        raise ValueError(f"{table.filename}: bad grid or non-finite voltage")
    if np.any(np.diff(rounded) <= 0):
        raise ValueError(f"{table.filename}: voltage does not rise strictly")
    lines = ["soc,ocv_v"]
    lines += [f"{s:.3f},{v:.{DECIMALS}f}" for s, v in zip(table.soc, rounded, strict=True)]
    return "\n".join(lines) + "\n"


def model_pulse_resistance(values: Any, soc: float, seconds: float = 10.0) -> tuple[float, float]:
    """(R at 0+, R at ``seconds``) in ohm of a 1C discharge pulse in PyBaMM's DFN, after rest.

    A model figure, not a measurement: the Chen2020 set has zero contact resistance, so tabs,
    welds and the can are not included.
    """
    import pybamm

    current = float(values["Nominal cell capacity [A.h]"])
    experiment = pybamm.Experiment(
        [
            "Rest for 10 seconds",
            f"Discharge at {current} A for {seconds} seconds (0.01 second period)",
        ]
    )
    sim = pybamm.Simulation(pybamm.lithium_ion.DFN(), parameter_values=values, experiment=experiment)
    solution = sim.solve(initial_soc=soc)
    v_rest = float(solution.cycles[0]["Voltage [V]"].entries[-1])
    v_pulse = solution.cycles[1]["Voltage [V]"].entries
    return (v_rest - float(v_pulse[0])) / current, (v_rest - float(v_pulse[-1])) / current


def describe(table: Table) -> str:
    w = table.window
    picks = [0.0, 0.1, 0.5, 0.9, 1.0]
    idx = [int(round(p * (N_POINTS - 1))) for p in picks]
    volts = ", ".join(f"{p:.1f}: {round(float(table.ocv_v[i]), DECIMALS):.5f}" for p, i in zip(picks, idx, strict=True))
    notes = ", ".join(f"{k}={v:.6g}" for k, v in table.notes.items())
    return (
        f"{table.filename}\n  x_0={w.x_0:.6f} x_100={w.x_100:.6f} "
        f"y_0={w.y_0:.6f} y_100={w.y_100:.6f}\n  OCV at soc {volts}\n  {notes}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="output folder")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    parser.add_argument("--dcr", action="store_true", help="also print DFN 1C pulse resistances (slow-ish)")
    args = parser.parse_args(argv)

    values, u_p, u_n = load_chen2020()
    nmc = make_nmc(values, u_p, u_n)
    lto = make_lto(nmc.window, u_p)

    status = 0
    for table in (nmc, lto):
        text = render(table)
        path = args.out / table.filename
        print(describe(table))
        if args.check:
            same = path.exists() and path.read_text(encoding="utf-8") == text
            print(f"  {'matches' if same else 'DIFFERS from'} {path}")
            status |= 0 if same else 1
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"  wrote {path}")

    if args.dcr:
        for name in (PARAMETER_SET, "ORegan2022"):
            import pybamm

            set_values = values if name == PARAMETER_SET else pybamm.ParameterValues(name)
            for soc in (0.2, 0.5, 0.8):
                r0, r10 = model_pulse_resistance(set_values, soc)
                print(f"DFN {name} soc {soc:.1f}: R(0+) = {r0:.4f} ohm, R(10 s) = {r10:.4f} ohm")
    return status


if __name__ == "__main__":
    sys.exit(main())
