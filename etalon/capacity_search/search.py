"""Finds the highest request rate that meets an SLO in few probes, and says how sure it is.

Each probe is a whole benchmark or simulation, so probes are placed by what they measured, not
only by pass/fail. A probe's ``observed["margin"]`` (see :meth:`SLO.check`) is <= 0 when it met
the SLO and roughly linear in log(rate) near the boundary; ``observed["hard_fail"]`` marks a
failure whose margin means nothing (errors, a load generator that fell behind).

1. *Expand* from ``start_qps``: double (halve), or once two probes on that side carry margins,
   extrapolate the margin curve to its crossing; at most x4 per step, within min/max_qps.
2. *Narrow* the bracket (highest pass, lowest fail) by regula falsi on margin against log(rate)
   with the Illinois modification, blended with the secant beyond one end where there is one.
   Each probe goes a little past the predicted crossing, so that it replaces the far end of the
   bracket, or where one more probe closes it. A bisection step (in log rate) takes over after
   two mispredictions in a row or where the curve has a flat stretch (a step); an end without a
   margin (pass/fail-only probes, hard fails) gives plain bisection, exactly the old search.
3. *Confirm* (``repeats_near_boundary > 1``): the final ends run again, up to that many runs
   each, fewer once an end's repeats come back identical (a deterministic probe) or its mean
   margin is clear of the noise measured so far. A
   rate's verdict is its median margin (the majority without margins); a flipped verdict
   reopens the search. The noise seen sets the reported interval.

The only assumption is monotonicity: more load never helps. Deterministic given its probes (a
resumed job replays the same path). Rates are req/s; "log" is the natural log.

A concurrency search (closed-loop users) runs the same algorithm over whole numbers of users
(``integer``): each placed level is rounded into the open bracket, and the search also stops
when the bracket's ends are neighbours. Fields named ``qps`` then hold users.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from etalon.cli_errors import UserError

MAX_STEP = math.log(4.0)  # largest expansion step (log rate)
PRIOR_SLOPE = 1.0  # d margin / d log rate assumed from a single probe (a queue at 50 % load)
CLOSE = 0.98  # a closing probe sits this fraction of the stop width from the kept end
GAP = 0.5  # a probe's distance past the predicted crossing, in stop widths ...
GAP_MIN = 0.2  # ... at least this much when trying to close the bracket in one probe; when the
ERR_MIN = 0.1  # prediction's error is estimated, that error (at least ERR_MIN, at most GAP) instead
FLAT = 0.125  # a side whose slope is below this fraction of the chord's is a flat stretch
WIDE, EDGE = 4.0, 0.125  # in a bracket wider than WIDE stop widths, a chord crossing more than a
# stop width but less than EDGE of the width from an end is distrusted (a far end's saturated margin)
SLOPE_POINTS = 4  # rates nearest the crossing that the slope (sharpness) is fitted to
# Two-sided 95 % Student t quantiles by degrees of freedom (the last is the normal limit).
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 10: 2.23,
        15: 2.13, 20: 2.09, 30: 2.04}


@dataclass
class Probe:
    qps: float
    passed: bool
    observed: dict
    output_dir: str | None = None


@dataclass
class SearchResult:
    capacity_qps: float | None  # highest passing rate below the lowest failing one; None if none
    bracket: tuple[float | None, float | None]  # (highest pass, lowest fail)
    probes: list[Probe] = field(default_factory=list)
    note: str | None = None
    # Where the true boundary lies given the bracket and the margin noise seen in repeats (95 %);
    # the bracket itself when no noise was measured; None for an unbounded side.
    interval: tuple[float | None, float | None] = (None, None)
    boundary_qps: float | None = None  # where the margin interpolated between the ends crosses 0
    sharpness: float | None = None  # d margin / d log(rate) near the crossing
    margin_noise: float | None = None  # pooled SD of a probe's margin from repeats; None: unmeasured

    @property
    def num_probes(self) -> int:
        return len(self.probes)

    def to_dict(self) -> dict:
        return {"capacity_qps": self.capacity_qps, "bracket": list(self.bracket),
                "interval": list(self.interval), "boundary_qps": self.boundary_qps,
                "sharpness": self.sharpness, "margin_noise": self.margin_noise,
                "num_probes": self.num_probes, "note": self.note,
                "probes": [asdict(p) for p in self.probes]}


@dataclass
class SearchSettings:
    start_qps: float = 1.0
    max_qps: float = 1024.0
    min_qps: float = 0.01
    tolerance: float = 0.05  # stop when (fail - pass) / fail <= tolerance
    max_probes: int = 16
    # Runs of each final bracket end, repeats included. 1 (no repeats) spends the fewest probes
    # and suits a reproducible probe (the simulator); 3 keeps one unlucky run of a noisy live
    # server from moving the answer (benchmarks/capacity_search_probes.py: the interval then
    # holds the true boundary in ~95 % of noisy searches instead of ~40 %, for ~4 more probes).
    repeats_near_boundary: int = 1
    # A concurrency search (closed-loop users) starts at start_users and stops at max_users.
    start_users: int = 1
    max_users: int = 256
    integer: bool = False  # levels are whole numbers (users): set by for_users(), not by a job
    # Error bars of a simulated configuration's capacity (etalon.capacity_search.intervals): the
    # search run again this many times, each with a bootstrap replica of the deployment's
    # profile and another workload seed (0: none; not used by the search itself)
    intervals: int = 0
    interval_level: float = 0.9
    interval_seed: int = 0

    def for_users(self) -> "SearchSettings":
        """The settings of a concurrency search: whole numbers of users, from 1 to max_users."""
        return replace(self, start_qps=float(self.start_users), min_qps=1.0,
                       max_qps=float(self.max_users), integer=True)

    def validate(self, where: str = "search") -> "SearchSettings":
        if not 0 < self.min_qps <= self.start_qps <= self.max_qps:
            raise UserError(f"{where}: need 0 < min_qps <= start_qps <= max_qps")
        if not 0 < self.tolerance < 1 or self.max_probes < 1:
            raise UserError(f"{where}: tolerance must be in (0, 1) and max_probes >= 1")
        if not isinstance(self.repeats_near_boundary, int) or self.repeats_near_boundary < 1:
            raise UserError(f"{where}: repeats_near_boundary must be an integer >= 1")
        for name in ("start_users", "max_users"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{where}: {name} must be an integer >= 1")
        if self.start_users > self.max_users:
            raise UserError(f"{where}: need start_users <= max_users")
        if not isinstance(self.intervals, int) or self.intervals < 0 or self.intervals == 1:
            raise UserError(f"{where}: intervals must be 0 (none) or an integer >= 2")
        if not 0 < self.interval_level < 1:
            raise UserError(f"{where}: interval_level must be a fraction in (0, 1)")
        return self


def usable_margin(p: Probe) -> float | None:
    """The probe's margin if interpolation may use it: a finite number, no hard failure, and a
    sign that agrees with the verdict; otherwise None."""
    obs = p.observed if isinstance(p.observed, dict) else {}
    m = obs.get("margin")
    if obs.get("hard_fail") or isinstance(m, bool) or not isinstance(m, (int, float)):
        return None
    if not math.isfinite(m) or (m <= 0) != bool(p.passed):
        return None
    return float(m)


@dataclass
class _Rate:
    """Every run at one rate, judged together."""
    qps: float
    runs: list[Probe] = field(default_factory=list)

    @property
    def x(self) -> float:
        return math.log(self.qps)

    @property
    def margins(self) -> list[float] | None:
        """Every run's margin, or None when any run lacks a usable one."""
        out = [usable_margin(p) for p in self.runs]
        return None if any(m is None for m in out) else out

    @property
    def margin(self) -> float | None:
        ms = self.margins
        return float(np.median(ms)) if ms else None

    @property
    def passed(self) -> bool:
        m = self.margin
        if m is not None:
            return m <= 0
        return 2 * sum(bool(p.passed) for p in self.runs) > len(self.runs)  # a tie fails


