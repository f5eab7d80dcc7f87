"""summarize(): the JSON-able run summary, including empty and all-error runs."""

import json

import pytest

from etalon.metrics.summary import summarize
from etalon.records import RequestRecord


def ok(rid, sched, chunks, out_source="usage"):
    return RequestRecord(request_id=rid, scheduled_at=sched, sent_at=sched,
                         completed_at=chunks[-1] + 0.25, chunk_times=chunks,
                         chunk_tokens=[1] * len(chunks), num_output_tokens=len(chunks),
                         output_tokens_source=out_source, num_prompt_tokens=8,
                         prompt_tokens_source="tokenizer", finish_reason="length")


def failed(rid, sched, kind):
    return RequestRecord(request_id=rid, scheduled_at=sched, sent_at=sched, error_type=kind,
                         error_message="boom")


def strict_json(summary):
    return json.loads(json.dumps(summary, allow_nan=False))


def test_empty_run_does_not_crash():
    s = summarize([], ttft_deadline=1.0, tbt_deadline=0.5, target_qps=2.0)
    strict_json(s)
    assert s["counts"]["num_requests"] == 0
    assert s["latency"]["ttft"]["count"] == 0 and s["latency"]["ttft"]["p50"] is None
    assert s["throughput"]["output_tokens_per_s"] is None
    assert s["deadlines"]["num_requests_evaluated"] == 0
    assert s["deadlines"]["fluid_token_rate"]["tokens_per_s"] is None
    assert s["goodput"]["num_good"] == 0 and s["goodput"]["fraction"] is None


def test_all_error_run_counts_errors_by_type():
    records = [failed(0, 0.0, "timeout"), failed(1, 0.5, "http_500"), failed(2, 1.0, "timeout")]
    s = summarize(records, ttft_deadline=1.0, tbt_deadline=0.5)
    strict_json(s)
    assert s["counts"]["num_errors"] == 3 and s["counts"]["num_completed"] == 0
    assert s["counts"]["errors_by_type"] == {"http_500": 1, "timeout": 2}
    assert s["latency"]["ttft"]["count"] == 0
    assert s["latency"]["dispatch_lag"]["count"] == 3
    assert s["deadlines"]["mean_miss_rate"] is None
    assert s["goodput"]["num_good"] == 0 and s["goodput"]["fraction"] == 0.0


def test_summary_of_a_small_run():
    records = [
        ok(0, 0.0, [0.5, 1.0, 1.5]),          # on time throughout: 3 deadlines, 0 misses
        ok(1, 1.0, [1.25, 3.0], "chunks"),    # token 2 due 2.0+0.5... see below
        failed(2, 2.0, "http_500"),
    ]
    # Request 1: token 1 due 2.0 at 1.25 (on time), token 2 due 2.5 at 3.0:
    # floor(0.5/0.5)+1 = 2 misses -> miss rate 2/3. Mean miss rate over requests = (0 + 2/3)/2.
    s = summarize(records, ttft_deadline=1.0, tbt_deadline=0.5)
    strict_json(s)
    d = s["deadlines"]
    assert (d["deadlines_total"], d["misses"], d["first_token_misses"]) == (6, 2, 0)
    assert d["mean_miss_rate"] == pytest.approx(1 / 3)
    assert d["fluidity_index"]["min"] == pytest.approx(1 / 3)
    assert s["counts"]["token_count_sources"]["output"] == {"chunks": 2, "usage": 1}
    assert s["counts"]["finish_reasons"] == {"length": 2}
    # Window 0.0 .. 3.25 (request 1 completes at 3.0 + 0.25); 5 output tokens.
    assert s["throughput"]["output_tokens_per_s"] == pytest.approx(5 / 3.25)
    assert s["goodput"]["num_good"] == 1
    assert s["latency"]["ttft"]["count"] == 2


def test_deadline_parts_are_skipped_without_deadlines():
    s = summarize([ok(0, 0.0, [0.5, 1.0])])
    assert s["goodput"] is None
    assert s["deadlines"]["misses"] is None and s["deadlines"]["fluidity_index"] is None
    # The minimum TBT deadline needs no deadline: anchor at the first token, 1.0 - 0.5 = 0.5.
    assert s["deadlines"]["min_tbt_deadline"]["max"] == pytest.approx(0.5)


def test_non_positive_deadline_is_rejected():
    with pytest.raises(ValueError, match="tbt_deadline"):
        summarize([], tbt_deadline=0.0)
