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


def fluidity_percentile(tl: Timelines, ttft_deadline: float | None, tbt_deadline: float,
                        percentile: float) -> float:
    """The ``percentile``-th percentile (linear) of per-request fluidity index at ``tbt_deadline``."""
    on_time, misses, _ = evaluate_timelines(tl, ttft_deadline, tbt_deadline)
    total = on_time + misses
    counted = total > 0
    if not counted.any():
        return 1.0
    fluidity = on_time[counted] / total[counted]
    return float(np.percentile(fluidity, percentile, method="linear"))


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

    def passes(d: float) -> bool:
        return fluidity_percentile(tl, ttft_deadline, d, percentile) >= min_fluidity

    hi = float(min_tbt_deadlines(tl, ttft_deadline).max())
    due = tl.t0 + tl.ttft_deadlines(ttft_deadline)
    lateness = (tl.column(0) - due)[~np.isnan(due)]  # rows with a TTFT deadline
    if lateness.size:
        hi = max(hi, float(lateness.max()))
    hi = hi * (1 + 1e-9) + 1e-12  # strictly above every bound, never zero
    if not passes(hi):
        return result(None, None, False,
                      f"fewer than {100 - percentile:g}% of requests reach fluidity "
                      f"{min_fluidity:g} at any TBT deadline (first tokens miss D_ttft)")
    lo = 0.0
    for _ in range(max_iter):
        if hi - lo <= rel_tol * hi:
            break
        mid = 0.5 * (lo + hi)
        if passes(mid):
            hi = mid
        else:
            lo = mid
    if lo == 0.0:
        return result(None, hi, True, "unbounded: every tested TBT deadline passed")
    return result(1.0 / hi, hi, True, None)
