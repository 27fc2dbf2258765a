"""``/metrics`` of ``openbms serve`` for Prometheus: what the page shows, as labelled series.

Collected at scrape time from the source's latest reading and its event log (prometheus-client's
custom-collector interface), so there is no second copy of any value to drift.

| series | type | labels |
|---|---|---|
| ``openbms_up`` | gauge | 1 when the last reading came, 0 when the board was silent |
| ``openbms_cell_voltage_volts`` | gauge | ``cell`` (1-based) |
| ``openbms_temperature_celsius`` | gauge | ``sensor`` (1-based) |
| ``openbms_pack_voltage_volts``, ``openbms_current_amperes`` (+ charging), ``openbms_soc_ratio`` | gauge | |
| ``openbms_fet_on`` | gauge | ``fet`` (charge, discharge) |
| ``openbms_state`` | gauge, 1 for the current state | ``state`` |
| ``openbms_fault_active`` | gauge | ``fault`` |
| ``openbms_faults_total`` | counter: faults set, as the event log counts them | ``fault`` |
| ``openbms_balancing_cells`` | gauge | |
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from openbms.apps.live import LiveSource

PREFIX = "openbms"


class ReadingCollector(Collector):
    def __init__(self, source: LiveSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        r: dict[str, Any] = self.source.latest().doc
        up = 1 if r.get("ok") else 0
        yield GaugeMetricFamily(f"{PREFIX}_up", "1 when the BMS answered its last reading", value=up)
        _, fault_sets = self.source.events(["fault_set"], None, None)
        faults = Counter(str(e.get("fault")) for e in fault_sets if e.get("fault") is not None)
        total = CounterMetricFamily(f"{PREFIX}_faults", "Faults set since the log began", labels=["fault"])
        for fault, count in sorted(faults.items()):
            total.add_metric([fault], count)
        yield total
        if not r.get("ok"):
            return  # a silent board: no value is current, so none is exported
        yield from _per_index(f"{PREFIX}_cell_voltage_volts", "Cell voltage", "cell", r.get("cell_v"))
        yield from _per_index(f"{PREFIX}_temperature_celsius", "Temperature sensor", "sensor", r.get("temperature_c"))
        for name, doc, key in (
            ("pack_voltage_volts", "Pack voltage", "pack_v"),
            ("current_amperes", "Pack current, positive when charging", "current_a"),
            ("soc_ratio", "State of charge, 0 to 1", "soc"),
        ):
            if r.get(key) is not None:
                yield GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=float(r[key]))
        fets = GaugeMetricFamily(f"{PREFIX}_fet_on", "1 when the FET conducts", labels=["fet"])
        for fet in ("charge", "discharge"):
            if r.get(f"{fet}_fet") is not None:
                fets.add_metric([fet], 1.0 if r[f"{fet}_fet"] else 0.0)
        yield fets
        if r.get("state") is not None:
            state = GaugeMetricFamily(f"{PREFIX}_state", "1 for the BMS's current state", labels=["state"])
            state.add_metric([str(r["state"])], 1.0)
            yield state
        active = GaugeMetricFamily(f"{PREFIX}_fault_active", "1 for each active fault", labels=["fault"])
        for fault in r.get("faults") or []:
            active.add_metric([str(fault)], 1.0)
        yield active
        if r.get("balancing") is not None:
            yield GaugeMetricFamily(f"{PREFIX}_balancing_cells", "Cells being bled", value=len(r["balancing"]))


def _per_index(name: str, doc: str, label: str, values: list[float | None] | None) -> Iterator[Metric]:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for i, value in enumerate(values or [], start=1):
        if value is not None:  # an unreadable tap is left out, never exported as a number
            family.add_metric([str(i)], float(value))
    yield family


def registry_for(source: LiveSource) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReadingCollector(source))
    return registry