def _bracket(rates: dict[float, _Rate]) -> tuple[_Rate | None, _Rate | None]:
    """(highest pass below the lowest fail, lowest fail); a pass above a fail is outvoted."""
    fails = [r for r in rates.values() if not r.passed]
    hi = min(fails, key=lambda r: r.qps) if fails else None
    passes = [r for r in rates.values() if r.passed and (hi is None or r.qps < hi.qps)]
    return (max(passes, key=lambda r: r.qps) if passes else None), hi


def _place(a: float, b: float, r: float, w: float, err: float | None = None) -> float:
    """Where to probe in the bracket (a, b) of log rates (an open side is +-inf), given the
    predicted crossing r, its likely error err (None: unknown) and the stop width w: past r by
    about err, so the probe replaces the far end, or where one probe closes the bracket if the
    prediction holds with that much room."""
    if b - a < 2 * CLOSE * w:  # either verdict closes it: probe as far from r as that allows
        lo_pick, hi_pick = b - CLOSE * w, a + CLOSE * w
        return lo_pick if r - lo_pick >= hi_pick - r else hi_pick
    room, gap = (GAP_MIN * w, GAP * w) if err is None else (min(max(err, ERR_MIN * w), GAP * w),) * 2
    if r - a >= b - r:  # crossing nearer b: probe below it, expecting a pass
        close = b - CLOSE * w
        return close if close <= r - room else r - gap
    close = a + CLOSE * w
    return close if close >= r + room else r + gap


