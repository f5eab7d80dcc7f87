"""Throughput over a hand-made run window, arrival rates and the fell-behind verdict."""

import pytest

from etalon.metrics.throughput import arrival_rate, check_load, run_window, throughput
from etalon.records import RequestRecord


def ok(rid, sched, done, out_tokens, prompt=100, sent=None):
    return RequestRecord(request_id=rid, scheduled_at=sched, sent_at=sched if sent is None else sent,
                         completed_at=done, chunk_times=[done], chunk_tokens=[out_tokens],
                         num_prompt_tokens=prompt, prompt_tokens_source="usage")


def test_throughput_over_hand_made_window():
    records = [
        ok(0, 1.0, 3.0, 10), ok(1, 2.0, 4.0, 20), ok(2, 3.0, 6.0, 30),
        RequestRecord(request_id=3, scheduled_at=4.0, sent_at=4.0, completed_at=4.5,
                      error_type="http_500", num_prompt_tokens=100),
    ]
    t = throughput(records)
    # Window: first scheduled 1.0 .. last completion 6.0 = 5 s.
    assert (t.window_start_s, t.window_end_s, t.duration_s) == (1.0, 6.0, 5.0)
    assert t.output_tokens == 60 and t.prompt_tokens == 300   # failed request not counted
    assert t.output_tokens_per_s == pytest.approx(12.0)
    assert t.total_tokens_per_s == pytest.approx(72.0)
    assert t.requests_per_s == pytest.approx(0.6)
    assert t.error_rate == pytest.approx(0.25)


def test_window_starts_at_an_early_send_and_is_none_without_completions():
    w = run_window([ok(0, 1.0, 3.0, 1, sent=0.5)])
    assert (w.start_s, w.end_s) == (0.5, 3.0)
    assert run_window([RequestRecord(request_id=0, scheduled_at=0.0)]) is None
    assert throughput([]).output_tokens_per_s is None


def test_arrival_rate_is_n_minus_one_over_span():
    assert arrival_rate([0.0, 0.5, 1.0, 2.0]) == pytest.approx(3 / 2.0)
    assert arrival_rate([1.0]) is None
    assert arrival_rate([1.0, 1.0]) is None


def schedule(lags):
    # 10 requests scheduled every 0.1 s: target 9 / 0.9 = 10 req/s.
    return [RequestRecord(request_id=i, scheduled_at=0.1 * i, sent_at=0.1 * i + lag)
            for i, lag in enumerate(lags)]


def test_on_schedule_generator_does_not_fall_behind():
    c = check_load(schedule([0.001] * 10))
    assert c.target_qps == pytest.approx(10.0) and c.target_source == "schedule"
    assert c.achieved_qps == pytest.approx(10.0)
    assert c.dispatch_lag_p99_s == pytest.approx(0.001)
    assert not c.fell_behind and c.warning is None


def test_slow_sending_falls_behind_on_rate():
    # Sent every 0.2 s: achieved 9 / 1.8 = 5 req/s < 95% of 10.
    c = check_load(schedule([0.1 * i for i in range(10)]), lag_threshold_s=10.0)
    assert c.achieved_qps == pytest.approx(5.0)
    assert c.fell_behind and "achieved 5 req/s" in c.warning


def test_constant_lag_falls_behind_on_p99_lag_threshold():
    records = schedule([0.02] * 10)  # rate is right, but every request is 20 ms late
    assert check_load(records).fell_behind
    assert "p99 dispatch lag 20.0 ms" in check_load(records).warning
    assert not check_load(records, lag_threshold_s=0.05).fell_behind


def test_given_target_rate_overrides_schedule():
    c = check_load(schedule([0.0] * 10), target_qps=20.0)
    assert c.target_qps == 20.0 and c.target_source == "given"
    assert c.fell_behind  # 10 < 0.95 * 20
    assert not check_load(schedule([0.0] * 10), target_qps=20.0, min_rate_fraction=0.5).fell_behind


def test_window_starts_at_the_schedule_when_sends_are_late():
    w = run_window([ok(0, 1.0, 3.0, 1, sent=2.0)])
    assert (w.start_s, w.end_s) == (1.0, 3.0)


def test_tail_of_lagging_sends_trips_the_p99_lag_check():
    # 100 requests at 10 req/s; the last 5 are sent 50 ms late. p50 lag is 0 but p99 is 50 ms
    # (linear position 98.01 lies between two lagging requests); the rate is still fine:
    # 99 / (9.9 + 0.05) = 9.95 req/s >= 95% of 10.
    records = [RequestRecord(request_id=i, scheduled_at=0.1 * i,
                             sent_at=0.1 * i + (0.05 if i >= 95 else 0.0)) for i in range(100)]
    c = check_load(records)
    assert c.dispatch_lag_p99_s == pytest.approx(0.05)
    assert c.achieved_qps == pytest.approx(99 / 9.95)
    assert c.fell_behind and "p99 dispatch lag 50.0 ms" in c.warning and "achieved" not in c.warning
