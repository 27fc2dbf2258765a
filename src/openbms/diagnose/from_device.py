"""A diagnosis snapshot of a real device: what one reading of it says, nothing more.

The device side (``openbms.devices``) reads a board into a ``PackReading``; this adapter turns
that reading, or the silence of a board that did not answer, into what the diagnosis reads. It
sits in ``diagnose`` because the diagnosis is the layer above the devices: devices never import
diagnose (see ``tests/test_code_quality.py``), as ``from_twin`` turns the twin's reading into a
snapshot.
"""

from __future__ import annotations

from typing import Any

from openbms.bms.profile import Profile
from openbms.devices.model import DeviceReading
from openbms.devices.reader import read_once
from openbms.diagnose.snapshot import ActiveFault, Snapshot, Thresholds
from openbms.profiles import load_profile
from openbms.twin.board import default_board

# A board reports flags, not how they clear: each fault's recovery class is the one of the
# profile the board is judged with (``Thresholds.recovery_classes``).
PRESENCE_A = 0.5  # a current this large (either way) means a charger or a load is on the terminals


def snapshot_from_reading(
    reading: DeviceReading | None,
    error: str | None = None,
    link: dict[str, str | int] | None = None,
    history: list[dict[str, Any]] | None = None,
    profile: Profile | None = None,
) -> Snapshot:
    """What the diagnosis sees of a real device (fewer facts than a twin). ``link`` says how it was
    asked (protocol, port, baud); ``history`` is earlier events of this board, when there are any;
    ``profile`` is the one the board is judged with (None: the LiFePO4 profile, stated as assumed,
    since a board does not say its chemistry)."""
    assumed = profile is None
    if profile is None:
        profile = load_profile("lfp")
    series = len(reading.cell_v) if reading is not None and reading.cell_v else None
    capacity = reading.nominal_ah if reading is not None and reading.nominal_ah else None
    # A device does not report its supply's hold-up time: the default board's judges a hard reset
    # "too short", and is never quoted as this board's own (``hold_up_known=False``).
    thresholds = Thresholds.from_profile(profile, series, capacity, default_board(), board_known=False)
    if reading is None:
        # Silence is all that was observed: a sleeping BMS, a hung one, the wrong protocol, port or
        # baud rate and swapped wires all look alike, so the state says only "no reply".
        return Snapshot(
            source="device",
            state="no_reply",
            faults=[],
            responds=None,
            thresholds=thresholds,
            profile_assumed=assumed,
            events=[
                *(history or []),
                {"kind": "warning", "warning": "no_answer", "detail": error or "", **(link or {})},
            ],
        )
    faults = [
        ActiveFault.model_validate({"fault": f, "class": thresholds.recovery_classes.get(f, "auto")})
        for f in reading.faults
    ]
    blocking = [f for f in faults if f.fault not in ("cell_imbalance", "comm_error")]
    klasses = {f.klass for f in faults}
    state = (
        "locked"
        if "persistent" in klasses
        else "latched"
        if "latched" in klasses
        else ("protected" if blocking or reading.charge_fet is False or reading.discharge_fet is False else "normal")
    )
    return Snapshot(
        source="device",
        state=state,
        faults=faults,
        charge_fet=reading.charge_fet,
        discharge_fet=reading.discharge_fet,
        cell_v=list(reading.cell_v) if reading.cell_v else None,
        temperature_c=list(reading.temperature_c) if reading.temperature_c else None,
        fet_temperature_c=reading.fet_temperature_c,
        current_a=reading.current_a,
        pack_v=reading.pack_v,
        soc=reading.soc,
        load_connected=None if reading.current_a is None else reading.current_a < -PRESENCE_A,
        charger_connected=None if reading.current_a is None else reading.current_a > PRESENCE_A,
        responds=True,
        events=list(history or []),
        thresholds=thresholds,
        profile_assumed=assumed,
    )


def read_device_snapshot(
    url: str,
    baud: int | None = None,
    history: list[dict[str, Any]] | None = None,
    profile: Profile | None = None,
) -> Snapshot:
    """One reading of the device at ``url`` as a snapshot; raises one of DEVICE_ERRORS. ``history``
    (``openbms.devices.history.load_history``) is what was recorded of the board before: it is what
    tells a board asleep after a cut-off from one that is merely silent."""
    poll, link = read_once(url, baud)
    return snapshot_from_reading(poll.reading, poll.error, link, history, profile)
