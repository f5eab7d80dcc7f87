"""Deadline evaluation with slack carry-over, minimum TBT deadline, fluid rate and goodput.

Every expected number is worked out by hand in the comments (D_ttft = 1 s, D_tbt = 0.5 s
unless a test says otherwise; times are multiples of 0.25 so the float arithmetic is exact).
"""

import math

import numpy as np
import pytest

from etalon.metrics.deadlines import (
    Timelines, evaluate_deadlines, evaluate_timelines, min_tbt_deadlines,
)
from etalon.metrics import fluid_rate
from etalon.metrics.fluid_rate import fluid_token_rate, fluidity_percentile
from etalon.metrics.goodput import good_mask, goodput
from etalon.records import RequestRecord


def test_slack_carry_over_multi_period_stall_and_reset():
    # token  t     due   verdict
    # 1      0.75  1.0   on time (0.25 banked)             next due 1.5
    # 2      1.0   1.5   on time                           next due 2.0
    # 3      1.25  2.0   on time (0.75 banked)             next due 2.5
    # 4      3.25  2.5   late by 0.75: floor(0.75/0.5)+1 = 2 misses; reset: next due 3.25+0.5 = 3.75
    # 5      3.5   3.75  on time                           next due 4.25
    # 6      4.25  4.25  on time (t <= due)                next due 4.75
    out = evaluate_deadlines([0.75, 1.0, 1.25, 3.25, 3.5, 4.25], 0.0, 1.0, 0.5)
    assert (out.tokens_on_time, out.misses, out.first_token_misses) == (5, 2, 0)
    assert out.deadlines_total == 7
    assert out.miss_rate == pytest.approx(2 / 7)
    assert out.fluidity_index == pytest.approx(5 / 7)


def test_brief_example_token_one_period_late_is_charged_two_misses():
    # 0.8, 1.0, 1.2 are on time (dues 1.0, 1.5, 2.0); token 4 is due 2.5 and comes at 3.0:
    # floor((3.0 - 2.5) / 0.5) + 1 = 2 misses.
    out = evaluate_deadlines([0.8, 1.0, 1.2, 3.0], 0.0, 1.0, 0.5)
    assert (out.tokens_on_time, out.misses) == (3, 2)


def test_long_stall_covers_several_periods():
    # token 2 due 1.5 arrives 2.75: dues 1.5, 2.0, 2.5 all passed -> floor(1.25/0.5)+1 = 3 misses.
    out = evaluate_deadlines([0.5, 2.75], 0.0, 1.0, 0.5)
    assert (out.tokens_on_time, out.misses) == (1, 3)


def test_banked_slack_absorbs_a_long_gap():
    # A gap of 1.0 > D_tbt is not a miss: token 2 is due 1.0 + 0.5 = 1.5 and comes at 1.25.
    out = evaluate_deadlines([0.25, 1.25, 1.5], 0.0, 1.0, 0.5)
    assert (out.tokens_on_time, out.misses) == (3, 0)


def test_late_first_token_is_charged_per_period_and_resets_schedule():
    # t0 = 0: token 1 due 1.0 comes at 1.75: floor(0.75/0.5)+1 = 2 misses, next due 2.25.
    # 2.0 <= 2.25 on time (next 2.75); 2.5 <= 2.75 on time.
    out = evaluate_deadlines([1.75, 2.0, 2.5], 0.0, 1.0, 0.5)
    assert (out.tokens_on_time, out.misses, out.first_token_misses) == (2, 2, 2)
    assert out.tbt_misses == 0


def test_schedule_is_anchored_at_scheduled_arrival():
    # Same tokens shifted by t0 = 10: identical verdicts.
    a = evaluate_deadlines([0.75, 1.0, 1.25, 3.25, 3.5, 4.25], 0.0, 1.0, 0.5)
    b = evaluate_deadlines([10.75, 11.0, 11.25, 13.25, 13.5, 14.25], 10.0, 1.0, 0.5)
    assert a == b


