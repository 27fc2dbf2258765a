"""Never let the brain be fooled or killed (docs/behaviour.md §3): any reading, however absurd, is a sensor
fault that opens the FETs, and nothing it reads can crash the controller or poison what
non-volatile memory must store."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_protections import SERIES, Driver, measurements

from openbms.bms.nvm import NonVolatileMemory

GARBAGE = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 1e6, -5.0, 0.0, 3.3, 25.0])


def test_one_nan_cell_reading_opens_the_fets_and_the_memory_still_stores_everything() -> None:
    d = Driver()
    d.run(1.0)
    nvm = NonVolatileMemory()
    d.run(2.0, cell_v=np.array([3.3, math.nan, 3.3, 3.3]), current_a=-20.0)
    assert "sensor_fault" in d.bms.active_faults(0)
    assert not d.bms.charge_fet[0] and not d.bms.discharge_fet[0]
    snapshot = d.bms.persistent_snapshot(0)
    json.dumps(snapshot, allow_nan=False)  # strict JSON: no NaN, no Infinity
    nvm.save({0: snapshot}, d.t_s)
    assert all(math.isfinite(v) for v in snapshot["counters"].values())


def test_an_infinite_cell_reading_is_unreadable_not_a_value() -> None:
    d = Driver()
    events = d.run(2.0, cell_v=np.array([3.3, math.inf, 3.3, 3.3]))
    (trip,) = [e for e in events if e.kind == "fault_set"]
    assert trip.fields["fault"] == "sensor_fault"
    assert trip.fields["reason"] == "unreadable"
    # +inf is not taken for an over-voltage: no cell protection trips on an untrusted reading.
    assert "cell_overvoltage" not in d.bms.active_faults(0)


def test_an_absurd_current_reading_is_a_sensor_fault_and_counts_nothing() -> None:
    d = Driver()
    d.run(2.0, current_a=1e300)
    assert "sensor_fault" in d.bms.active_faults(0)
    counters = d.bms.persistent_snapshot(0)["counters"]
    assert counters["charge_ah"] == 0.0 and counters["charge_wh"] == 0.0
    assert np.isfinite(d.bms.soc.soc).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(
        st.tuples(
            st.lists(GARBAGE, min_size=SERIES, max_size=SERIES),
            st.lists(GARBAGE, min_size=SERIES, max_size=SERIES),
            GARBAGE,
            GARBAGE,
            GARBAGE,
        ),
        min_size=1,
        max_size=6,
    ),
    cycles=st.integers(min_value=1, max_value=15),
)
def test_no_reading_crashes_the_brain_and_garbage_always_opens_the_fets(
    data: list[tuple[list[float], list[float], float, float, float]], cycles: int
) -> None:
    d = Driver()
    d.run(0.5)
    for cell_v, cell_t, current, stack, fet_t in data:
        with np.errstate(invalid="ignore", over="ignore"):  # the helper sums the garbage too
            m = measurements(
                cell_v=np.array(cell_v),
                cell_t_c=np.array(cell_t),
                current_a=current,
                fet_t_c=fet_t,
                stack_v=stack,
            )
        d.steps(cycles, m)
    # Then 1.5 s of a reading no real pack can produce: the FETs must be open.
    d.run(1.5, cell_v=np.array([3.3, math.nan, 3.3, 3.3]))
    assert not d.bms.charge_fet[0] and not d.bms.discharge_fet[0]
    snapshot = d.bms.persistent_snapshot(0)
    json.dumps(snapshot, allow_nan=False)
    limits = d.bms.limits
    assert np.isfinite(limits.charge_current_limit_a).all() and np.isfinite(limits.discharge_current_limit_a).all()
