"""The charts of a capacity-search job: each configuration's probe history (SLO margin
against rate, its capacity, boundary and interval) and all configurations on one plot.

Reads what the job wrote (``capacity.json``); the margin is the probe's own (the worst SLO
target's log(measured / limit), <= 0 meets the SLO), never recomputed here.
"""

from __future__ import annotations

import math

from etalon.report.charts import Chart, Series
from etalon.report.run_dir import CapacityDir

BLUE, RED, GREEN, GREY = 0, 1, 2, 8  # colour groups of the chart script's palette


def probes_of(conf: dict) -> list[dict]:
    """A configuration's probes in the order they ran."""
    return list((conf.get("search") or {}).get("probes") or [])


def _margin(probe: dict) -> float | None:
    m = (probe.get("observed") or {}).get("margin")
    return float(m) if isinstance(m, (int, float)) and math.isfinite(m) else None


def _marks(chart: Chart, search: dict, group: int, labels: bool = True) -> None:
    """The interval shaded, boundary and capacity as lines (labelled on one configuration's
    chart; on the overview the colour tells the configuration)."""
    low, high = search.get("interval") or (None, None)
    if low is not None and high is not None:
        chart.vspans.append({"x0": low, "x1": high, "label": "interval", "group": group})
    for key, label in (("capacity_qps", "capacity"), ("boundary_qps", "boundary")):
        if search.get(key) is not None:
            chart.vlines.append({"x": search[key], "label": label if labels else "",
                                 "group": group})


def configuration_chart(name: str, conf: dict, index: int) -> Chart:
    """One configuration: its probes' margins against rate (passes and fails apart), the
    probe order as a path, capacity, boundary and interval marked."""
    chart = Chart(f"probes_{index}", f"{name}: SLO margin against request rate",
                  "request rate (req/s)",
                  "SLO margin (<= 0 meets the SLO)", xlog=True, hlines=[{"y": 0, "label": ""}],
                  note="probes in the order they ran; hard fails (errors, a generator that fell "
                       "behind) have no margin and are listed in the table only")
    probes = [(p["qps"], _margin(p), bool(p.get("passed"))) for p in probes_of(conf)]
    probes = [p for p in probes if p[1] is not None]
    chart.series.append(Series("probe order", [q for q, _, _ in probes], [m for _, m, _ in probes],
                               "line", GREY))
    for verdict, passed, colour in (("pass", True, GREEN), ("fail", False, RED)):
        pts = [(q, m) for q, m, ok in probes if ok == passed]
        if pts:
            chart.series.append(Series(verdict, [q for q, _ in pts], [m for _, m in pts], "points",
                                       colour))
    _marks(chart, conf.get("search") or {}, BLUE)
    return chart


def overview_chart(job: CapacityDir) -> Chart:
    """Every configuration's margin curve (sorted by rate) on one plot."""
    chart = Chart("margins", "SLO margin against request rate, all configurations",
                  "request rate (req/s)", "SLO margin (<= 0 meets the SLO)", xlog=True,
                  hlines=[{"y": 0, "label": ""}], note="shaded: each configuration's interval")
    for i, (name, conf) in enumerate(job.report["configurations"].items()):
        pts = sorted((p["qps"], _margin(p)) for p in probes_of(conf) if _margin(p) is not None)
        chart.series.append(Series(name, [q for q, _ in pts], [m for _, m in pts], "line", i))
        _marks(chart, conf.get("search") or {}, i, labels=False)
    return chart


OVERVIEW = None  # the key of the all-configurations chart in :func:`capacity_charts`


def capacity_charts(job: CapacityDir) -> dict[str | None, Chart]:
    """``{configuration name: its chart, OVERVIEW: all of them}``, charts without data left out
    (a configuration that failed before its first probe)."""
    charts: dict[str | None, Chart] = {OVERVIEW: overview_chart(job)}
    for i, (name, conf) in enumerate(job.report["configurations"].items()):
        charts[name] = configuration_chart(name, conf, i)
    return {k: c for k, c in charts.items() if not c.empty}