def test_without_ttft_deadline_the_first_token_is_not_a_deadline():
    # Schedule starts at the first token (5.0): dues 5.5, 6.0; 5.5 on time, 6.25 late (1 miss).
    out = evaluate_deadlines([5.0, 5.5, 6.25], 0.0, None, 0.5)
    assert (out.tokens_on_time, out.misses, out.deadlines_total) == (1, 1, 2)


def chunked(chunk_times, chunk_tokens, scheduled_at=0.0):
    return RequestRecord(request_id=0, scheduled_at=scheduled_at, sent_at=scheduled_at,
                         completed_at=chunk_times[-1], chunk_times=chunk_times,
                         chunk_tokens=chunk_tokens)


def test_multi_token_chunk_checks_each_token_against_its_own_deadline():
    rec = chunked([1.0, 2.25], [3, 1])
    tl = Timelines.from_records([rec])
    # D_tbt = 0.5: the 3 tokens at 1.0 are due 1.0, 1.5, 2.0 (all on time); token 4 due 2.5 at
    # 2.25 is on time. (Were the chunk one token, token 2 would be due 1.5 and 2.25 would miss.)
    on, miss, _ = evaluate_timelines(tl, 1.0, 0.5)
    assert (on[0], miss[0]) == (4, 0)
    # D_tbt = 0.25: chunk tokens due 1.0, 1.25, 1.5 (on time), token 4 due 1.75 at 2.25:
    # floor(0.5/0.25)+1 = 3 misses.
    on, miss, _ = evaluate_timelines(tl, 1.0, 0.25)
    assert (on[0], miss[0]) == (3, 3)


def test_late_chunk_only_its_first_token_misses_then_reset():
    # Token 1 at 0.5 on time (next due 1.5). Chunk of 3 at 2.0: first is late by 0.5 ->
    # 2 misses, reset to 2.5; the other two (due 2.5, 3.0) are on time.
    out = evaluate_deadlines([0.5, 2.0, 2.0, 2.0], 0.0, 1.0, 0.5)
    assert (out.tokens_on_time, out.misses) == (3, 2)


def naive(times, t0, d_ttft, d_tbt):
    """Token-by-token reference loop for the vectorised evaluator."""
    on = miss = 0
    due = t0 + d_ttft
    for t in times:
        if t <= due:
            on += 1
            due += d_tbt
        else:
            miss += math.floor((t - due) / d_tbt) + 1
            due = t + d_tbt
    return on, miss


def random_timelines(seed, n=40):
    rng = np.random.default_rng(seed)
    times, t0 = [], []
    for i in range(n):
        start = rng.uniform(0, 5)
        gaps = rng.exponential(0.05, size=int(rng.integers(1, 60)))
        times.append(start + rng.uniform(0, 1.5) + np.cumsum(gaps) - gaps[0])
        t0.append(start)
    return list(range(n)), t0, times


def test_vectorised_evaluation_matches_token_by_token_loop():
    ids, t0, times = random_timelines(3)
    tl = Timelines.from_token_times(ids, t0, times)
    on, miss, _ = evaluate_timelines(tl, 0.8, 0.07)
    for row, rid in enumerate(tl.request_ids):
        assert (on[row], miss[row]) == naive(times[rid], t0[rid], 0.8, 0.07)


def test_fluidity_is_monotone_in_tbt_deadline():
    tl = Timelines.from_token_times(*random_timelines(5))
    prev = None
    for d in np.linspace(0.005, 0.5, 60):
        on, miss, _ = evaluate_timelines(tl, 0.8, d)
        fluidity = on / (on + miss)
        if prev is not None:
            assert np.all(fluidity >= prev - 1e-12)
        prev = fluidity


