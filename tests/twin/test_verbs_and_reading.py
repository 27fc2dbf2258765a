"""The twin's terminal verbs and its reading: what callers use instead of the twin's internals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from openbms.bms.reading import TWIN_PROTOCOL, PackReading
from openbms.chemistry import load_chemistry
from openbms.devices.model import DeviceReading
from openbms.devices.protocols import LiveState
from openbms.profiles import load_profile
from openbms.twin.cells import Spread
from openbms.twin.external import LOAD_CURRENT, LOAD_NONE, LOAD_POWER, LOAD_RESISTANCE, Charger, Load
from openbms.twin.pack import Topology
from openbms.twin.simulator import ALL_PACKS, Twin, TwinConfig, TwinError


def make_twin(packs: int = 1) -> Twin:
    return Twin(
        TwinConfig(
            cell=load_chemistry("lfp").scaled_to(100.0),
            topology=Topology(4, 1),
            profile=load_profile("lfp"),
            packs=packs,
            soc=0.5,
            spread=Spread(),
        )
    )


def test_a_load_is_one_of_current_power_or_resistance_and_reconnects_as_it_was() -> None:
    twin = make_twin()
    ext = twin.pack.external
    for kwargs, mode in (
        ({"current_a": 10.0}, LOAD_CURRENT),
        ({"power_w": 300.0}, LOAD_POWER),
        ({"resistance_ohm": 2.0}, LOAD_RESISTANCE),
    ):
        twin.connect_load(0, **kwargs)
        assert (int(ext.load_mode[0]), float(ext.load_value[0])) == (mode, next(iter(kwargs.values())))
        load = twin.connected_load(0)
        assert load == Load(mode, next(iter(kwargs.values()))) and load.kwargs() == kwargs
    twin.disconnect_load(0)
    assert (int(ext.load_mode[0]), float(ext.load_value[0])) == (LOAD_NONE, 0.0)
    assert twin.connected_load(0) is None
    for wrong in ({}, {"current_a": 1.0, "power_w": 1.0}):
        with pytest.raises(TwinError):
            twin.connect_load(0, **wrong)


def test_charger_short_and_profile_verbs_set_exactly_the_terminals() -> None:
    twin = make_twin()
    ext = twin.pack.external
    assert twin.connected_charger(0) is None
    twin.connect_charger(0, 14.2, 20.0, min_battery_v=10.0)
    assert twin.connected_charger(0) == Charger(14.2, 20.0, 10.0)
    twin.disconnect_charger(0)
    assert not ext.charger_connected[0] and twin.connected_charger(0) is None
    twin.short(0, 0.01)
    assert ext.short_ohm[0] == 0.01
    twin.clear_short(0)
    assert np.isinf(ext.short_ohm[0])
    twin.set_current_profile(0, -5.0)
    assert ext.profile_a[0] == -5.0
    twin.set_current_profile(0, None)
    assert np.isnan(ext.profile_a[0])


def test_verbs_take_a_batch_of_packs() -> None:
    twin = make_twin(packs=3)
    twin.connect_load(ALL_PACKS, current_a=5.0)
    twin.disconnect_load(np.array([False, True, False]))
    assert [twin.connected_load(p) for p in range(3)] == [Load(LOAD_CURRENT, 5.0), None, Load(LOAD_CURRENT, 5.0)]


def test_the_reading_is_plain_data_of_what_the_bms_reports() -> None:
    twin = make_twin()
    twin.connect_load(0, current_a=20.0)
    twin.run(20)
    r = twin.reading(0)
    assert isinstance(r, PackReading) and r.protocol == TWIN_PROTOCOL
    m = twin.last_measurements
    assert r.cell_v == [float(v) for v in m.cell_v[0]] and len(r.cell_v) == 4
    assert r.current_a == float(m.current_a[0]) and r.current_a == pytest.approx(-20.0, abs=1.0)
    assert r.pack_v == float(m.stack_v[0]) and r.soc == float(twin.bms.pack_soc[0])
    assert r.state == twin.state_name(0) and r.faults == twin.bms.active_faults(0)
    assert r.load_present is True and r.charger_connected is False
    assert r.main_leads is True and r.balance_connector is True and r.cells_replaced == []
    assert r.remaining_ah is not None and math.isclose(r.remaining_ah, r.soc * 100.0)
    # No numpy in it: every value is a plain Python value, so it serializes and compares as data.
    for name, value in vars(r).items():
        assert not isinstance(value, np.generic | np.ndarray), name
    with pytest.raises(AttributeError):
        r.soc = 0.0  # type: ignore[misc]


def test_a_device_reading_and_a_live_state_are_the_reading() -> None:
    assert DeviceReading is PackReading and LiveState is PackReading
    assert PackReading("jbd", balancing=[1, 3]).balancing_mask == 0b101
    assert PackReading("jbd").balancing_mask == 0
