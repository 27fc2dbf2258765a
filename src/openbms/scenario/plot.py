"""The picture a person looks at after a run: voltages, current, SOC, temperatures, events."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from openbms.scenario.output import temp_file  # noqa: E402
from openbms.scenario.runner import RunResult  # noqa: E402

_MARKED_EVENTS = {
    "fault_set": "tab:red",
    "fault_cleared": "tab:green",
    "sleep": "tab:purple",
    "wake": "tab:purple",
    "reset": "tab:blue",
}


def _time_axis(t_s: np.ndarray) -> tuple[np.ndarray, str, float]:
    span = float(t_s[-1]) if t_s.size else 0.0
    if span > 3 * 3600:
        return t_s / 3600.0, "time (h)", 3600.0
    if span > 180:
        return t_s / 60.0, "time (min)", 60.0
    return t_s, "time (s)", 1.0


def plot_run(result: RunResult, path: Path) -> None:
    """Write a PNG with four stacked panels and the protection events marked on each."""
    tel = result.telemetry
    data = tel.array()
    n = tel.series
    t, label, scale = _time_axis(data[:, 0])
    cell_v = data[:, 7 : 7 + n]
    cell_t = data[:, 7 + n : 7 + 2 * n]
    fig, axes = plt.subplots(4, 1, figsize=(11, 9), sharex=True)
    ax_v, ax_i, ax_soc, ax_t = axes
    ax_v.plot(t, cell_v, lw=0.6, alpha=0.6)
    ax_v.plot(t, cell_v.min(axis=1), color="k", lw=1.0, label="min cell")
    ax_v.plot(t, cell_v.max(axis=1), color="k", lw=1.0, ls="--", label="max cell")
    ax_v.set_ylabel("cell voltage (V)")
    ax_v.legend(loc="best", fontsize=8)
    ax_i.plot(t, data[:, 2], color="tab:blue", lw=0.8)
    ax_i.axhline(0, color="grey", lw=0.5)
    ax_i.set_ylabel("current (A)\n+ charges")
    ax_soc.plot(t, data[:, 3] * 100.0, color="tab:orange", lw=1.0, label="SOC (BMS)")
    ax_soc.set_ylabel("SOC (%)")
    fets = ax_soc.twinx()
    fets.step(t, data[:, 5] + 0.02, where="post", color="tab:green", lw=0.8, label="charge FET")
    fets.step(t, data[:, 6] - 0.02, where="post", color="tab:red", lw=0.8, label="discharge FET")
    fets.set_yticks([0, 1], ["off", "on"])
    fets.set_ylim(-0.2, 1.2)
    fets.legend(loc="lower right", fontsize=8)
    ax_t.plot(t, cell_t, lw=0.6)
    ax_t.set_ylabel("cell temperature (°C)")
    ax_t.set_xlabel(label)
    for event in result.events:
        colour = _MARKED_EVENTS.get(event["kind"])
        if colour is None:
            continue
        x = event["t_s"] / scale
        for ax in axes:
            ax.axvline(x, color=colour, lw=0.8, ls=":")
        text = event.get("fault") or event.get("method") or event["kind"]
        if event["kind"] in ("fault_set", "fault_cleared"):
            text = ("▲ " if event["kind"] == "fault_set" else "▼ ") + str(text)
        ax_v.annotate(
            str(text),
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            color=colour,
            va="top",
            ha="right",
        )
    status = "passed" if result.passed else "FAILED"
    fig.suptitle(f"{result.name} ({status})", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