def _secant_root(p1: _Rate, p2: _Rate) -> float | None:
    """Where the line through two rates' margins crosses 0 (log rate), if it rises."""
    m1, m2 = p1.margin, p2.margin
    if m1 is None or m2 is None or p1.qps == p2.qps:
        return None
    slope = (m2 - m1) / (p2.x - p1.x)
    return p2.x - m2 / slope if slope > 0 else None


class _Narrowing:
    """Regula falsi (Illinois) inside the bracket, with bisection as the safeguard."""

    def __init__(self) -> None:
        self.ends: tuple[float, float] | None = None
        self.moved: str | None = None  # which end the last probe replaced
        self.streak = 0  # how many times in a row it did
        self.expected: bool | None = None  # the verdict the last probe was placed to get
        self.surprises = 0  # verdicts in a row that the prediction got wrong

    def _update(self, lo: _Rate, hi: _Rate) -> None:
        if self.ends is not None and (lo.qps, hi.qps) != self.ends:
            side = "lo" if hi.qps == self.ends[1] else "hi" if lo.qps == self.ends[0] else None
            self.streak = self.streak + 1 if side is not None and side == self.moved else 1
            self.moved = side
            if side is None:  # both moved (a repeat flipped a verdict): start afresh
                self.streak, self.surprises = 0, 0
            elif self.expected is not None:
                self.surprises = self.surprises + 1 if (side == "lo") != self.expected else 0
        self.ends = (lo.qps, hi.qps)
        self.expected = None

    def next(self, lo: _Rate, hi: _Rate, rates: dict[float, _Rate], w: float) -> float:
        self._update(lo, hi)
        ma, mb = lo.margin, hi.margin
        a, b = lo.x, hi.x
        if ma is None and mb is None:
            return (lo.qps + hi.qps) / 2  # pass/fail only: plain bisection
        if ma is None or mb is None:  # a hard fail (no usable margin) at one end: the bracket
            return math.exp((a + b) / 2)  # is often wide after a x4 step, so halve it in log
        if self.surprises >= 2:  # the predictions keep missing: bisect, then try them again
            self.surprises = 0
            return math.exp((a + b) / 2)
        # Illinois: an end kept twice in a row counts half as much each further time.
        fade = 0.5 ** max(0, self.streak - 1)
        fa = ma * fade if self.moved == "hi" else ma
        fb = mb * fade if self.moved == "lo" else mb
        r, err = _predict(lo, hi, rates, fa, fb, w)
        if r is None:
            return math.exp((a + b) / 2)
        p = min(max(_place(a, b, r, w, err), a + 1e-9), b - 1e-9)
        self.expected = p < r
        return math.exp(p)


