"""The columnar metrics agree with the per-record definitions on random records, and a run's
records survive the Parquet pair (and load from any of its forms).

The references below are written from the definitions (``RequestRecord``'s properties, the
per-token TBT convention, the deadline rule of ``etalon.metrics.deadlines``' docstring) one
request and one token at a time in plain Python, independently of the arrays under test.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from etalon.cli_errors import UserError
from etalon.metrics import columns as columns_module
from etalon.metrics.columns import RunColumns, tbt_samples, tbt_values
from etalon.metrics.goodput import good_mask
from etalon.metrics.latency import latency_series
from etalon.metrics.per_request import request_frame, request_rows
from etalon.metrics.summary import summarize
from etalon.record_table import RecordTable, read_records, read_table
from etalon.records import RecordWriter, RequestRecord


def random_records(seed: int, n: int = 60) -> list[RequestRecord]:
    """Completed, empty, failed and unfinished requests; zero-token and multi-token chunks;
    some with their own TTFT deadline, some never sent."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t0 = rng.uniform(0, 20)
        kind = rng.choice(["ok", "ok", "ok", "ok", "empty", "failed", "unfinished", "unsent"])
        sent = None if kind == "unsent" else t0 + rng.uniform(0, 0.05)
        times, tokens, t = [], [], (sent or t0)
        if kind in ("ok", "failed", "unfinished"):
            for _ in range(rng.randint(0 if kind != "ok" else 1, 12)):
                t += rng.expovariate(20)
                times.append(t)
                tokens.append(rng.choice([0, 1, 1, 1, 2, 4]))
            if kind == "ok" and not any(tokens):
                tokens[-1] = 1
        completed = None if kind in ("unfinished", "unsent") else t + 0.001
        out.append(RequestRecord(
            request_id=i, scheduled_at=t0, sent_at=sent, completed_at=completed,
            chunk_times=times, chunk_tokens=tokens, requested_prompt_tokens=rng.randint(1, 500),
            requested_output_tokens=12,
            num_output_tokens=rng.choice([None, sum(tokens)]) if kind == "ok" else None,
            output_tokens_source="usage", error_type="timeout" if kind == "failed" else None,
            ttft_deadline=rng.choice([None, None, 0.05, 0.2]),
            prompt_token_counts=rng.choice([{}, {"usage": 7, "tokenizer": 6}])))
    return out


def first_token(r: RequestRecord) -> float:
    """The first chunk that carried a token (a zero-token chunk is not a first token)."""
    return next(t for t, k in zip(r.chunk_times, r.chunk_tokens) if k > 0)


def reference_tbt(r: RequestRecord) -> list[float]:
    chunks = [(t, k) for t, k in zip(r.chunk_times, r.chunk_tokens) if k > 0]
    return [(t - prev) / k for (prev, _), (t, k) in zip(chunks, chunks[1:]) for _ in range(k)]


def reference_deadlines(r: RequestRecord, ttft: float | None, tbt: float) -> tuple[int, int]:
    """(on time, misses) by the rule: the next deadline is max(d, t) + D_tbt."""
    times = [t for t, k in zip(r.chunk_times, r.chunk_tokens) for _ in range(k)]
    ttft = r.ttft_deadline if r.ttft_deadline is not None else ttft
    on_time = misses = 0
    d = r.scheduled_at + ttft if ttft is not None else times[0]
    for i, t in enumerate(times):
        if t <= d:
            on_time += 1 if (i > 0 or ttft is not None) else 0
        else:
            misses += math.floor((t - d) / tbt) + 1
        d = max(d, t) + tbt
    return on_time, misses


