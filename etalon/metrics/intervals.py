"""Intervals of a prediction from its replicas, and whether measured values fall inside them.

A *replica* is one more draw of what is predicted: the latency percentiles of one simulation
with a bootstrap refit of the profile and/or another workload seed
(``etalon.simulator.intervals``), or of one more live run of the same workload
(``run_benchmark --num-repeats``). The interval at level ``L`` is a prediction interval for one
more such draw — the measured run is one:

- with enough replicas, by order statistics: for ``n`` exchangeable draws and a new one,
  ``P(v(i) <= new <= v(n+1-i)) = (n + 1 - 2 i) / (n + 1)`` exactly, whatever the distribution;
  ``i`` is the largest that keeps that at least ``L`` (``n = 19`` or 20 at 90 %: the smallest
  and largest replica);
- with fewer (``(n - 1) / (n + 1) < L``), by the normal approximation: ``mean ± t(n-1) · sd ·
  sqrt(1 + 1/n)``, the interval that holds a new draw of a normal variable with probability
  ``L`` given ``n`` draws.

``method`` says which; ``level`` is the coverage the interval claims (order statistics may give a
little more than asked). Units are those of the values (seconds here). ``IntervalConfig`` holds
the ``--intervals`` settings ``simulate`` and ``validate`` share.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

from etalon.cli_errors import UserError
from etalon.metrics.latency import latency_series
from etalon.options import option

#: the latency metrics and percentiles a prediction's interval is given for
METRICS = ("ttft", "tbt", "e2e_latency")
PERCENTILES = (50, 90, 99)


def latency_percentiles(records) -> dict[str, dict[int, float | None]]:
    """``{metric: {percentile: seconds}}`` over completed requests (None when there are none)."""
    series = latency_series(records)
    out = {}
    for m in METRICS:
        values = series[m].values
        out[m] = {q: (float(np.percentile(values, q)) if len(values) else None) for q in PERCENTILES}
    return out


#: what a prediction's replicas may vary (``etalon.simulator.intervals``)
SOURCES = ("both", "fit", "workload")


@dataclass
class IntervalConfig:
    """How many replicas a prediction's interval is drawn from, and of what."""

    intervals: int = option(0, "also give each latency percentile an interval from N replicas of "
                               "the prediction (bootstrap refits of the profile's measurements "
                               "and fresh workload seeds; 20 gives 90 %; 0: none)", metavar="N")
    interval_level: float = option(0.9, "coverage the intervals aim at (a fraction)")
    interval_seed: int = option(0, "seed of the bootstrap draws (same seed, same replicas)")
    interval_sources: str = option("both", "what the replicas vary: the profile's fit, the "
                                           "workload's seed, or both", choices=SOURCES)

    def validate(self) -> IntervalConfig:
        if self.intervals < 0 or self.intervals == 1:
            raise UserError(f"--intervals must be 0 (none) or >= 2 replicas, got {self.intervals}")
        check_level(self.interval_level)
        if self.interval_sources not in SOURCES:
            raise UserError(f"--interval-sources: unknown {self.interval_sources!r}; valid: "
                            f"{', '.join(SOURCES)}")
        return self

    @property
    def wanted(self) -> set[str]:
        return {"fit", "workload"} if self.interval_sources == "both" else {self.interval_sources}


@dataclass(frozen=True)
class Interval:
    """A prediction interval for one more draw; ``point`` is the prediction it goes with."""

    low: float
    high: float
    level: float  # the coverage it claims
    method: str  # "order statistics" or "normal"
    replicas: int
    mean: float
    sd: float
    point: float | None = None

    def contains(self, value: float | None) -> bool | None:
        return None if value is None else bool(self.low <= value <= self.high)

    def to_dict(self) -> dict:
        return asdict(self)


def check_level(level: float, where: str = "--interval-level") -> float:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise UserError(f"{where} must be a fraction in (0, 1), got {level}")
    return float(level)


def prediction_interval(values: Iterable[float | None], level: float = 0.9,
                        point: float | None = None) -> Interval | None:
    """The interval for one more draw like ``values`` (see the module docstring); None with
    fewer than 2 finite values."""
    check_level(level, "interval level")
    v = np.sort(np.asarray([np.nan if x is None else x for x in values], dtype=float))
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 2:
        return None
    mean, sd = float(v.mean()), float(v.std(ddof=1))
    i = math.floor((n + 1) * (1 - level) / 2 + 1e-9)  # 1-based rank of the low end
    if i >= 1:
        return Interval(float(v[i - 1]), float(v[n - i]), (n + 1 - 2 * i) / (n + 1),
                        "order statistics", n, mean, sd, point)
    from scipy.stats import t

    half = float(t.ppf((1 + level) / 2, n - 1)) * sd * math.sqrt(1 + 1 / n)
    return Interval(mean - half, mean + half, level, "normal", n, mean, sd, point)


def percentile_intervals(point: dict, replicas: Sequence[dict], level: float
                         ) -> dict[str, dict[int, Interval | None]]:
    """``{metric: {percentile: Interval}}`` of ``latency_percentiles``-shaped replicas."""
    return {m: {q: prediction_interval([r[m][q] for r in replicas], level,
                                       point[m][q] if point else None)
                for q in PERCENTILES} for m in METRICS}


def intervals_to_dict(intervals: dict[str, dict[int, Interval | None]]) -> dict:
    """JSON-able: ``{metric: {"p50": {...}, ...}}``."""
    return {m: {f"p{q}": (iv.to_dict() if iv is not None else None) for q, iv in per.items()}
            for m, per in intervals.items()}


def coverage(inside: Iterable[bool | None]) -> dict:
    """How many measured values fell inside their intervals: ``{"inside", "checked",
    "fraction"}`` (``fraction`` None when nothing was checked)."""
    flags = [x for x in inside if x is not None]
    return {"inside": int(sum(flags)), "checked": len(flags),
            "fraction": (sum(flags) / len(flags)) if flags else None}


def format_intervals(intervals: dict[str, dict[int, Interval | None]], title: str) -> str:
    """A console table: each metric and percentile with its prediction and interval, in ms."""
    first = next((iv for per in intervals.values() for iv in per.values() if iv is not None), None)
    if first is None:
        return f"{title}: no interval (fewer than 2 replicas with values)"
    predicted = first.point is not None  # else the replicas' mean (repeated live runs)
    lines = [f"{title}: {first.level:.0%} interval over {first.replicas} replicas "
             f"({first.method})",
             f"{'metric':<12} {'pct':>4} {'predicted ms' if predicted else 'mean ms':>13} "
             f"{'interval ms':>22}"]
    for m, per in intervals.items():
        for q, iv in per.items():
            if iv is None:
                lines.append(f"{m:<12} p{q:<3} {'n/a':>13}")
                continue
            value = iv.point if predicted else iv.mean
            point = f"{value * 1e3:.1f}" if value is not None else "n/a"
            lines.append(f"{m:<12} p{q:<3} {point:>13} "
                         f"{f'[{iv.low * 1e3:.1f}, {iv.high * 1e3:.1f}]':>22}")
    return "\n".join(lines)