def _neighbour(rates: dict[float, _Rate], end: _Rate) -> _Rate | None:
    """The nearest rate beyond a bracket end, on its side, with the same verdict and a margin."""
    beyond = [r for r in rates.values() if r.margin is not None and r.passed == end.passed
              and (r.qps < end.qps if end.passed else r.qps > end.qps)]
    return min(beyond, key=lambda r: abs(r.x - end.x), default=None)


def _predict(lo: _Rate, hi: _Rate, rates: dict[float, _Rate], fa: float, fb: float,
             w: float) -> tuple[float | None, float | None]:
    """The predicted crossing (log rate) in the bracket and its likely error (None: unknown), or
    ``(None, None)`` where a bisection is safer.

    The chord (regula falsi on the weighted end margins fa, fb) and the secant through an end and
    its neighbour beyond it err to opposite sides on a curved margin (for a convex one: chord
    low, secant high). Each line's error grows with the distance from the crossing to its other
    node, so they are blended by those distances, which makes the blend close to the crossing of
    a parabola through the three points; half their disagreement is its likely error. A side
    flat next to the chord means the rise is a step somewhere inside: bisect. So does a wide
    bracket whose chord crossing (with no secant to check it) hugs an end."""
    a, b = lo.x, hi.x
    r = a + (b - a) * (-fa) / (fb - fa) if fb > fa else (a + b) / 2
    chord = (hi.margin - lo.margin) / (b - a)
    best = None  # (the secant's error scale, its crossing, the chord's error scale)
    for end, other in ((lo, hi), (hi, lo)):
        far = _neighbour(rates, end)
        if far is None:
            continue
        slope = (far.margin - end.margin) / (far.x - end.x)
        if slope <= FLAT * chord:
            return None, None
        cand = (abs(r - far.x), min(max(end.x - end.margin / slope, a), b), abs(r - other.x))
        best = cand if best is None or cand[0] < best[0] else best
    if best is not None:
        e_side, r_side, e_chord = best
        return (r * e_side + r_side * e_chord) / (e_side + e_chord), abs(r - r_side) / 2
    if b - a >= WIDE * w and min(r - a, b - r) > w and min(r - a, b - r) < EDGE * (b - a):
        return None, None
    return r, None


def _expand(rates: dict[float, _Rate], end: _Rate, up: bool, s: SearchSettings, w: float) -> float:
    """The next rate beyond ``end`` (the highest pass going up, the lowest fail going down):
    double (halve) without a margin; from one probe with a margin, just past where PRIOR_SLOPE
    puts the crossing (at most x2); from two, just past where their secant crosses (at most x4)."""
    same = sorted((r for r in rates.values() if r.passed == up and r.margin is not None),
                  key=lambda r: r.qps, reverse=not up)
    root = None
    if end.margin is not None and same and same[-1] is end:
        if len(same) == 1:
            root, cap = end.x - end.margin / PRIOR_SLOPE, math.log(2)
        else:
            root, cap = _secant_root(same[-2], end), MAX_STEP
    if root is None:
        return min(end.qps * 2, s.max_qps) if up else max(end.qps / 2, s.min_qps)
    if up:
        return min(math.exp(min(_place(end.x, math.inf, root, w), end.x + cap)), s.max_qps)
    return max(math.exp(max(_place(-math.inf, end.x, root, w), end.x - cap)), s.min_qps)


