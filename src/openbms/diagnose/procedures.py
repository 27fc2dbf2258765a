"""The procedures a diagnosis recommends, step by step, with the seed's safety notes.

Each step says what a person does and, for the twin, an ``action`` the closed loop can carry out
and a ``check`` of what should hold afterwards. The words follow the seed text our users know.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ProcedureStep(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    safety: str | None = None
    action: str | None = None  # what the twin does: e.g. "disconnect load", "wait 15min"
    check: str | None = None  # what must hold afterwards: e.g. "awake", "normal", "powered off"


SAFETY_GENERAL = (
    "Working on a battery can be dangerous: consult the manufacturer's manual first, and if you are "
    "not comfortable with these steps, get a qualified professional."
)


def soft_reset_steps(charger_v: float | None, asleep: bool, button: bool = True) -> list[ProcedureStep]:
    limit = (
        f"charge voltage no higher than {charger_v:.1f} V"
        if charger_v is not None
        else "charge voltage no higher than the one on the battery's label"
    )
    steps = [
        ProcedureStep(text="Disconnect all loads from the battery.", action="disconnect load"),
        ProcedureStep(
            text=(
                f"Connect a compatible charger ({limit}). Its "
                "voltage is often enough to wake the BMS and reset its protection state."
            ),
            safety="Use a charger made for this battery's chemistry and voltage.",
            action="connect charger",
        ),
        ProcedureStep(
            text=(
                "If charging alone does not work, disconnect the charger, let the battery rest for "
                "5–10 minutes, then reconnect the charger."
            ),
            action="reconnect charger after rest",
            check=None if button else "awake",
        ),
    ]
    if button:
        steps.append(
            ProcedureStep(
                text="If it still does not respond and the BMS has a reset button, press it (also a soft reset).",
                action="press reset button",
                check="awake" if asleep else "soft reset",
            )
        )
    steps.append(
        ProcedureStep(
            text="Once the BMS is active again (charging, app shows normal) and the battery has taken some "
            "charge (about 20 %), reconnect your loads.",
            action="reconnect load",
            check="normal",
        )
    )
    return steps


def hard_reset_steps(hold_up_s: float, hold_up_known: bool = True) -> list[ProcedureStep]:
    """The seed's hard reset. The wait covers ``hold_up_s``; the board's own hold-up time is quoted
    only when it is known (the twin's board), never for a board nobody measured."""
    wait_min = max(15, int(round(hold_up_s / 60.0)) + 5)
    return [
        ProcedureStep(
            text="Safety first: disconnect all chargers and loads from the battery system.",
            safety="Never work on the BMS with current flowing: unplugging under load can arc.",
            action="disconnect charger and load",
        ),
        ProcedureStep(text="Access the BMS; this may require opening the battery enclosure."),
        ProcedureStep(
            text="Carefully disconnect the main negative and positive leads from the BMS board.",
            safety="Use insulated tools and keep the leads apart: a short here can damage the cells or BMS.",
            action="disconnect main_leads",
        ),
        ProcedureStep(
            text="Then disconnect the balance wire connector.",
            action="disconnect balance_connector",
            check="powered off",
        ),
        ProcedureStep(
            text=(
                f"Wait at least {wait_min} minutes, so the internal capacitors discharge and the memory "
                + (
                    f"really clears (this BMS keeps its memory for {hold_up_s / 60:.0f} minutes)."
                    if hold_up_known
                    else "really clears (a BMS keeps its memory for some minutes; wait the full time)."
                )
            ),
            action=f"wait {wait_min}min",
        ),
        ProcedureStep(
            text="Reconnect in the reverse order: first the balance wire connector …",
            safety="Never connect the main leads before the balance connector: that can damage the BMS.",
            action="connect balance_connector",
        ),
        ProcedureStep(text="… then the main positive and negative leads.", action="connect main_leads", check="booted"),
        ProcedureStep(
            text="Test: reconnect your charger, then your loads, and check the system works normally.",
            action="test",
            check="normal",
        ),
    ]


def replace_cell_steps(cells: list[int], hold_up_s: float, hold_up_known: bool = True) -> list[ProcedureStep]:
    names = ", ".join(str(c) for c in cells)
    return [
        ProcedureStep(
            text=(
                f"Do not reset the BMS to get the battery going: cell(s) {names} are damaged, and no reset "
                "can fix a damaged cell. Forcing the protection off would hide a real hazard."
            ),
            safety="A damaged lithium cell can overheat; keep the pack disconnected until it is repaired.",
        ),
        ProcedureStep(
            text=(
                f"Have cell(s) {names} replaced by a matching cell (same type and capacity, charged to within "
                "10 mV of the others), with the main leads and the balance connector unplugged."
            ),
            safety="If you are not trained for this, this is a job for a qualified technician.",
        ),
        ProcedureStep(
            text="After the replacement, do a hard reset so the BMS detects the new cell and balances the pack:"
        ),
        *hard_reset_steps(hold_up_s, hold_up_known),
    ]


__all__ = ["SAFETY_GENERAL", "ProcedureStep", "hard_reset_steps", "replace_cell_steps", "soft_reset_steps"]
