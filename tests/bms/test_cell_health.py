"""Learning a failing cell like with like (docs/behaviour.md §6): in charge, through the OCV curve, with the
known balancing bleed added back, and never on evidence that a healthy pack produces.

The voltages fed here are hand-made from the LFP OCV table: a cell at SOC x reads OCV(x).
"""

from __future__ import annotations

import numpy as np

from openbms.bms.cell_health import CellHealthLearner
from openbms.chemistry import load_chemistry
from openbms.profiles import load_profile

OCV = load_chemistry("lfp").ocv
SETTINGS = load_profile("lfp").cell_health
CAPACITY_AH = 100.0
CELLS = 8
HOUR_S = 3600.0
STEP_S = 60.0


def ocv(soc: np.ndarray) -> np.ndarray:
    return np.round(OCV.voltage_v(np.asarray(soc, dtype=float)), 3)  # 1 mV resolution


def rest_hours(hours: int, soc_at: object, bleed_a: np.ndarray | None = None) -> CellHealthLearner:
    """Rest ``hours`` hours; ``soc_at(t_h)`` gives every cell's SOC at time t (hours)."""
    learner = CellHealthLearner(SETTINGS, OCV, CAPACITY_AH, packs=1, cells=CELLS)
    resting = np.ones(1, dtype=bool)
    bleed = np.zeros((1, CELLS)) if bleed_a is None else bleed_a
    for k in range(1, round(hours * HOUR_S / STEP_S) + 1):
        t_h = k * STEP_S / HOUR_S
        learner.observe_rest(ocv(soc_at(t_h))[None, :], resting, bleed, STEP_S)  # type: ignore[operator]
    return learner


def test_a_cell_losing_an_amp_hour_an_hour_on_the_knee_is_learned_as_failing() -> None:
    # All cells at 12 %; cell 3 loses 1 Ah/h (1 %/h) through an internal short.
    def soc_at(t_h: float) -> np.ndarray:
        soc = np.full(CELLS, 0.12)
        soc[2] -= 0.01 * t_h
        return soc

    learner = rest_hours(6, soc_at)
    assert learner.failed[0].tolist() == [i == 2 for i in range(CELLS)]


def test_the_fullest_cell_sinking_on_the_steep_top_is_not_a_failing_cell() -> None:
    # The healthy pack, left on the charger after an over-voltage trip: cell 6 sits on the
    # steep top and sinks 20 mV an hour for three hours (relaxation and the BMS's own 10 mA draw)
    # while the others rest on the plateau. 60 mV there is a few tenths of an Ah; a voltage
    # learner saw "20 mV an hour behind the others" and condemned it.
    def soc_at(t_h: float) -> np.ndarray:
        soc = np.linspace(0.95, 0.975, CELLS)
        soc[5] = float(OCV.soc_from_voltage(np.array([3.45 - 0.020 * min(t_h, 3.0)]))[0])
        return soc

    assert not rest_hours(8, soc_at).failed.any()


def test_a_cell_the_bms_itself_bleeds_is_not_failing() -> None:
    # Cell 2 is bled at 1.5 A for hours on the knee: it loses 1.5 Ah/h that the BMS took itself.
    bleed = np.zeros((1, CELLS))
    bleed[0, 1] = 1.5

    def soc_at(t_h: float) -> np.ndarray:
        soc = np.full(CELLS, 0.12)
        soc[1] -= 0.015 * t_h
        return soc

    assert not rest_hours(6, soc_at, bleed).failed.any()
    # Without the bleed accounted for, the same voltages would condemn it: the test has teeth.
    assert rest_hours(6, soc_at).failed[0, 1]


def test_no_evidence_on_the_flat_plateau() -> None:
    # On LFP's flat middle a few mV are many Ah: a cell wandering 3 mV there proves nothing.
    def soc_at(t_h: float) -> np.ndarray:
        soc = np.full(CELLS, 0.5)
        v = OCV.voltage_v(soc)
        v[4] -= 0.003 * min(t_h, 3.0)
        return np.asarray(OCV.soc_from_voltage(v))

    assert not rest_hours(5, soc_at).failed.any()