def _noise(rates: dict[float, _Rate]) -> tuple[float | None, int]:
    """Pooled SD of one run's margin over rates run more than once, and its degrees of freedom."""
    ss, dof = 0.0, 0
    for r in rates.values():
        ms = r.margins
        if ms and len(ms) > 1:
            ss += float(np.sum((np.asarray(ms) - np.mean(ms)) ** 2))
            dof += len(ms) - 1
    return (math.sqrt(ss / dof), dof) if dof else (None, 0)


def _t95(dof: int) -> float:
    return 1.96 if dof >= 30 else _T95[max(d for d in _T95 if d <= max(dof, 1))]


def _clear_of_noise(r: _Rate, sigma: float | None, dof: int) -> bool:
    """Whether a rate's mean margin is more than a 95 % band of its noise away from 0."""
    ms = r.margins
    return bool(ms) and sigma is not None and \
        abs(float(np.mean(ms))) > _t95(dof) * sigma / math.sqrt(len(ms))


def _to_repeat(lo: _Rate, hi: _Rate, rates: dict[float, _Rate], s: SearchSettings) -> _Rate | None:
    """The bracket end to run again, if any. An end runs up to ``repeats_near_boundary`` times
    while its verdict is open: without margins until a majority of that many is settled; with
    them, until its mean margin is clear of the measured noise, or its own runs came back
    identical (a deterministic probe: each end is checked, so one glitch cannot pass for that)."""
    sigma, dof = _noise(rates)
    for end in (lo, hi):
        n = len(end.runs)
        if n >= s.repeats_near_boundary:
            continue
        ms = end.margins
        if ms is None:
            votes = sum(bool(p.passed) for p in end.runs)
            if max(votes, n - votes) <= s.repeats_near_boundary / 2:
                return end
        elif not ((n > 1 and max(ms) == min(ms)) or (sigma and _clear_of_noise(end, sigma, dof))):
            return end
    return None


def _slope(rates: dict[float, _Rate], x0: float, lo: _Rate | None,
           hi: _Rate | None) -> tuple[float | None, float | None]:
    """d margin / d log(rate) near the crossing x0 and its standard error given the pooled
    noise. Without measured noise, the chord between the bracket ends (the most local line);
    with it, least squares over the SLOPE_POINTS rates nearest x0, weighted by their runs."""
    sigma, _ = _noise(rates)
    if not sigma:
        if lo is None or hi is None or lo.margin is None or hi.margin is None:
            return None, None
        return (hi.margin - lo.margin) / (hi.x - lo.x), None
    pts = sorted((r for r in rates.values() if r.margins),
                 key=lambda r: abs(r.x - x0))[:SLOPE_POINTS]
    if len(pts) < 2:
        return None, None
    x = np.array([r.x for r in pts])
    y = np.array([float(np.mean(r.margins)) for r in pts])
    n = np.array([len(r.runs) for r in pts], float)
    xm = np.sum(n * x) / np.sum(n)
    sxx = float(np.sum(n * (x - xm) ** 2))
    return float(np.sum(n * (x - xm) * y) / sxx), sigma / math.sqrt(sxx)


def _interval(lo: _Rate | None, hi: _Rate | None, rates: dict[float, _Rate],
              slope: float | None, slope_se: float | None) -> tuple[float | None, float | None]:
    """The bracket, widened at an end whose verdict the noise could flip: to where the line of
    conservative slope (the slope's lower 95 % bound) reaches the margin's 95 % bound, but no
    further than the nearest rate beyond that end whose verdict the noise could not flip."""
    sigma, dof = _noise(rates)
    low = lo.qps if lo else None
    high = hi.qps if hi else None
    if sigma is None or sigma == 0.0:
        return low, high
    t = _t95(dof)
    s = slope - t * slope_se if slope is not None and slope_se is not None else None
    if lo is not None and lo.margins and not _clear_of_noise(lo, sigma, dof):
        upper = float(np.mean(lo.margins)) + t * sigma / math.sqrt(len(lo.margins))
        sure = [r.qps for r in rates.values()
                if r.qps < lo.qps and r.passed and _clear_of_noise(r, sigma, dof)]
        floor = max(sure) if sure else None
        model = math.exp(lo.x - upper / s) if s and s > 0 else None
        low = max((v for v in (floor, model) if v is not None), default=None)
    if hi is not None and hi.margins and not _clear_of_noise(hi, sigma, dof):
        lower = float(np.mean(hi.margins)) - t * sigma / math.sqrt(len(hi.margins))
        sure = [r.qps for r in rates.values() if r.qps > hi.qps and not r.passed
                and (r.margins is None or _clear_of_noise(r, sigma, dof))]
        ceil = min(sure) if sure else None
        model = math.exp(hi.x - lower / s) if s and s > 0 else None
        high = min((v for v in (ceil, model) if v is not None), default=None)
    return low, high