def test_min_tbt_deadline_by_hand():
    ids = [0, 1, 2]
    t0 = [0.0, 0.0, 0.0]
    times = [
        # First token on time (0.75 <= 1.0) -> anchor 1.0:
        # (1.0-1)/1 = 0, (1.25-1)/2 = 0.125, (3.25-1)/3 = 0.75 -> D_min = 0.75.
        np.array([0.75, 1.0, 1.25, 3.25]),
        # First token late (1.5 > 1.0) -> anchor 1.5: (2.0-1.5)/1 = 0.5, (3.0-1.5)/2 = 0.75.
        np.array([1.5, 2.0, 3.0]),
        np.array([0.5]),  # one token -> 0
    ]
    tl = Timelines.from_token_times(ids, t0, times)
    d_min = dict(zip(tl.request_ids, min_tbt_deadlines(tl, 1.0)))
    assert d_min == {0: pytest.approx(0.75), 1: pytest.approx(0.75), 2: 0.0}
    # It really is the minimum: zero TBT misses at D_min, at least one just below it.
    assert evaluate_deadlines(times[0], 0.0, 1.0, 0.75).misses == 0
    assert evaluate_deadlines(times[0], 0.0, 1.0, 0.74).misses >= 1


def uniform_requests(n, gap, n_tokens=50, ttft=0.5):
    """n requests, first token exactly at t0 + ttft, then one token every ``gap`` seconds."""
    t0 = [2.0 * i for i in range(n)]
    times = [t + ttft + gap * np.arange(n_tokens) for t in t0]
    return list(range(n)), t0, times


def test_fluid_rate_of_uniform_tbt_is_one_over_gap():
    # First token exactly at its TTFT deadline (no slack). For D_tbt >= g every token is on
    # time; for D_tbt < g token 2 misses, the schedule resets, and every later token misses
    # too (fluidity 1/50). So the answer is exactly 1/g = 25 tokens/s.
    tl = Timelines.from_token_times(*uniform_requests(20, 0.04))
    fr = fluid_token_rate(tl, 0.5)
    assert fr.attainable
    assert fr.tokens_per_s == pytest.approx(25.0, rel=1e-3)
    assert fluidity_percentile(tl, 0.5, 1 / fr.tokens_per_s, 1.0) >= 0.9


def test_fluid_rate_is_set_by_the_worst_percent_of_requests():
    fast_ids, fast_t0, fast = uniform_requests(100, 0.04)
    slow_ids, slow_t0, slow = uniform_requests(3, 0.1)
    # 99 fast + 1 slow: the 1st percentile (linear, position 0.99) sits between the slow
    # request (fluidity 1/50 when D < 0.1) and a fast one (1.0): 0.02 + 0.99*0.98 = 0.99 >= 0.9,
    # so the slow request is tolerated and the rate is 1/0.04 = 25.
    tl = Timelines.from_token_times(list(range(100)), fast_t0[:99] + slow_t0[:1],
                                    fast[:99] + slow[:1])
    assert fluid_token_rate(tl, 0.5).tokens_per_s == pytest.approx(25.0, rel=1e-3)
    # 97 fast + 3 slow: the 1st percentile falls between two slow requests -> 1/0.1 = 10.
    tl = Timelines.from_token_times(list(range(100)), fast_t0[:97] + slow_t0, fast[:97] + slow)
    assert fluid_token_rate(tl, 0.5).tokens_per_s == pytest.approx(10.0, rel=1e-3)


def test_fluid_rate_unattainable_when_short_requests_miss_ttft():
    # Two tokens each, first token 1 s after a 0.5 s TTFT deadline: fluidity <= 1/2 always.
    times = [np.array([1.5, 1.6]) + 2 * i for i in range(10)]
    tl = Timelines.from_token_times(list(range(10)), [2.0 * i for i in range(10)], times)
    fr = fluid_token_rate(tl, 0.5)
    assert not fr.attainable and fr.tokens_per_s is None and fr.note


