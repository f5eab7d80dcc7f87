"""Fluid token generation rate: the fastest per-user token rate most requests keep up with.

It is the largest ``r = 1 / D_tbt`` (tokens/s per request) such that the ``percentile``-th
percentile (default 1, i.e. 99% of requests) of the per-request fluidity index is at least
``min_fluidity`` (default 0.9), with D_ttft fixed (each request's own where its record has one,
else the run-wide one). Fluidity is non-decreasing in D_tbt (proof in
:mod:`etalon.metrics.deadlines`), so the smallest passing D_tbt is found by bisection.

Search range: above ``D_hi = max(max D_min, max first-token lateness)`` no TBT deadline is
missed and a late first token is charged exactly one miss, so fluidity stops changing; if the
criterion fails there it fails for every D_tbt (``attainable = False``, e.g. when many short
requests miss D_ttft). Bisection keeps ``lo`` failing and ``hi`` passing until ``hi - lo <=
rel_tol * hi`` and reports ``1 / hi`` (a rate that is known to pass). If even tiny D_tbt pass
(no request has a token after its first), the rate is unbounded and reported as None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from etalon.metrics.deadlines import Timelines, evaluate_timelines, min_tbt_deadlines


@dataclass(frozen=True)
class FluidRate:
    """Result of the search; ``tokens_per_s`` is None when unattainable, unbounded or no data."""

    tokens_per_s: float | None
    tbt_deadline_s: float | None
    attainable: bool
    min_fluidity: float
    percentile: float
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def fluidities(tl: Timelines, ttft_deadline: float | None, tbt_deadline: float) -> np.ndarray:
    """Per-row fluidity index at ``tbt_deadline``; NaN for rows with no deadline at all."""
    on_time, misses, _ = evaluate_timelines(tl, ttft_deadline, tbt_deadline)
    total = on_time + misses
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, on_time / total, np.nan)


def fluidity_percentile(tl: Timelines, ttft_deadline: float | None, tbt_deadline: float,
                        percentile: float) -> float:
    """The ``percentile``-th percentile (linear) of per-request fluidity index at ``tbt_deadline``."""
    fluidity = fluidities(tl, ttft_deadline, tbt_deadline)
    fluidity = fluidity[~np.isnan(fluidity)]
    if not fluidity.size:
        return 1.0
    return float(np.percentile(fluidity, percentile, method="linear"))


class _Bracket:
    """Per-row fluidity bounds over a bracket ``[lo, hi]`` of TBT deadlines, to test a deadline
    between them on only the rows that can still move the percentile.

    Fluidity is non-decreasing in D_tbt, so for D in the bracket each row lies between its value
    at ``lo`` (``f_lo``) and at ``hi`` (``f_hi``). A linear percentile reads two adjacent order
    statistics, ranks ``k`` and ``k + 1``; ``a <= k`` and ``b >= k + 1`` widen that by one rank
    each way against rounding. Replacing values at or above the rank-``b`` statistic by smaller
    ones still at or above it (a row with ``f_lo >= order_b(f_hi)``: its ``f_lo``), and values at
    or below rank ``a`` by larger ones still at or below it (``f_hi <= order_a(f_lo)``: its
    ``f_hi``), leaves every order statistic from ``a`` to ``b`` as it was. So the percentile at
    D is exact while only the other rows are walked; as the bracket narrows, few are left.
    """

    def __init__(self, tl: Timelines, ttft_deadline: float | None, f_hi: np.ndarray,
                 percentile: float):
        self.tl, self.ttft_deadline, self.percentile = tl, ttft_deadline, percentile
        n = len(f_hi)
        k = int(np.floor((n - 1) * percentile / 100.0))
        self.a, self.b = max(k - 1, 0), min(k + 2, n - 1)
        self.f_lo = np.zeros(n)  # fluidity is never below 0
        self.f_hi = f_hi

    def percentile_at(self, d: float) -> tuple[float, np.ndarray, np.ndarray]:
        """``(percentile at d, rows walked, their fluidity)``."""
        above = np.partition(self.f_hi, self.b)[self.b]
        below = np.partition(self.f_lo, self.a)[self.a]
        high = self.f_lo >= above
        f = np.where(high, self.f_lo, self.f_hi)
        rows = np.flatnonzero(~high & (self.f_hi > below))
        if 2 * len(rows) > len(f):  # gathering most rows costs more than walking them all
            values = fluidities(self.tl, self.ttft_deadline, d)[rows]
        else:
            values = fluidities(self.tl.subset(rows), self.ttft_deadline, d)
        f[rows] = values
        return float(np.percentile(f, self.percentile, method="linear")), rows, values


def fluid_token_rate(
    tl: Timelines,
    ttft_deadline: float | None,
    *,
    min_fluidity: float = 0.9,
    percentile: float = 1.0,
    rel_tol: float = 1e-4,
    max_iter: int = 64,
) -> FluidRate:
    """Bisects D_tbt for the fluid token generation rate of the requests in ``tl``."""

    def result(rate: float | None, d: float | None, ok: bool, note: str | None) -> FluidRate:
        return FluidRate(rate, d, ok, min_fluidity, percentile, note)

    if len(tl) == 0:
        return result(None, None, False, "no successful request streamed a token")

    # Rows without any deadline (one token, no TTFT deadline) have no fluidity at any D_tbt.
    counted = (tl.lengths > 1) | ~np.isnan(tl.ttft_deadlines(ttft_deadline))
    if not counted.all():
        tl = tl.subset(np.flatnonzero(counted))
    hi = float(min_tbt_deadlines(tl, ttft_deadline).max()) if len(tl) else 0.0
    due = tl.t0 + tl.ttft_deadlines(ttft_deadline)
    lateness = (tl.column(0) - due)[~np.isnan(due)] if len(tl) else np.empty(0)
    if lateness.size:
        hi = max(hi, float(lateness.max()))
    hi = hi * (1 + 1e-9) + 1e-12  # strictly above every bound, never zero
    f_hi = fluidities(tl, ttft_deadline, hi)
    if len(tl) and np.percentile(f_hi, percentile, method="linear") < min_fluidity:
        return result(None, None, False,
                      f"fewer than {100 - percentile:g}% of requests reach fluidity "
                      f"{min_fluidity:g} at any TBT deadline (first tokens miss D_ttft)")
    bracket = _Bracket(tl, ttft_deadline, f_hi, percentile) if len(tl) else None
    lo = 0.0
    for _ in range(max_iter):
        if hi - lo <= rel_tol * hi:
            break
        mid = 0.5 * (lo + hi)
        if bracket is None:  # nothing is judged: every deadline passes
            hi = mid
            continue
        value, rows, values = bracket.percentile_at(mid)
        if value >= min_fluidity:
            hi = mid
            bracket.f_hi[rows] = values
        else:
            lo = mid
            bracket.f_lo[rows] = values
    if lo == 0.0:
        return result(None, hi, True, "unbounded: every tested TBT deadline passed")
    return result(1.0 / hi, hi, True, None)
