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
(no request has a token after its first), the rate is unbounded and reported as None. The
search judges the midpoints of its next few steps in one walk of the token columns and then
takes those steps, so it lands where plain bisection lands in fewer walks (more steps per walk
as the rows left to walk get fewer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from etalon.metrics.deadlines import Timelines, evaluate_many, min_tbt_deadlines

# A walk of the token columns (``evaluate_many``) costs about COLUMN_COST s per column plus
# TOKEN_COST s per token and deadline judged; up to MAX_LEVELS bisection steps are decided from
# one walk. Tuned on a capacity job's 13 probes of 2,000 requests: 0.65-0.70x the time of one
# step per walk for any COLUMN_COST from 8e-6 to 60e-6
COLUMN_COST = 30e-6
TOKEN_COST = 1e-7
MAX_LEVELS = 5


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
    return fluidities_many(tl, ttft_deadline, np.array([tbt_deadline], dtype=float))[0]


def fluidities_many(tl: Timelines, ttft_deadline: float | None, tbt_deadlines: np.ndarray) -> np.ndarray:
    """:func:`fluidities` at K TBT deadlines from one walk: a ``(K, rows)`` array."""
    on_time, misses, _ = evaluate_many(tl, ttft_deadline, tbt_deadlines)
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
                 percentile: float, settled: "_Settled"):
        self.tl, self.ttft_deadline, self.percentile = tl, ttft_deadline, percentile
        n = len(f_hi)
        k = int(np.floor((n - 1) * percentile / 100.0))
        self.a, self.b = max(k - 1, 0), min(k + 2, n - 1)
        self.f_lo = np.zeros(n)  # fluidity is never below 0
        self.f_hi = f_hi
        self.settled = settled

    def walked(self) -> tuple[np.ndarray, np.ndarray]:
        """``(every row's fluidity bound that stands, the rows a deadline in the bracket must
        walk)``: see the class docstring."""
        above = np.partition(self.f_hi, self.b)[self.b]
        below = np.partition(self.f_lo, self.a)[self.a]
        high = self.f_lo >= above
        return np.where(high, self.f_lo, self.f_hi), np.flatnonzero(~high & (self.f_hi > below))

    def levels(self, rows: np.ndarray, lo: float, hi: float, most: int) -> int:
        """How many bisection steps to decide from one walk of ``rows``: a walk costs about a
        fixed price per token column plus one per token and deadline, and ``L`` steps judge
        ``2**L - 1`` deadlines, so several steps per walk pay where few tokens are walked. The
        rows walked for ``L`` steps are those not settled at its smallest midpoint."""
        cost = []
        for level in range(1, most + 1):
            lengths = self.tl.lengths[rows[self.settled.after[rows] > lo + (hi - lo) / 2 ** level]]
            columns, tokens = (int(lengths.max()), int(lengths.sum())) if len(lengths) else (1, 0)
            cost.append((COLUMN_COST * columns + TOKEN_COST * (2 ** level - 1) * tokens) / level)
        return 1 + int(np.argmin(cost))

    def percentiles_at(self, ds: np.ndarray, f: np.ndarray,
                       rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(percentile at each of ds, the rows' fluidity: (len(ds), rows))`` from
        :meth:`walked`'s bounds ``f`` and ``rows``; every deadline must lie in the bracket.
        Rows settled at the smallest of ``ds`` take their settled value, unwalked."""
        values = np.repeat(self.settled.fluidity[rows][None, :], len(ds), axis=0)
        walk = self.settled.after[rows] > ds.min()
        if walk.any():
            values[:, walk] = _walk(self.tl, self.ttft_deadline, ds, rows[walk])
        at = np.repeat(f[None, :], len(ds), axis=0)
        at[:, rows] = values
        return np.percentile(at, self.percentile, axis=1, method="linear"), values


@dataclass(frozen=True)
class _Settled:
    """Where each row's fluidity stops changing, and its value from there on.

    From ``D_tbt >= max(D_min, first-token lateness)`` a row misses no TBT deadline and a late
    first token costs exactly one miss (``floor(late / D) + 1``), so its fluidity is
    ``on / (on + late)`` with ``on`` its other judged tokens: a deadline at or above ``after``
    need not walk the row. ``after`` carries a margin (relative 1e-6, absolute 1e-9 s) for the
    rounding of a walk's running deadline sums.
    """

    after: np.ndarray
    fluidity: np.ndarray

    @classmethod
    def of(cls, tl: Timelines, ttft_deadline: float | None, min_tbt: np.ndarray) -> "_Settled":
        if len(tl) == 0:
            return cls(np.empty(0), np.empty(0))
        due = tl.t0 + tl.ttft_deadlines(ttft_deadline)
        judged = ~np.isnan(due)
        first = tl.column(0)
        late = judged & (first > np.where(judged, due, np.inf))
        lateness = np.where(late, first - np.where(judged, due, 0.0), 0.0)
        after = np.maximum(min_tbt, lateness) * (1 + 1e-6) + 1e-9
        on = (tl.lengths - 1) + (judged & ~late)
        with np.errstate(invalid="ignore", divide="ignore"):
            fluidity = np.where(on + late > 0, on / (on + late), np.nan)
        return cls(after, fluidity)


def _walk(tl: Timelines, ttft_deadline: float | None, ds: np.ndarray,
          rows: np.ndarray) -> np.ndarray:
    """Fluidity of ``rows`` at each of ``ds``: ``(len(ds), len(rows))``."""
    if 2 * len(rows) > len(tl):  # gathering most rows costs more than walking them all
        return fluidities_many(tl, ttft_deadline, ds)[:, rows]
    return fluidities_many(tl.subset(rows), ttft_deadline, ds)


def _midpoints(lo: float, hi: float, levels: int) -> np.ndarray:
    """Every midpoint the next ``levels`` bisection steps from ``[lo, hi]`` can visit, ascending
    (an in-order walk of the tree of brackets: the root, bisection's next midpoint, sits at
    ``2**(levels - 1) - 1``), each computed as bisection computes it."""
    if levels == 0:
        return np.empty(0)
    mid = 0.5 * (lo + hi)
    return np.concatenate([_midpoints(lo, mid, levels - 1), [mid], _midpoints(mid, hi, levels - 1)])


def fluid_token_rate(
    tl: Timelines,
    ttft_deadline: float | None,
    *,
    min_fluidity: float = 0.9,
    percentile: float = 1.0,
    rel_tol: float = 1e-4,
    max_iter: int = 64,
    min_tbt: np.ndarray | None = None,
) -> FluidRate:
    """Bisects D_tbt for the fluid token generation rate of the requests in ``tl``
    (``min_tbt``: their :func:`min_tbt_deadlines`, when the caller has them)."""

    def result(rate: float | None, d: float | None, ok: bool, note: str | None) -> FluidRate:
        return FluidRate(rate, d, ok, min_fluidity, percentile, note)

    if len(tl) == 0:
        return result(None, None, False, "no successful request streamed a token")

    # Rows without any deadline (one token, no TTFT deadline) have no fluidity at any D_tbt.
    counted = (tl.lengths > 1) | ~np.isnan(tl.ttft_deadlines(ttft_deadline))
    if not counted.all():
        tl = tl.subset(np.flatnonzero(counted))
        min_tbt = min_tbt[counted] if min_tbt is not None else None
    if min_tbt is None:
        min_tbt = min_tbt_deadlines(tl, ttft_deadline)
    hi = float(min_tbt.max()) if len(tl) else 0.0
    due = tl.t0 + tl.ttft_deadlines(ttft_deadline)
    lateness = (tl.column(0) - due)[~np.isnan(due)] if len(tl) else np.empty(0)
    if lateness.size:
        hi = max(hi, float(lateness.max()))
    hi = hi * (1 + 1e-9) + 1e-12  # strictly above every bound, never zero
    settled = _Settled.of(tl, ttft_deadline, min_tbt)
    f_hi = settled.fluidity.copy()  # where a row has settled by hi (most do: the rest walk)
    unsettled = np.flatnonzero(settled.after > hi)
    if len(unsettled):
        f_hi[unsettled] = _walk(tl, ttft_deadline, np.array([hi]), unsettled)[0]
    if len(tl) and np.percentile(f_hi, percentile, method="linear") < min_fluidity:
        return result(None, None, False,
                      f"fewer than {100 - percentile:g}% of requests reach fluidity "
                      f"{min_fluidity:g} at any TBT deadline (first tokens miss D_ttft)")
    bracket = _Bracket(tl, ttft_deadline, f_hi, percentile, settled) if len(tl) else None
    lo, steps = 0.0, 0
    while steps < max_iter and not hi - lo <= rel_tol * hi:
        if bracket is None:  # nothing is judged: every deadline passes
            hi, steps = 0.5 * (lo + hi), steps + 1
            continue
        # the steps bisection takes next, decided from one walk: every midpoint they can visit
        # is judged at once, then the search descends through them as bisection would
        f, rows = bracket.walked()
        points = _midpoints(lo, hi, bracket.levels(rows, lo, hi, min(MAX_LEVELS, max_iter - steps)))
        values_at, values = bracket.percentiles_at(points, f, rows)
        first, end = 0, len(points)  # the points inside the current bracket
        lo_at = hi_at = None
        while first < end and not hi - lo <= rel_tol * hi:
            at = (first + end) // 2  # = 0.5 * (lo + hi), computed the same way
            if values_at[at] >= min_fluidity:
                hi, hi_at, end = float(points[at]), at, at
            else:
                lo, lo_at, first = float(points[at]), at, at + 1
            steps += 1
        if hi_at is not None:
            bracket.f_hi[rows] = values[hi_at]
        if lo_at is not None:
            bracket.f_lo[rows] = values[lo_at]
    if lo == 0.0:
        return result(None, hi, True, "unbounded: every tested TBT deadline passed")
    return result(1.0 / hi, hi, True, None)