def bisect_every_row(tl, ttft, min_fluidity, percentile, rel_tol=1e-4, max_iter=64):
    """The plain search: bisection with every row walked at every step (the reference)."""
    hi = float(min_tbt_deadlines(tl, ttft).max())
    due = tl.t0 + tl.ttft_deadlines(ttft)
    late = (tl.column(0) - due)[~np.isnan(due)]
    hi = max(hi, float(late.max()) if late.size else 0.0) * (1 + 1e-9) + 1e-12
    if fluidity_percentile(tl, ttft, hi, percentile) < min_fluidity:
        return None
    lo = 0.0
    for _ in range(max_iter):
        if hi - lo <= rel_tol * hi:
            break
        mid = 0.5 * (lo + hi)
        if fluidity_percentile(tl, ttft, mid, percentile) >= min_fluidity:
            hi = mid
        else:
            lo = mid
    return hi


@pytest.mark.parametrize("steps_per_walk", ["chosen", "one", "most"])
@pytest.mark.parametrize("seed", range(6))
def test_pruned_fluid_rate_search_equals_walking_every_row(seed, steps_per_walk, monkeypatch):
    # The search walks only the rows that can still move the percentile, and decides several
    # bisection steps from one walk; it must land on the very deadline a bisection that walks
    # every row at every step lands on, own TTFT deadlines, one-token requests and rows without
    # any deadline included -- whether its cost model picks the steps per walk, or one or the
    # most steps are forced on every walk
    if steps_per_walk != "chosen":
        monkeypatch.setattr(fluid_rate, "COLUMN_COST" if steps_per_walk == "most" else "TOKEN_COST", 1.0)
    rng = np.random.default_rng(seed)
    ids, t0, times = random_timelines(seed, n=300)
    own = [None if rng.random() < 0.5 else float(rng.uniform(0.2, 1.5)) for _ in ids]
    times = [t[:1] if rng.random() < 0.1 else t for t in times]
    tl = Timelines.from_token_times(ids, t0, times, own)
    ttft = [None, 0.8][seed % 2]
    percentile, min_fluidity = [(1.0, 0.9), (10.0, 0.8), (50.0, 0.95)][seed % 3]
    fr = fluid_token_rate(tl, ttft, min_fluidity=min_fluidity, percentile=percentile)
    expected = bisect_every_row(tl, ttft, min_fluidity, percentile)
    assert fr.tbt_deadline_s == expected
    # the summary hands over the smallest TBT deadlines it has (every row, those the search
    # leaves out included): the same search
    given = min_tbt_deadlines(tl, ttft)
    assert fluid_token_rate(tl, ttft, min_fluidity=min_fluidity, percentile=percentile,
                            min_tbt=given) == fr
    if expected is not None:
        assert fr.attainable and fluidity_percentile(tl, ttft, expected, percentile) >= min_fluidity


@pytest.mark.parametrize("ttft", [None, 0.8])
def test_a_settled_rows_fluidity_is_what_a_walk_gives_from_there_on(ttft):
    # Past max(D_min, first-token lateness) a row misses no TBT deadline and a late first
    # token costs one miss, so the search takes its fluidity unwalked: a walk at any deadline
    # from the row's settling point on must give that same value, and some row must still
    # change just below it (else the point would be needlessly late)
    ids, t0, times = random_timelines(11, n=200)
    rng = np.random.default_rng(11)
    own = [None if rng.random() < 0.5 else float(rng.uniform(0.2, 1.5)) for _ in ids]
    tl = Timelines.from_token_times(ids, t0, times, own)
    settled = fluid_rate._Settled.of(tl, ttft, min_tbt_deadlines(tl, ttft))
    for scale in (1.0, 1.5, 40.0):
        walked = fluid_rate.fluidities_many(tl, ttft, settled.after * scale)
        assert np.array_equal(np.diag(walked), settled.fluidity, equal_nan=True)
    below = np.diag(fluid_rate.fluidities_many(tl, ttft, settled.after * 0.9))
    assert (below < settled.fluidity).sum() > len(tl) // 2


