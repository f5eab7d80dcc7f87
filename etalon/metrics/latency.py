"""Per-request latency series from records: TTFT, TBT, TPOT, end-to-end and dispatch lag.

All times are seconds. Latency metrics read completed requests only (``record.ok``: no error
and at least one streamed token), so an error that returns in 2 ms never makes the server look
fast. An *empty* response (completed, no token) has no first token, so it is left out of every
latency metric alike — TTFT and E2E both — and gets its own ``empty_response_latency``;
errors are counted separately. Dispatch lag reads every request that was sent, because it
measures the load generator. Each metric's ``includes`` says this in the summary.

TBT convention (per token): the first content chunk's tokens are covered by TTFT and give no
TBT sample. Every later chunk that carries k tokens and arrives g seconds after the previous
content chunk contributes k samples of g/k. So there is one sample per token after the first
chunk and the samples of a request sum to ``last_chunk - first_chunk``. Because spreading hides
bursts, ``tokens_per_chunk`` is reported alongside: a p50 above 1 means the server batches tokens
into its SSE events and TBT is an average over each batch.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from etalon.metrics.columns import RunColumns, tbt_samples, tbt_values
from etalon.metrics.series import MetricSpec, Series
from etalon.record_table import RecordTable
from etalon.records import RequestRecord

COMPLETED = "completed requests (no error, >= 1 streamed token); not failed or empty ones"
TTFT = MetricSpec("ttft", "s", "first content chunk - sent_at", COMPLETED)
TTFT_FROM_SCHEDULE = MetricSpec("ttft_from_schedule", "s", "first content chunk - scheduled_at",
                                COMPLETED)
TBT = MetricSpec("tbt", "s", "gap before a chunk / tokens in it, one sample per token",
                 "every token after the first chunk of completed requests")
TOKENS_PER_CHUNK = MetricSpec("tokens_per_chunk", "tokens", "tokens carried by each content chunk",
                              "every content chunk of completed requests")
TPOT = MetricSpec("tpot", "s", "(last chunk - first chunk) / (output tokens - 1)",
                  "completed requests with >= 2 chunks and >= 2 output tokens")
E2E = MetricSpec("e2e_latency", "s", "completed_at - sent_at", COMPLETED)
E2E_FROM_SCHEDULE = MetricSpec("e2e_latency_from_schedule", "s", "completed_at - scheduled_at",
                               COMPLETED)
NORMALIZED = MetricSpec("normalized_latency", "s/token", "e2e_latency / output tokens", COMPLETED)
EMPTY = MetricSpec("empty_response_latency", "s", "completed_at - sent_at",
                   "empty responses only (completed without error, no streamed token)")
DISPATCH_LAG = MetricSpec("dispatch_lag", "s", "sent_at - scheduled_at",
                          "every sent request, failed and empty ones included")

LATENCY_METRICS: tuple[MetricSpec, ...] = (
    TTFT, TTFT_FROM_SCHEDULE, TBT, TOKENS_PER_CHUNK, TPOT,
    E2E, E2E_FROM_SCHEDULE, NORMALIZED, EMPTY, DISPATCH_LAG,
)


def latency_series(records: "Iterable[RequestRecord] | RecordTable | RunColumns") -> dict[str, Series]:
    """Every latency metric of :data:`LATENCY_METRICS` as a :class:`Series`, keyed by name,
    computed over the run's columns (samples in request order)."""
    c = RunColumns.of(records)
    cached = c.__dict__.get("_latency_series")  # the summary, files and plots each ask once
    if cached is not None:
        return dict(cached)
    c.__dict__["_latency_series"] = out = _latency_series(c)
    return dict(out)


def _latency_series(c: RunColumns) -> dict[str, Series]:
    ids, ok, sent = c.request_id, c.ok, ~np.isnan(c.sent_at)
    first, n_out = c.first_chunk, c.output_tokens
    e2e = c.completed_at - c.sent_at
    out = {spec.name: Series(spec) for spec in LATENCY_METRICS}

    def put(spec: MetricSpec, mask: np.ndarray, values: np.ndarray) -> None:
        out[spec.name] = Series(spec, ids[mask], values[mask])

    put(DISPATCH_LAG, sent, c.sent_at - c.scheduled_at)
    put(EMPTY, c.empty & sent, e2e)
    put(TTFT, ok & sent, c.ttft)
    put(TTFT_FROM_SCHEDULE, ok, first - c.scheduled_at)
    # Per-token ids on demand (see Series): nothing in a run's outputs reads them. The
    # functions hold the columns' arrays, not the columns (which cache these series).
    # (no row id per chunk where every request completed: 44 M of them in a 100k-request run)
    times, tokens, n_chunks = c.chunk_times, c.chunk_tokens, c.num_chunks
    every = bool(ok.all())
    made = None if every else c.chunk_row

    def row() -> np.ndarray:  # c.chunk_row, from the counts alone (the series keep no columns)
        return made if made is not None else np.repeat(np.arange(len(n_chunks)), n_chunks)

    def chunk_ids() -> np.ndarray:
        rows = row()
        return ids[rows[ok[rows]]]

    out[TOKENS_PER_CHUNK.name] = Series(TOKENS_PER_CHUNK, chunk_ids,
                                        tokens if every else tokens[ok[made]])
    samples = tbt_values(n_chunks, times, tokens, ok, c.unit_chunks)
    out[TBT.name] = Series(TBT, lambda: ids[tbt_samples(row(), times, tokens, ok)[0]], samples)
    put(TPOT, ~np.isnan(c.tpot), c.tpot)
    with np.errstate(divide="ignore", invalid="ignore"):
        put(E2E, ok & sent, e2e)
        put(NORMALIZED, ok & sent & (n_out >= 1), e2e / n_out)
    put(E2E_FROM_SCHEDULE, ok, c.completed_at - c.scheduled_at)
    return out
