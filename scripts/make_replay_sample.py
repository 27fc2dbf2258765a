"""Make ``scenarios/replay/sample-log.csv``: a twin run's measurements as a logger would keep them.

Why: ``openbms replay`` needs a log to show itself on, and its test needs one whose outcome is
known. This runs ``scenarios/replay/sample-source.yaml`` on the twin (reference engine, every
cycle) and writes, for its boot at t=0 and every control cycle, what the brain was given: the AFE's cell voltages and
temperatures, the current, the stack voltage, the FET temperature, and the charger and load
inputs. The twin's own fault events go to ``sample-log.trips.json`` beside it, the expectation
the replay test checks::

    python scripts/make_replay_sample.py
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

HERE = Path(__file__).resolve().parents[1] / "scenarios" / "replay"


def main() -> int:
    scenario, steps = load_scenario(HERE / "sample-source.yaml")
    runner = ScenarioRunner(scenario, steps, engine="reference")
    twin = runner.twin
    rows: list[list[str]] = []

    def record(t_s: float) -> None:
        m = twin.last_measurements
        rows.append(
            [f"{t_s:.1f}", f"{float(m.current_a[0]):.2f}", f"{float(m.stack_v[0]):.2f}", f"{float(m.fet_t_c[0]):.1f}"]
            + [str(int(bool(m.charger_present[0]))), str(int(bool(m.load_present[0])))]
            + [f"{float(v):.3f}" for v in m.cell_v[0]]
            + [f"{float(t):.1f}" for t in m.cell_t_c[0]]
        )

    record(0.0)  # the brain boots on the pack at rest, at t=0, before the first step
    cycles = runner.cycles()
    while True:
        try:
            record(next(cycles))
        except StopIteration:
            break
    series = twin.config.topology.series
    header = ["t_s", "current_a", "stack_v", "fet_t_c", "charger_present", "load_present"]
    header += [f"cell_v_{i}" for i in range(1, series + 1)] + [f"cell_t_c_{i}" for i in range(1, series + 1)]
    with (HERE / "sample-log.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    trips = [{"t_s": e.t_s, "fault": e.fields["fault"]} for e in twin.events if e.kind == "fault_set"]
    (HERE / "sample-log.trips.json").write_text(json.dumps(trips, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} rows, {len(trips)} trips: {trips}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