def test_a_subset_of_rows_packs_as_those_requests_alone_would():
    # the search walks a subset of rows, gathered column by column from the packing: it must
    # be the packing of those requests' own token times, rows in the same order
    ids, t0, times = random_timelines(7, n=120)
    own = [None if i % 3 else 0.4 for i in ids]
    tl = Timelines.from_token_times(ids, t0, times, own)
    rows = np.flatnonzero(np.random.default_rng(7).random(len(tl)) < 0.4)
    sub = tl.subset(rows)
    picked = [int(i) for i in tl.request_ids[rows]]
    alone = Timelines.from_token_times(picked, [t0[i] for i in picked], [times[i] for i in picked],
                                       [own[i] for i in picked])
    for name in ("request_ids", "t0", "lengths", "times", "starts", "active", "ttft"):
        assert np.array_equal(getattr(sub, name), getattr(alone, name), equal_nan=True), name


def test_fluid_rate_with_no_data():
    fr = fluid_token_rate(Timelines.from_token_times([], [], []), 1.0)
    assert fr.tokens_per_s is None and not fr.attainable


def rec(rid, sched, sent, chunks, error=None):
    return RequestRecord(request_id=rid, scheduled_at=sched, sent_at=sent,
                         completed_at=None if error else chunks[-1] + 0.25,
                         chunk_times=chunks, chunk_tokens=[1] * len(chunks), error_type=error)


def test_goodput_by_hand():
    # D_ttft = 1, D_tbt = 0.5.
    records = [
        rec(0, 0.0, 0.0, [0.5, 1.0, 1.5]),        # TTFT 0.5, on schedule -> good
        rec(1, 1.0, 1.0, [2.5, 3.0]),             # TTFT 1.5 > 1 -> not good
        rec(2, 2.0, 2.0, [2.5, 4.0]),             # token 2 due 3.5 at 4.0 -> TBT miss -> not good
        rec(3, 3.0, 3.0, [3.5], error="http_500"),  # failed -> not good
        # Sent 2 s late: TTFT from send 0.5 meets D_ttft (good is judged from send). From the
        # schedule the first token (due 5.0) is late; that resets the schedule to 6.5 + 0.5,
        # so token 2 at 7.0 is on time: no TBT miss -> good.
        rec(4, 4.0, 6.0, [6.5, 7.0]),
    ]
    assert good_mask(records, 1.0, 0.5) == [True, False, False, False, True]
    g = goodput(records, 1.0, 0.5, duration_s=10.0)
    assert (g.num_good, g.num_requests) == (2, 5)
    assert g.fraction == pytest.approx(0.4)
    assert g.requests_per_s == pytest.approx(0.2)
    # Only the TTFT deadline: request 2 becomes good.
    assert good_mask(records, 1.0, None) == [True, False, True, False, True]
    assert goodput(records, None, None, 10.0) is None


# -- per-request TTFT deadlines (a record's own ``ttft_deadline``, else the run-wide one) -------

def own(rid, sched, sent, chunks, ttft_deadline):
    r = rec(rid, sched, sent, chunks)
    r.ttft_deadline = ttft_deadline
    return r


