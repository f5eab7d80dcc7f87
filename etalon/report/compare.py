"""The validation view: key numbers of several runs side by side, each relative to the first
run (predicted vs measured when one is a simulation of the other).

Values come straight from each run's ``summary.json``; the relative difference of run k is
``(value_k - value_1) / value_1`` (None when the first run has no value or it is 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# (summary section, metric, statistic, label, scale to the shown unit, unit)
KEY_NUMBERS: tuple[tuple[str, str, str, str, float, str], ...] = (
    *(("latency", m, p, f"{label} {p}", 1e3, "ms")
      for m, label in (("ttft", "TTFT"), ("tbt", "TBT"), ("e2e_latency", "E2E"))
      for p in ("p50", "p90", "p99")),
    ("latency", "tpot", "p50", "TPOT p50", 1e3, "ms"),
    ("latency", "dispatch_lag", "p99", "dispatch lag p99", 1e3, "ms"),
    ("throughput", "output_tokens_per_s", "", "output tokens/s", 1.0, "1/s"),
    ("throughput", "requests_per_s", "", "completed requests/s", 1.0, "1/s"),
    ("deadlines", "mean_miss_rate", "", "mean deadline miss rate", 1.0, ""),
)


def key_number(summary: dict, section: str, metric: str, stat: str) -> float | None:
    """One number of a summary, None when it is missing."""
    value = (summary.get(section) or {}).get(metric)
    if stat:
        value = (value or {}).get(stat) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def relative_difference(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return (value - reference) / reference


@dataclass
class ComparisonRow:
    label: str
    unit: str
    values: list[float | None] = field(default_factory=list)  # in the shown unit
    relative: list[float | None] = field(default_factory=list)  # against the first run

    def to_dict(self) -> dict:
        return {"label": self.label, "unit": self.unit, "values": self.values,
                "relative": self.relative}


def compare(summaries: list[dict]) -> list[ComparisonRow]:
    """One row per key number that at least one run has."""
    rows = []
    for section, metric, stat, label, scale, unit in KEY_NUMBERS:
        raw = [key_number(s, section, metric, stat) for s in summaries]
        if all(v is None for v in raw):
            continue
        rows.append(ComparisonRow(label, unit, [None if v is None else v * scale for v in raw],
                                  [relative_difference(v, raw[0]) for v in raw]))
    return rows