@pytest.mark.parametrize("failed_masked", ["one by one", "by row ids"])
@pytest.mark.parametrize("seed", range(4))
def test_tbt_from_chunk_counts_equals_tbt_from_row_ids(seed, failed_masked, monkeypatch):
    # the summary's TBT samples come from each request's chunk count (two passes where every
    # request completed); they must be tbt_samples' own, in its order, whichever way the gaps
    # of failed requests are left out, and with every request completed too
    monkeypatch.setattr(columns_module, "SMALL_MASK", 10 ** 9 if failed_masked == "one by one" else 0)
    recs = random_records(seed, n=200)
    for run in (recs, [r for r in recs if r.ok]):
        c = RunColumns.of(run)
        _, expected = tbt_samples(c.chunk_row, c.chunk_times, c.chunk_tokens, c.ok)
        got = tbt_values(c.num_chunks, c.chunk_times, c.chunk_tokens, c.ok, c.unit_chunks)
        assert len(expected) > 100 and np.array_equal(got, expected)


@pytest.mark.parametrize("seed", range(6))
def test_columnar_metrics_match_the_per_record_definitions(seed):
    recs = random_records(seed)
    series = latency_series(recs)
    ok = [r for r in recs if r.ok]
    assert series["ttft"].values.tolist() == pytest.approx(
        [first_token(r) - r.sent_at for r in ok if r.sent_at is not None])
    assert series["e2e_latency"].values.tolist() == pytest.approx([r.e2e_latency for r in ok])
    assert series["dispatch_lag"].values.tolist() == pytest.approx(
        [r.dispatch_lag for r in recs if r.sent_at is not None])
    assert series["empty_response_latency"].request_ids.tolist() == [r.request_id for r in recs if r.empty]
    assert series["tbt"].values.tolist() == pytest.approx([x for r in ok for x in reference_tbt(r)])
    assert series["tbt"].request_ids.tolist() == [r.request_id for r in ok for _ in reference_tbt(r)]

    ttft_d, tbt_d = 0.1, 0.03
    rows = request_rows(recs, ttft_d, tbt_d)
    good = good_mask(recs, ttft_d, tbt_d)
    for r, row, is_good in zip(recs, rows, good):
        assert row["request_id"] == r.request_id and row["outcome"] == r.outcome and row["ok"] == r.ok
        if not r.ok:
            assert row["ttft"] is None and row["deadline_misses"] is None and not is_good
            continue
        on_time, misses = reference_deadlines(r, ttft_d, tbt_d)
        assert (row["deadline_misses"], row["fluidity_index"]) == (misses, pytest.approx(on_time / (on_time + misses)))
        tbts = reference_tbt(r)
        assert row["max_tbt"] == (pytest.approx(max(tbts)) if tbts else None)
        # good: TTFT from send within its deadline and no TBT miss (first-token misses aside)
        due = r.ttft_deadline if r.ttft_deadline is not None else ttft_d
        assert is_good == (first_token(r) - r.sent_at <= due and reference_tbt_misses(r, due, tbt_d) == 0), r


@pytest.mark.parametrize("block", [1, 2, 7, 64])
def test_largest_tbt_is_the_same_when_computed_a_few_chunks_at_a_time(monkeypatch, block):
    """``max_tbt`` reduces the chunk gaps a block of requests at a time (bounded memory): with
    blocks of a few chunks every block edge falls inside or between requests, and each request's
    largest gap is still its own (failed requests' gaps never leak into a neighbour's)."""
    import etalon.metrics.columns as columns

    monkeypatch.setattr(columns, "GAP_BLOCK", block)
    for seed in range(4):
        recs = random_records(seed)
        got = RunColumns.of(recs).max_tbt
        for r, value in zip(recs, got):
            tbts = reference_tbt(r) if r.ok else []
            assert (value == pytest.approx(max(tbts))) if tbts else np.isnan(value), r


def reference_tbt_misses(r: RequestRecord, ttft: float, tbt: float) -> int:
    """Misses after the first token, under the same schedule (first-token misses left out)."""
    times = [t for t, k in zip(r.chunk_times, r.chunk_tokens) for _ in range(k)]
    d, misses = r.scheduled_at + ttft, 0
    for i, t in enumerate(times):
        if t > d and i > 0:
            misses += math.floor((t - d) / tbt) + 1
        d = max(d, t) + tbt
    return misses


