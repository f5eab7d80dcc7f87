"""The capacity search against margin curves whose boundary is known in closed form, and the
SLO margin it steers by, on hand-built records.

M/M/1 (the main yardstick): service rate mu, arrival rate lam < mu. A request's sojourn time is
exponential with rate mu - lam, so P(S > t) = exp(-(mu - lam) t) and its p90 is ln(10)/(mu - lam).
The SLO p90 <= T holds while ln(10)/(mu - lam) <= T, i.e. up to lam* = mu - ln(10)/T; with mu = 10
and T = 0.5 s, lam* = 10 - 4.60517 = 5.39483 req/s. The margin log(p90 / T) is
log(ln(10) / (T (mu - lam))), and its slope in log(lam) is lam / (mu - lam): 5.39483 / 4.60517 =
1.1715 at the boundary. A finite run above saturation measures a large but finite p90; the probe
models that by flooring mu - lam at mu/1000 (margin at most log(460.5 / 10 * 2) ~ 4.5 here).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from etalon.capacity_search import SLO, Probe, SearchSettings, search_capacity
from etalon.capacity_search.slo import MARGIN_CAP
from etalon.records import RequestRecord

LN10 = math.log(10)
MU, T = 10.0, 0.5
TRUTH = MU - LN10 / T  # 5.39483 req/s


def mm1_margin(lam: float, mu: float = MU, t: float = T) -> float:
    return math.log(LN10 / (t * max(mu - lam, mu / 1000)))


def margin_probe(margin, noise: float = 0.0, seed: int = 0, calls: list | None = None):
    """A probe that reports ``margin(qps)`` (plus Gaussian noise) the way SLO.check does."""
    rng = np.random.default_rng(seed)

    def probe(qps: float) -> Probe:
        if calls is not None:
            calls.append(qps)
        m = margin(qps) + (rng.normal(0.0, noise) if noise else 0.0)
        return Probe(qps, m <= 0, {"reasons": [] if m <= 0 else ["slow"], "margin": m,
                                   "hard_fail": False})

    return probe


def verdict_probe(margin, calls: list | None = None):
    """The same curve, pass/fail only: what the old search saw."""
    def probe(qps: float) -> Probe:
        if calls is not None:
            calls.append(qps)
        return Probe(qps, margin(qps) <= 0, {"reasons": []})

    return probe


def settings(**kw) -> SearchSettings:
    base = dict(start_qps=1.0, max_qps=1000.0, min_qps=0.01, tolerance=0.05, max_probes=30,
                repeats_near_boundary=1)
    base.update(kw)
    return SearchSettings(**base).validate()


def within(interval, x) -> bool:
    low, high = interval
    return (low is None or low <= x) and (high is None or x <= high)


# -- deterministic curves -------------------------------------------------------------------

def test_mm1_boundary_within_2_5_percent_in_at_most_8_probes():
    res = search_capacity(margin_probe(mm1_margin), settings(tolerance=0.025, max_probes=8))
    assert res.note is None
    assert res.num_probes <= 8
    assert TRUTH * 0.975 <= res.capacity_qps <= TRUTH  # a rate that passed, within 2.5 %
    low, high = res.bracket
    assert low <= TRUTH < high and (high - low) / high <= 0.025
    assert within(res.interval, TRUTH) and res.interval == res.bracket  # no noise was measured
    # The crossing interpolated inside the final bracket is much closer than the bracket.
    assert res.boundary_qps == pytest.approx(TRUTH, rel=0.003)
    assert res.sharpness == pytest.approx(1.1715, rel=0.25)
    assert res.margin_noise is None
    json.dumps(res.to_dict(), allow_nan=False)


@pytest.mark.parametrize("start", [0.05, 1.0, 5.0, 6.0, 40.0, 900.0])
def test_mm1_from_starts_far_below_and_above(start):
    calls_old: list[float] = []
    search_capacity(verdict_probe(mm1_margin, calls_old), settings(start_qps=start, tolerance=0.02))
    res = search_capacity(margin_probe(mm1_margin), settings(start_qps=start, tolerance=0.02))
    low, high = res.bracket
    assert low <= TRUTH < high and (high - low) / high <= 0.02
    assert res.boundary_qps == pytest.approx(TRUTH, rel=0.005)
    assert res.num_probes <= len(calls_old)  # never more probes than the pass/fail bisection


@pytest.mark.parametrize("mu,t", [(100.0, 0.5), (40.0, 0.1), (2.0, 5.0)])
def test_other_mm1_queues(mu, t):
    truth = mu - LN10 / t
    res = search_capacity(margin_probe(lambda lam: mm1_margin(lam, mu, t)),
                          settings(tolerance=0.02, max_probes=12))
    assert res.note is None and res.bracket[0] <= truth < res.bracket[1]
    assert res.boundary_qps == pytest.approx(truth, rel=0.01)


@pytest.mark.parametrize("start", [0.3, 1.0, 3.0, 100.0])
def test_sharp_cliff_costs_about_what_bisection_does(start):
    # The margin jumps from -0.5 to +2 at 37 req/s: no slope to follow, the flat sides make
    # the search bisect (in log rate). Where the doubling happens to land near 37 (start 0.3:
    # 38.4) the old search is lucky, hence the allowance.
    cliff = lambda lam: -0.5 if lam <= 37.0 else 2.0  # noqa: E731
    calls_old: list[float] = []
    search_capacity(verdict_probe(cliff, calls_old), settings(start_qps=start, tolerance=0.02))
    res = search_capacity(margin_probe(cliff), settings(start_qps=start, tolerance=0.02))
    low, high = res.bracket
    assert low <= 37.0 < high and (high - low) / high <= 0.02
    assert res.num_probes <= len(calls_old) + 2
    assert res.sharpness is None or res.sharpness > 10  # reported as steep


@pytest.mark.parametrize("start", [0.1, 1.0, 30.0])
def test_margin_linear_in_rate(start):
    # margin = lam / 3.3 - 1: linear in the rate, so convex in log(rate).
    res = search_capacity(margin_probe(lambda lam: lam / 3.3 - 1), settings(start_qps=start, tolerance=0.02))
    assert res.bracket[0] <= 3.3 < res.bracket[1]
    assert res.boundary_qps == pytest.approx(3.3, rel=0.003)
    assert res.sharpness == pytest.approx(1.0, rel=0.1)  # d margin / d log lam = lam / 3.3 = 1


def test_notes_at_the_limits():
    res = search_capacity(margin_probe(mm1_margin), settings(start_qps=0.5, max_qps=2.0))
    assert res.note.startswith("passed at max_qps 2") and res.capacity_qps == 2.0
    assert res.bracket == (2.0, None) and res.interval == (2.0, None)
    res = search_capacity(margin_probe(mm1_margin), settings(start_qps=8, min_qps=7))
    assert res.note.startswith("failed even at min_qps 7") and res.capacity_qps is None
    res = search_capacity(margin_probe(mm1_margin), settings(tolerance=0.001, max_probes=4))
    assert res.note == "stopped after max_probes=4" and res.num_probes == 4
    json.dumps(res.to_dict(), allow_nan=False)


# -- pass/fail only, and hard failures ------------------------------------------------------

def test_pass_fail_only_is_the_old_bisection():
    # Threshold 13.7, tolerance 1 %: doubling to 16, then midpoints 12 (pass), 14 (fail), 13,
    # 13.5 (pass), 13.75 (fail): (13.75 - 13.5) / 13.75 = 1.8 %; 13.625 (pass): 0.9 %, done.
    seen: list[float] = []
    res = search_capacity(verdict_probe(lambda q: q - 13.7, seen), settings(tolerance=0.01))
    assert seen == [1, 2, 4, 8, 16, 12, 14, 13, 13.5, 13.75, 13.625]
    assert res.bracket == (13.625, 13.75) and res.boundary_qps is None and res.sharpness is None
    # With repeats, each end runs again until a majority of 3 is settled (2 agreeing runs).
    seen.clear()
    res = search_capacity(verdict_probe(lambda q: q - 13.7, seen),
                          settings(tolerance=0.01, repeats_near_boundary=3))
    assert seen[11:] == [13.625, 13.75] and res.bracket == (13.625, 13.75)


def test_hard_failures_are_failures_without_a_margin():
    # Above 20 req/s the load generator falls behind: failed, and its (tiny) margin is ignored.
    def probe(qps: float) -> Probe:
        if qps > 20:
            return Probe(qps, False, {"reasons": ["fell behind"], "margin": -1.0, "hard_fail": True})
        m = mm1_margin(qps)
        return Probe(qps, m <= 0, {"reasons": [], "margin": m, "hard_fail": False})

    res = search_capacity(probe, settings(start_qps=64, tolerance=0.02))
    assert [p.qps for p in res.probes][:3] == [64, 32, 16]  # halving past the hard fails
    assert res.bracket[0] <= TRUTH < res.bracket[1]


# -- noise and repeats ----------------------------------------------------------------------

def test_a_deterministic_probe_is_repeated_once_per_end():
    once = search_capacity(margin_probe(mm1_margin), settings(tolerance=0.02))
    rep = search_capacity(margin_probe(mm1_margin), settings(tolerance=0.02, repeats_near_boundary=3))
    assert rep.num_probes == once.num_probes + 2  # each end's repeat came back identical: no more
    assert rep.margin_noise == 0.0 and rep.interval == rep.bracket == once.bracket


def test_one_unlucky_probe_does_not_move_the_answer():
    # The first run at any rate within 6 % below the boundary comes back failing (margin +0.1).
    seen: set[float] = set()

    def probe(qps: float) -> Probe:
        m = mm1_margin(qps)
        if 0.94 * TRUTH <= qps <= TRUTH and qps not in seen:
            m = 0.1
        seen.add(qps)
        return Probe(qps, m <= 0, {"reasons": [], "margin": m})

    fooled = search_capacity(probe, settings(tolerance=0.02))
    assert fooled.bracket[1] <= TRUTH  # without repeats the bracket misses the boundary
    seen.clear()
    res = search_capacity(probe, settings(tolerance=0.02, repeats_near_boundary=3))
    assert res.bracket[0] <= TRUTH < res.bracket[1]
    assert within(res.interval, TRUTH)


def test_noisy_probes_interval_holds_the_boundary():
    # Each probe's margin is off by N(0, 0.05): its p90 off by ~5 %, about one stop width
    # (0.043 in log rate at slope 1.17). Repeats near the boundary give the noise and the interval.
    covered, widths = 0, []
    for seed in range(20):
        res = search_capacity(margin_probe(mm1_margin, noise=0.05, seed=seed),
                              settings(tolerance=0.05, repeats_near_boundary=3))
        covered += within(res.interval, TRUTH)
        assert res.margin_noise is not None and res.margin_noise > 0
        assert within(res.interval, res.capacity_qps)
        low, high = res.interval
        widths.append((high or math.inf) / (low or 1e-9))
        json.dumps(res.to_dict(), allow_nan=False)
    assert covered >= 18
    assert np.median(widths) < 1.3  # the interval is informative, not just "somewhere"


def test_settings_reject_bad_repeats():
    from etalon.cli_errors import UserError

    with pytest.raises(UserError, match="repeats_near_boundary"):
        SearchSettings(repeats_near_boundary=0).validate()


# -- the SLO margin -------------------------------------------------------------------------

def _record(rid: int, ttft: float, gaps: tuple[float, ...] = (0.125,), error: str | None = None,
            ) -> RequestRecord:
    """Sent at t = rid; first token ``ttft`` later, then one token per gap."""
    times = [rid + ttft]
    for g in gaps:
        times.append(times[-1] + g)
    return RequestRecord(request_id=rid, scheduled_at=float(rid), sent_at=float(rid),
                         completed_at=None if error else times[-1], chunk_times=times,
                         chunk_tokens=[1] * len(times), error_type=error)


def test_margin_is_log_of_the_worst_ratio():
    # TTFTs 0.25, 0.5, 0.75 (exact in binary): p50 = 0.5. Against 0.625: log(0.8) = -0.2231.
    records = [_record(0, 0.25), _record(1, 0.5), _record(2, 0.75)]
    passed, obs = SLO(ttft_percentile=50, ttft_max_s=0.625).check(records)
    assert passed and obs["margin"] == pytest.approx(math.log(0.8)) and not obs["hard_fail"]
    # Against 0.25: log(2) = 0.693, failed, and the reason text is unchanged.
    passed, obs = SLO(ttft_percentile=50, ttft_max_s=0.25).check(records)
    assert not passed and obs["margin"] == pytest.approx(math.log(2))
    assert obs["reasons"] == ["p50 TTFT 500.0 ms > 250.0 ms"]
    # Exactly at the limit: margin 0, passed.
    passed, obs = SLO(ttft_percentile=50, ttft_max_s=0.5).check(records)
    assert passed and obs["margin"] == 0.0
    # Two targets: the worse one counts. Every TBT is 0.125; against 0.1: log(1.25).
    passed, obs = SLO(ttft_percentile=50, ttft_max_s=0.625, tbt_max_s=0.1).check(records)
    assert not passed and obs["margin"] == pytest.approx(math.log(1.25))
    assert obs["margins"]["ttft"] == pytest.approx(math.log(0.8))


def test_fluidity_margin_higher_is_better():
    # Deadlines D_ttft = 1, D_tbt = 0.5 (test_metrics_deadlines' first case): tokens at 0.75,
    # 1.0, 1.25, 3.25, 3.5, 4.25 after the send give 5 on time of 7 deadlines: fluidity 5/7.
    late = _record(0, 0.75, (0.25, 0.25, 2.0, 0.25, 0.75))
    slo = SLO(ttft_deadline_s=1.0, tbt_deadline_s=0.5, min_fluidity=0.9, fluidity_percentile=50)
    passed, obs = slo.check([late])
    assert not passed and obs["margin"] == pytest.approx(math.log(0.9 / (5 / 7)))
    # All on time: fluidity 1, margin log(0.9).
    passed, obs = slo.check([_record(0, 0.5, (0.25, 0.25))])
    assert passed and obs["margin"] == pytest.approx(math.log(0.9))


def test_hard_failures_and_json_safety():
    ok = [_record(i, 0.25) for i in range(3)]
    slo = SLO(ttft_percentile=50, ttft_max_s=0.5)
    passed, obs = slo.check(ok, fell_behind=True)
    assert not passed and obs["hard_fail"] and obs["margin"] == pytest.approx(math.log(0.5))
    passed, obs = slo.check(ok + [_record(3, 0.25, error="http_500")])
    assert not passed and obs["hard_fail"]
    # Nothing completed: no sample, margin capped (finite), everything JSON-safe.
    passed, obs = slo.check([_record(0, 0.2, error="timeout")])
    assert not passed and obs["hard_fail"] and obs["margin"] == MARGIN_CAP
    assert obs["ttft_p50_s"] is None
    json.dumps(obs, allow_nan=False)
    fluid = SLO(tbt_deadline_s=0.5, min_fluidity=0.0)  # even a target nothing can miss
    passed, obs = fluid.check([_record(0, 0.2, error="timeout")])
    assert not passed and obs["hard_fail"] and obs["margin"] == MARGIN_CAP
    json.dumps(obs, allow_nan=False)
    # A tiny or zero latency is floored, not -inf.
    _, obs = slo.check([_record(0, 0.0)])
    assert obs["margin"] == -MARGIN_CAP
    json.dumps(obs, allow_nan=False)
    # An SLO without a target has no margin.
    assert SLO().check(ok)[1]["margin"] is None