def test_each_request_is_judged_by_its_own_ttft_deadline():
    # Same tokens 0.75, 1.0, 1.25 after t0 = 0; D_tbt = 0.5; run-wide D_ttft = 0.25.
    # A (own 0.5): token 1 due 0.5, late 0.25 -> floor(0.5)+1 = 1 miss, reset: next due 1.25;
    #   1.0 on time (next 1.75), 1.25 on time -> 2 on time, 1 miss (first-token).
    # B (own 1.0): dues 1.0, 1.5, 2.0 -> 3 on time, 0 misses.
    # C (none, run-wide 0.25): token 1 late 0.5 -> floor(1)+1 = 2 misses, next due 1.25;
    #   1.0, 1.25 on time -> 2 on time, 2 misses.
    records = [own(0, 0.0, 0.0, [0.75, 1.0, 1.25], 0.5), own(1, 0.0, 0.0, [0.75, 1.0, 1.25], 1.0),
               own(2, 0.0, 0.0, [0.75, 1.0, 1.25], None)]
    tl = Timelines.from_records(records)
    on, miss, first = evaluate_timelines(tl, 0.25, 0.5)
    got = {int(i): (int(a), int(b), int(c)) for i, a, b, c in zip(tl.request_ids, on, miss, first)}
    assert got == {0: (2, 1, 1), 1: (3, 0, 0), 2: (2, 2, 2)}
    # Without a run-wide deadline C's first token is no deadline: schedule from 0.75, dues
    # 1.25, 1.75 -> 2 on time, 0 misses. A and B are unchanged.
    on, miss, first = evaluate_timelines(tl, None, 0.5)
    got = {int(i): (int(a), int(b), int(c)) for i, a, b, c in zip(tl.request_ids, on, miss, first)}
    assert got == {0: (2, 1, 1), 1: (3, 0, 0), 2: (2, 0, 0)}


def test_min_tbt_deadline_anchors_at_each_requests_own_ttft_deadline():
    # A (own 0.5): token 1 late -> anchor 0.75: max(0.25/1, 0.5/2) = 0.25.
    # B (own 1.0): token 1 on time -> anchor 1.0: max(0/1, 0.25/2) = 0.125.
    records = [own(0, 0.0, 0.0, [0.75, 1.0, 1.25], 0.5), own(1, 0.0, 0.0, [0.75, 1.0, 1.25], 1.0)]
    tl = Timelines.from_records(records)
    assert dict(zip(tl.request_ids, min_tbt_deadlines(tl, None))) == {
        0: pytest.approx(0.25), 1: pytest.approx(0.125)}


def test_vectorised_evaluation_with_mixed_own_deadlines_matches_the_loop():
    ids, t0, times = random_timelines(11)
    rng = np.random.default_rng(12)
    mine = [None if rng.random() < 0.3 else float(rng.uniform(0.2, 1.5)) for _ in ids]
    tl = Timelines.from_token_times(ids, t0, times, mine)
    for run_wide in (0.8, None):
        on, miss, _ = evaluate_timelines(tl, run_wide, 0.07)
        for row, rid in enumerate(tl.request_ids):
            d = mine[rid] if mine[rid] is not None else run_wide
            if d is None:  # no first-token deadline: the schedule starts at token 1
                expect = naive(times[rid][1:], times[rid][0], 0.07, 0.07)
            else:
                expect = naive(times[rid], t0[rid], d, 0.07)
            assert (on[row], miss[row]) == expect


def per_request_run():
    # sched = sent; TTFT from send is 0.75 for all; D_tbt = 0.5 where checked.
    return [
        own(0, 0.0, 0.0, [0.75, 1.0, 1.25], 0.5),   # TTFT 0.75 > own 0.5 -> not good
        own(1, 1.0, 1.0, [1.75, 2.0, 2.25], 1.0),   # dues 2.0, 2.5, 3.0 -> good
        own(2, 2.0, 2.0, [2.75, 3.75], 1.0),        # token 2 due 3.5 at 3.75 -> TBT miss
        own(3, 3.0, 3.0, [3.75, 4.75], 2.0),        # dues 5.0, 5.5: slack banked -> good
        own(4, 4.0, 4.0, [4.75, 5.0], None),        # the run-wide deadline decides
    ]


