"""Requested vs delivered lengths, empty responses as their own outcome, inferred finish reasons,
and old records without the new fields: hand-built records with numbers worked out below."""

import json

import pytest

from etalon.client.finish import settle_finish
from etalon.metrics.lengths import LengthTolerance, output_lengths
from etalon.metrics.summary import summarize
from etalon.records import RequestRecord
from etalon.report.console import format_summary


def answered(rid, requested, delivered, *, reason="length", counts=None):
    """A request that asked for ``requested`` tokens and streamed ``delivered``, one per chunk."""
    times = [rid + 0.1 * (k + 1) for k in range(delivered)]
    return RequestRecord(request_id=rid, scheduled_at=float(rid), sent_at=float(rid),
                         completed_at=rid + 0.1 * (delivered + 1), chunk_times=times,
                         chunk_tokens=[1] * delivered, requested_output_tokens=requested,
                         num_output_tokens=delivered, output_tokens_source="usage",
                         finish_reason=reason, finish_reason_source="server",
                         output_token_counts=counts or {"usage": delivered, "chunks": delivered})


def test_short_rule_tolerates_one_token_or_two_percent():
    tol = LengthTolerance()
    assert not tol.is_short(32, 31)      # 1 token short: within the one-token slack
    assert tol.is_short(32, 30)          # 2 > max(1, 0.64)
    assert not tol.is_short(200, 196)    # 4 <= 2 % of 200
    assert tol.is_short(200, 195)        # 5 > 4
    assert not tol.is_short(0, 0)        # no requested length: nothing to check
    assert [tol.max_short_requests(n) for n in (1, 12, 299, 300, 1000)] == [2, 2, 2, 3, 10]


def test_a_run_with_early_stops_warns_and_counts_empty_responses():
    # 12 requests of 10 tokens: 8 delivered, 2 stopped after 1 token, 2 after none.
    records = ([answered(i, 10, 10) for i in range(8)]
               + [answered(8, 10, 1, reason="stop"), answered(9, 10, 1, reason="stop")]
               + [answered(10, 10, 0, reason="stop"), answered(11, 10, 0, reason="stop")])
    s = summarize(records)
    out = s["lengths"]["output"]
    assert (out["requested_tokens"], out["delivered_tokens"]) == (120, 82)
    assert (out["num_checked"], out["num_short"], out["num_empty"]) == (12, 4, 2)
    assert out["delivered_fraction"] == pytest.approx(82 / 120)
    assert out["short"] and "4 of 12 requests" in out["warning"] and "82 of 120" in out["warning"]
    assert s["warnings"] == [out["warning"]]
    c = s["counts"]
    assert (c["num_completed"], c["num_empty"], c["num_errors"], c["num_unfinished"]) == (10, 2, 0, 0)
    assert c["finish_reasons"] == {"length": 8, "stop": 4}
    # Empty responses are in neither TTFT nor E2E, but in their own latency (0.1 s each).
    lat = s["latency"]
    assert lat["ttft"]["count"] == lat["e2e_latency"]["count"] == 10
    assert lat["empty_response_latency"]["count"] == 2
    assert lat["empty_response_latency"]["max"] == pytest.approx(0.1)
    assert s["throughput"]["num_empty"] == 2 and s["throughput"]["num_completed"] == 10
    assert s["goodput"] is None
    text = format_summary(s)
    assert "WARNING: OUTPUTS SHORTER THAN REQUESTED" in text
    assert "82 of 120 requested (68.3%); 4 requests short, 2 empty" in text


def test_two_short_requests_are_counted_without_a_warning():
    records = [answered(i, 10, 10) for i in range(10)] + [answered(10, 10, 3), answered(11, 10, 0)]
    s = summarize(records)
    assert s["lengths"]["output"]["num_short"] == 2
    assert not s["lengths"]["output"]["short"] and s["warnings"] == []
    assert "WARNING" not in format_summary(s)


def test_count_disagreement_is_summarised_by_source_pair():
    # Chunk counts used; the tokenizer re-counted 7 (-3) and 10 (0) for two 10-token outputs.
    a = answered(0, 10, 10, counts={"chunks": 10, "tokenizer": 7})
    b = answered(1, 10, 10, counts={"chunks": 10, "tokenizer": 10})
    for r in (a, b):
        r.output_tokens_source = "chunks"
    d = output_lengths([a, b]).disagreement
    assert d == {"tokenizer vs chunks": {"num_requests": 2, "num_differ": 1, "mean": -1.5,
                                         "min": -3, "max": 0}}


def test_finish_reason_is_inferred_when_the_server_sent_none():
    full, early = answered(0, 8, 8, reason=None), answered(1, 8, 2, reason=None)
    for r in (full, early):
        r.finish_reason_source = None
        settle_finish(r)
    assert (full.finish_reason, full.finish_reason_source) == ("length", "inferred")
    assert (early.finish_reason, early.finish_reason_source) == ("stop", "inferred")
    s = summarize([full, early])
    assert s["counts"]["finish_reason_sources"] == {"inferred": 2}
    assert "(2 inferred: the server sent none)" in format_summary(s)


def test_require_exact_makes_short_records_failures_that_lengths_still_count():
    short, fine = answered(0, 8, 2), answered(1, 8, 8)
    settle_finish(short, require_exact_output_lengths=True)
    settle_finish(fine, require_exact_output_lengths=True)
    assert short.error_type == "short_output" and short.outcome == "failed"
    assert short.error_message.startswith("delivered 2 of 8 requested output tokens")
    assert fine.error_type is None and fine.ok
    out = summarize([short, fine])["lengths"]["output"]
    assert (out["num_checked"], out["num_short"], out["num_failed_short"]) == (2, 1, 1)


def test_old_records_load_and_are_not_checked_for_length():
    old = {"request_id": 0, "scheduled_at": 0.0, "sent_at": 0.0, "completed_at": 1.0,
           "chunk_times": [0.5], "chunk_tokens": [1], "num_output_tokens": 1,
           "output_tokens_source": "usage", "finish_reason": "length"}
    rec = RequestRecord.from_dict(json.loads(json.dumps(old)))
    assert rec.ok and rec.outcome == "completed" and rec.prompt_token_counts == {}
    assert rec.finish_reason_source is None
    assert summarize([rec])["lengths"]["output"]["num_checked"] == 0  # requested length unknown
    with pytest.raises(ValueError, match="output_token_counts must be an object"):
        RequestRecord.from_dict({**old, "output_token_counts": [1]})
