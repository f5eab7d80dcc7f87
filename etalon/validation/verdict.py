"""What the validation holds: TTFT and TBT p50/p90 within the tolerance, while the engine kept its speed;
with prefix caching, the simulated hit rate within 5 points of vLLM's own counters.

Shared by the table (:mod:`etalon.validation.render`) and the real-engine test, so the doc
reports exactly what the test asserts.
"""

from __future__ import annotations

CHECKED_METRICS = ("ttft", "tbt")
CHECKED_PERCENTILES = (50, 90)
HIT_RATE_TOLERANCE = 0.05  # absolute: 5 percentage points of the prefix-cache hit rate


def checked_rows(rows: list[dict]) -> list[dict]:
    """The rows of an ``etalon.validate`` model the test holds: TTFT and TBT p50 and p90."""
    return [r for r in rows if r["metric"] in CHECKED_METRICS and r["percentile"] in CHECKED_PERCENTILES]


def worst_error(rows: list[dict]) -> float:
    """The largest |relative error| over the checked rows."""
    return max(abs(r["relative_error"]) for r in checked_rows(rows))


def drift(before: dict[str, float], after: dict[str, float]) -> float:
    """The larger relative change of the engine's speed between two anchors (per section)."""
    return max(abs(after[k] / before[k] - 1) for k in before)


def hit_rate(report: dict, model: str = "profiled") -> dict | None:
    """The prefix-cache hit rate row of an ``etalon.validate`` report (``measured_mean``,
    ``predicted_mean``, ``difference``: fractions), None when either side has none."""
    for row in (report.get("server_state") or {}).get(model) or []:
        if row["series"] == "prefix_cache_hit_rate":
            return row
    return None