def test_goodput_with_per_request_ttft_deadlines():
    records = per_request_run()
    # Run-wide 0.5 applies to request 4 only: TTFT 0.75 > 0.5 -> not good.
    assert good_mask(records, 0.5, 0.5) == [False, True, False, True, False]
    g = goodput(records, 0.5, 0.5, duration_s=10.0)
    assert (g.num_good, g.fraction, g.requests_per_s) == (2, 0.4, 0.2)
    assert g.ttft_deadline_s == 0.5
    # Run-wide 1.0: request 4 dues 5.0, 5.5 -> good.
    assert good_mask(records, 1.0, 0.5) == [False, True, False, True, True]
    # No run-wide deadline at all: goodput is still computed from the records' own; request 4
    # has no TTFT deadline, request 2's TBT miss is not checked without D_tbt.
    g = goodput(records, None, None, duration_s=10.0)
    assert g.num_good == 4 and g.ttft_deadline_s == "per-request"


def test_summary_and_rows_with_per_request_ttft_deadlines():
    from etalon.metrics.per_request import request_rows
    from etalon.metrics.summary import summarize

    records = per_request_run()
    s = summarize(records, tbt_deadline=0.5)
    assert s["parameters"]["ttft_deadline_s"] == "per-request"
    d = s["deadlines"]
    assert d["ttft_deadline_s"] == "per-request" and d["num_own_ttft_deadlines"] == 4
    # On time / misses per request: 0: (2, 1: token 1 late 0.25, reset to 1.25), 1: (3, 0),
    # 2: (1, 1), 3: (2, 0), 4: no TTFT deadline, schedule from 4.75: 5.0 due 5.25 -> (1, 0).
    assert (d["deadlines_total"], d["misses"], d["first_token_misses"]) == (11, 2, 1)
    # Request 4 is good here: no TTFT deadline, no TBT miss.
    assert s["goodput"]["num_good"] == 3 and s["goodput"]["ttft_deadline_s"] == "per-request"
    # The report passes the summary's label back in; rows show the deadline each was judged by.
    rows = request_rows(records, s["parameters"]["ttft_deadline_s"], 0.5)
    assert [r["ttft_deadline"] for r in rows] == [0.5, 1.0, 1.0, 2.0, None]
    assert [r["deadline_misses"] for r in rows] == [1, 0, 1, 0, 0]
    assert [r["good"] for r in rows] == [False, True, False, True, True]
    # Anchors: 0.75 (late first token), 2.0, 3.0 (own deadlines met), 5.0, 4.75 (first token):
    # 0: max(0.25/1, 0.5/2); 1: 0.25/2; 2: 0.75/1; 3: -0.25 floored at 0; 4: 0.25/1.
    assert [r["min_tbt_deadline"] for r in rows] == [0.25, 0.125, 0.75, 0.0, 0.25]


def test_fluid_rate_uses_each_requests_own_ttft_deadline():
    # 10 requests stream from t0 + 0.5, 10 from t0 + 1.5, one token per 0.04 s, 50 tokens.
    # With own deadlines 0.5 and 1.5 every first token is exactly on time: rate 1/0.04 = 25.
    _, t0, early = uniform_requests(10, 0.04, ttft=0.5)
    _, _, late = uniform_requests(10, 0.04, ttft=1.5)
    ids = list(range(20))
    tl = Timelines.from_token_times(ids, t0 + t0, early + late, [0.5] * 10 + [1.5] * 10)
    assert fluid_token_rate(tl, None).tokens_per_s == pytest.approx(25.0, rel=1e-3)
    # Judged by one run-wide 0.5 instead, the late half's first token is 1 s late: charged
    # floor(1/D)+1 misses next to 49 on-time tokens; 49/(49 + m) >= 0.9 needs m <= 5, i.e.
    # D > 0.2: the rate drops to 1/0.2 = 5.
    tl = Timelines.from_token_times(ids, t0 + t0, early + late)
    assert fluid_token_rate(tl, 0.5).tokens_per_s == pytest.approx(5.0, rel=1e-3)