def _summary(rates: dict[float, _Rate], probes: list[Probe], note: str | None) -> SearchResult:
    lo, hi = _bracket(rates)
    if lo is None and hi is None:
        return SearchResult(None, (None, None), probes, note)
    boundary = None
    if lo is not None and hi is not None and lo.margin is not None and hi.margin is not None:
        ma, mb = lo.margin, hi.margin
        frac = -ma / (mb - ma) if mb > ma else 0.5
        boundary = math.exp(lo.x + frac * (hi.x - lo.x))
    ends = [r.x for r in (lo, hi) if r is not None]
    slope, slope_se = _slope(rates, math.log(boundary) if boundary else float(np.mean(ends)), lo, hi)
    sigma, _ = _noise(rates)
    return SearchResult(lo.qps if lo else None, (lo.qps if lo else None, hi.qps if hi else None),
                        probes, note, _interval(lo, hi, rates, slope, slope_se), boundary,
                        slope, sigma)


def _whole(level: float, lo: _Rate | None, hi: _Rate | None) -> float:
    """A placed level rounded to a whole number of users strictly inside the bracket."""
    n = round(level)
    if lo is not None:
        n = max(n, int(lo.qps) + 1)
    if hi is not None:
        n = min(n, int(hi.qps) - 1)
    return float(max(n, 1))


def search_capacity(probe: Callable[[float], Probe], s: SearchSettings,
                    on_probe: Callable[[Probe], None] | None = None) -> SearchResult:
    """Probe rates (``probe(qps)``, req/s) until the bracket is within ``s.tolerance`` and its
    ends are confirmed, or ``s.max_probes`` ran; see the module docstring."""
    rates: dict[float, _Rate] = {}
    probes: list[Probe] = []
    narrowing = _Narrowing()
    w = -math.log1p(-s.tolerance)  # the stop rule (fail - pass) / fail <= tolerance in log rate
    qps: float | None = s.start_qps
    note = None
    while qps is not None:
        if len(probes) >= s.max_probes:
            note = f"stopped after max_probes={s.max_probes}"
            break
        result = probe(qps)
        probes.append(result)
        rates.setdefault(qps, _Rate(qps)).runs.append(result)
        if on_probe:
            on_probe(result)
        lo, hi = _bracket(rates)
        unit = "users" if s.integer else "qps"
        if hi is None:
            if lo.qps >= s.max_qps:
                note = f"passed at max_{unit} {s.max_qps:g}; the capacity may be higher"
                qps = None
            else:
                qps = _expand(rates, lo, True, s, w)
        elif lo is None:
            if hi.qps <= s.min_qps:
                note = f"failed even at {'1 user' if s.integer else f'min_qps {s.min_qps:g}'}"
                qps = None
            else:
                qps = _expand(rates, hi, False, s, w)
        elif (hi.qps - lo.qps) / hi.qps <= s.tolerance or (s.integer and hi.qps - lo.qps <= 1):
            again = _to_repeat(lo, hi, rates, s)
            qps = again.qps if again else None
            continue
        else:
            qps = narrowing.next(lo, hi, rates, w)
        if qps is not None and s.integer:
            qps = _whole(qps, lo, hi)
    return _summary(rates, probes, note)
