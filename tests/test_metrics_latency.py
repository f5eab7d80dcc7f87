"""Per-request latency series from hand-timed records, including multi-token chunks."""

import pytest

from etalon.metrics.latency import latency_series
from etalon.records import RequestRecord


def make_record(**kw) -> RequestRecord:
    base = dict(request_id=0, scheduled_at=1.0, sent_at=1.25, completed_at=4.0,
                chunk_times=[1.75, 2.0, 3.5, 3.75], chunk_tokens=[1, 1, 3, 1],
                num_output_tokens=6, output_tokens_source="usage")
    base.update(kw)
    return RequestRecord(**base)


def test_latencies_of_one_hand_timed_request():
    s = latency_series([make_record()])
    assert s["ttft"].values.tolist() == [0.5]                     # 1.75 - 1.25
    assert s["ttft_from_schedule"].values.tolist() == [0.75]      # 1.75 - 1.0
    assert s["dispatch_lag"].values.tolist() == [0.25]            # 1.25 - 1.0
    assert s["e2e_latency"].values.tolist() == [2.75]             # 4.0 - 1.25
    assert s["e2e_latency_from_schedule"].values.tolist() == [3.0]
    assert s["normalized_latency"].values.tolist() == pytest.approx([2.75 / 6])
    assert s["tpot"].values.tolist() == pytest.approx([(3.75 - 1.75) / 5])  # 0.4
    assert s["tokens_per_chunk"].values.tolist() == [1, 1, 3, 1]


def test_tbt_spreads_a_multi_token_chunk_gap_over_its_tokens():
    s = latency_series([make_record()])
    # chunk 2: gap 0.25, 1 token; chunk 3: gap 1.5 over 3 tokens = 0.5 each; chunk 4: gap 0.25.
    assert s["tbt"].values.tolist() == pytest.approx([0.25, 0.5, 0.5, 0.5, 0.25])
    assert s["tbt"].request_ids.tolist() == [0] * 5
    # Identity: per-token TBT sums to last chunk - first chunk.
    assert sum(s["tbt"].values) == pytest.approx(3.75 - 1.75)


def tpot(record: RequestRecord) -> float | None:
    """The record's TPOT sample, None when it has none."""
    values = latency_series([record])["tpot"].values
    return float(values[0]) if len(values) else None


def test_extra_tokens_of_the_first_chunk_give_no_tbt_sample():
    r = make_record(chunk_times=[1.0, 1.5], chunk_tokens=[2, 1], num_output_tokens=3)
    samples = latency_series([r])["tbt"].values
    assert list(samples) == [0.5]
    assert tpot(r) == pytest.approx(0.5 / 2)


def test_tpot_needs_two_chunks_and_two_tokens():
    assert tpot(make_record(chunk_times=[2.0], chunk_tokens=[5], num_output_tokens=5)) is None
    assert tpot(make_record(chunk_times=[2.0], chunk_tokens=[1], num_output_tokens=1)) is None


def test_failed_requests_only_count_in_dispatch_lag():
    failed = make_record(request_id=1, completed_at=None, error_type="timeout")
    s = latency_series([make_record(), failed])
    assert s["ttft"].request_ids.tolist() == [0]
    assert s["e2e_latency"].request_ids.tolist() == [0]
    assert sorted(s["dispatch_lag"].request_ids.tolist()) == [0, 1]


def test_output_token_count_falls_back_to_streamed_tokens():
    r = make_record(num_output_tokens=None, output_tokens_source=None)  # 1+1+3+1 = 6 tokens
    s = latency_series([r])
    assert s["tpot"].values.tolist() == pytest.approx([0.4])
