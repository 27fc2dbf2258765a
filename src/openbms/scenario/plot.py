"""The picture a person looks at after a run: voltages, current, SOC, temperatures, events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from openbms.files import atomic_path  # noqa: E402
from openbms.scenario.runner import RunResult  # noqa: E402

_MARKED_EVENTS = {
    "fault_set": "tab:red",
    "fault_cleared": "tab:green",
    "warning": "tab:orange",
    "sleep": "tab:purple",
    "wake": "tab:purple",
    "reset": "tab:blue",
}
MAX_LABELS = 12  # more labels than this overlap on an 11-inch plot; the rest are in events.jsonl
_MIN_LABEL_GAP = 0.02  # of the time span between two labels, so neighbours stay readable


def _time_axis(t_s: np.ndarray) -> tuple[np.ndarray, str, float]:
    span = float(t_s[-1]) if t_s.size else 0.0
    if span > 3 * 3600:
        return t_s / 3600.0, "time (h)", 3600.0
    if span > 180:
        return t_s / 60.0, "time (min)", 60.0
    return t_s, "time (s)", 1.0


def event_label(event: dict[str, Any], capacity_ah: float | None) -> str:
    """What the plot writes beside an event's marker: the fault and the cell that tripped it, and
    for a short circuit its peak current (the peak lasts less than one control step, so the
    current trace cannot show it)."""
    kind = event["kind"]
    if kind == "warning":
        text = f"warning {event.get('warning', '')}".strip()
    elif kind in ("fault_set", "fault_cleared"):
        text = ("▲ " if kind == "fault_set" else "▼ ") + str(event.get("fault", kind))
    else:
        text = str(event.get("method") or kind)
    if event.get("cell") is not None:
        text += f" (cell {event['cell']})"
    return text


def short_note(event: dict[str, Any], capacity_ah: float | None) -> str | None:
    """Why the current trace does not show a short circuit, and how large it was."""
    if event["kind"] != "fault_set" or event.get("fault") != "short_circuit":
        return None
    value = float(event.get("value") or 0.0)
    peak = f"peaked at {value * capacity_ah:,.0f} A and " if capacity_ah and value else ""
    return f"short circuit {peak}was cut within one control step, too brief for this trace"


def plot_run(result: RunResult, path: Path) -> list[str]:
    """Write a PNG with five stacked panels (cell voltages, current, SOC, FETs, temperatures) and
    the protection events and warnings marked on each; return the labels written on it."""
    tel = result.telemetry
    data = tel.array()
    n = tel.series
    t, label, scale = _time_axis(data[:, 0])
    cell_v = data[:, 7 : 7 + n]
    cell_t = data[:, 7 + n : 7 + 2 * n]
    fig, axes = plt.subplots(5, 1, figsize=(11, 10), sharex=True, gridspec_kw={"height_ratios": [3, 2, 2, 1, 2]})
    ax_v, ax_i, ax_soc, ax_fet, ax_t = axes
    ax_v.plot(t, cell_v, lw=0.6, alpha=0.6)
    ax_v.plot(t, cell_v.min(axis=1), color="k", lw=1.0, label="min cell")
    ax_v.plot(t, cell_v.max(axis=1), color="k", lw=1.0, ls="--", label="max cell")
    ax_v.set_ylabel("cell voltage (V)", fontsize=8)
    ax_v.legend(loc="lower left", fontsize=7)
    ax_i.plot(t, data[:, 2], color="tab:blue", lw=0.8)
    ax_i.axhline(0, color="grey", lw=0.5)
    ax_i.set_ylabel("current (A)\n+ charges", fontsize=8)
    ax_soc.plot(t, data[:, 3] * 100.0, color="tab:orange", lw=1.0)
    ax_soc.set_ylabel("SOC (BMS, %)", fontsize=8)
    ax_fet.step(t, data[:, 5] + 0.03, where="post", color="tab:green", lw=1.0, label="charge FET")
    ax_fet.step(t, data[:, 6] - 0.03, where="post", color="tab:red", lw=1.0, label="discharge FET")
    ax_fet.set_yticks([0, 1], ["off", "on"])
    ax_fet.set_ylim(-0.25, 1.25)
    ax_fet.set_ylabel("FET", fontsize=8)
    ax_fet.legend(loc="center left", fontsize=7, ncol=2)
    ax_t.plot(t, cell_t, lw=0.6)
    ax_t.set_ylabel("cell temperature (°C)", fontsize=8)
    ax_t.set_xlabel(label, fontsize=8)
    for ax in axes:
        ax.tick_params(labelsize=7)
    span = float(t[-1]) if t.size else 0.0
    labels = _mark_events(result, ax_v, axes, scale, span)
    notes = [(e["t_s"] / scale, short_note(e, result.capacity_ah)) for e in result.events]
    for x, note in [(x, note) for x, note in notes if note is not None][:1]:
        right_half = span > 0 and x > span / 2
        ax_i.annotate(
            "← " + note if not right_half else note + " →",
            (x, 0.08),
            xycoords=("data", "axes fraction"),
            xytext=(-4 if right_half else 4, 0),
            textcoords="offset points",
            fontsize=7,
            color="tab:red",
            ha="right" if right_half else "left",
            va="bottom",
        ).set_in_layout(False)
        labels.append(note)
    status = "passed" if result.passed else "FAILED"
    fig.suptitle(f"{result.name} ({status})", fontsize=10)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return labels


def _mark_events(result: RunResult, ax_top: Any, axes: Any, scale: float, span: float) -> list[str]:
    """A dotted line for each marked event on every panel; a label on the top panel for as many
    as fit without overlapping (trips before warnings, a repeated warning once)."""
    marked = [e for e in result.events if e["kind"] in _MARKED_EVENTS]
    for event in marked:
        for ax in axes:
            ax.axvline(event["t_s"] / scale, color=_MARKED_EVENTS[event["kind"]], lw=0.7, ls=":", alpha=0.8)
    seen_warnings: set[str] = set()
    candidates = []
    for event in marked:
        if event["kind"] == "warning":
            if event.get("warning") in seen_warnings:
                continue
            seen_warnings.add(str(event.get("warning")))
        priority = 0 if event["kind"] == "fault_set" else 1 if event["kind"] == "warning" else 2
        candidates.append((priority, event["t_s"] / scale, event))
    gap = _MIN_LABEL_GAP * span
    placed: list[tuple[float, str, str]] = []
    for _priority, x, event in sorted(candidates, key=lambda c: (c[0], c[1])):
        if len(placed) >= MAX_LABELS or any(abs(x - other) < gap for other, _, _ in placed):
            continue
        placed.append((x, event_label(event, result.capacity_ah), _MARKED_EVENTS[event["kind"]]))
    for x, text, colour in placed:
        ax_top.annotate(
            text,
            (x, 0.98),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=6,
            color=colour,
            va="top",
            ha="right",
        ).set_in_layout(False)
    hidden = len(marked) - len(placed)
    if hidden > 0:
        ax_top.annotate(
            f"{hidden} more events unlabelled (events.jsonl)",
            (1.0, 1.01),
            xycoords="axes fraction",
            fontsize=6,
            ha="right",
            va="bottom",
            color="grey",
        )
    return [text for _, text, _ in sorted(placed)]