def test_a_run_reads_back_from_parquet_jsonl_or_its_directory(tmp_path):
    recs = random_records(7)
    RecordTable.from_records(recs).write(tmp_path / "pq")
    with RecordWriter(tmp_path / "js" / "requests.jsonl") as w:
        w.write_all(recs)
    for where in (tmp_path / "pq", tmp_path / "pq" / "requests.parquet", tmp_path / "js",
                  tmp_path / "js" / "requests.jsonl"):
        assert read_records(where) == recs, where
    table = read_table(tmp_path / "pq")
    assert len(table) == 60 and table.chunk_times.tolist() == [t for r in recs for t in r.chunk_times]


@pytest.mark.parametrize("slice_chunks", [1, 5, 1 << 22])
def test_tokens_parquet_names_each_chunks_request_whatever_the_write_slice(tmp_path, monkeypatch,
                                                                          slice_chunks):
    # slices that cut requests anywhere, requests without chunks among them
    monkeypatch.setattr("etalon.record_table._WRITE_SLICE", slice_chunks)
    recs = random_records(8)
    assert any(not r.chunk_times for r in recs)
    RecordTable.from_records(recs).write(tmp_path)
    tokens = pd.read_parquet(tmp_path / "tokens.parquet")
    assert tokens["request_id"].tolist() == [r.request_id for r in recs for _ in r.chunk_times]
    assert tokens["tokens"].tolist() == [k for r in recs for k in r.chunk_tokens]
    assert read_records(tmp_path) == recs


def test_a_damaged_table_is_one_line_naming_the_file(tmp_path):
    RecordTable.from_records(random_records(1)).write(tmp_path)
    (tmp_path / "tokens.parquet").unlink()
    with pytest.raises(UserError, match="tokens.parquet: not found"):
        read_table(tmp_path)
    (tmp_path / "requests.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "tokens.parquet").write_bytes(b"PAR1")
    with pytest.raises(UserError, match="requests.parquet: not a readable records table"):
        read_table(tmp_path / "requests.parquet")


def test_chunk_counts_must_match_the_chunk_table():
    table = RecordTable.from_records(random_records(2))
    with pytest.raises(UserError, match="chunks counted"):
        RecordTable(table.requests, table.chunk_times[:-1], table.chunk_tokens[:-1])
    assert np.array_equal(table.offsets[1:] - table.offsets[:-1], table.requests["num_chunks"])


def test_a_table_given_field_by_field_is_the_table_of_the_same_records():
    # the simulator hands its requests over as per-field lists (no record objects): the table
    # must be the one its records would give, fields left out taking the record's defaults
    recs = [RequestRecord(request_id=i, scheduled_at=0.5 * i, sent_at=0.5 * i,
                          completed_at=0.5 * i + 0.2, chunk_times=[0.5 * i + 0.1, 0.5 * i + 0.2],
                          chunk_tokens=[1, 1], num_output_tokens=2, output_tokens_source="simulated",
                          replica_id=i % 2, session_id=None if i % 3 else i)
            for i in range(7)]
    given = ("request_id", "scheduled_at", "sent_at", "completed_at", "num_output_tokens",
             "output_tokens_source", "replica_id", "session_id")
    table = RecordTable.from_values({name: [getattr(r, name) for r in recs] for name in given},
                                    [np.array(r.chunk_times) for r in recs])
    expected = RecordTable.from_records(recs)
    pd.testing.assert_frame_equal(table.requests, expected.requests)
    assert np.array_equal(table.chunk_times, expected.chunk_times)
    assert np.array_equal(table.chunk_tokens, expected.chunk_tokens)
    assert table.chunk_tokens.dtype == expected.chunk_tokens.dtype


def test_requests_csv_reuses_the_summarys_deadline_results_only_at_the_same_deadlines():
    recs = random_records(9)
    for tbt in (0.02, 0.05, None):
        shared = RunColumns.of(recs)
        summarize(recs, ttft_deadline=0.05, tbt_deadline=0.02, columns=shared)  # judged at 0.02
        got = request_frame(shared, 0.05, tbt)
        want = request_frame(RunColumns.of(recs), 0.05, tbt)
        pd.testing.assert_frame_equal(got, want)
        assert got["min_tbt_deadline"].notna().sum() == sum(r.ok for r in recs)
