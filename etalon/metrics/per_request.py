"""One flat row per request: the record's own fields next to every per-request metric.

This is what ``requests.csv`` and the W&B request table hold. Metrics a request has no value
for (a failed request's TTFT, a TBT-only column without a TBT deadline) are None.
``ttft_deadline`` is the TTFT deadline (s) the request was judged by: its record's own when
set, else the run-wide one. ``outcome`` is completed, empty, failed or unfinished; latency
columns are filled for completed requests only. ``prompt_token_counts`` and
``output_token_counts`` are every count the client made, as JSON (``{"usage": 158, ...}``).
"""

from __future__ import annotations

import json
from typing import Sequence

from etalon.metrics.deadlines import (
    Timelines, evaluate_timelines, min_tbt_deadlines, run_wide_ttft, ttft_deadline_of,
)
from etalon.metrics.goodput import good_mask
from etalon.metrics.latency import tbt_samples, tpot
from etalon.metrics.tokens import content_chunks, output_tokens, prompt_tokens, token_times
from etalon.records import RequestRecord

COLUMNS: tuple[str, ...] = (
    "request_id", "client_id", "replica_id", "scheduled_at", "sent_at", "completed_at",
    "ok", "outcome", "error_type", "error_message", "finish_reason", "finish_reason_source",
    "requested_prompt_tokens", "prompt_tokens", "prompt_tokens_source", "prompt_token_counts",
    "requested_output_tokens", "output_tokens", "output_tokens_source", "output_token_counts",
    "num_chunks", "dispatch_lag", "ttft", "ttft_from_schedule", "tpot", "max_tbt",
    "e2e_latency", "e2e_latency_from_schedule", "normalized_latency",
    "ttft_deadline", "deadline_misses", "fluidity_index", "min_tbt_deadline", "good",
)


def request_rows(
    records: Sequence[RequestRecord],
    ttft_deadline: float | str | None = None,
    tbt_deadline: float | None = None,
) -> list[dict]:
    """Rows with the keys of :data:`COLUMNS`, in record order; times in seconds.

    ``ttft_deadline`` is the run-wide one, used for records without their own; a summary's
    ``parameters.ttft_deadline_s`` can be passed as it is (``"per-request"`` means none).
    """
    ttft_deadline = run_wide_ttft(ttft_deadline)
    deadline_cols = _deadline_columns(records, ttft_deadline, tbt_deadline)
    has_deadline = (ttft_deadline is not None or tbt_deadline is not None
                    or any(r.ttft_deadline is not None for r in records))
    good = good_mask(records, ttft_deadline, tbt_deadline) if has_deadline else None
    rows = []
    for i, r in enumerate(records):
        times, tokens = content_chunks(r)
        n_prompt, prompt_src = prompt_tokens(r)
        n_out, out_src = output_tokens(r)
        tbts = tbt_samples(times, tokens) if r.ok else []
        e2e = r.e2e_latency if r.ok else None
        row = {
            "request_id": r.request_id, "client_id": r.client_id, "replica_id": r.replica_id,
            "scheduled_at": r.scheduled_at, "sent_at": r.sent_at, "completed_at": r.completed_at,
            "ok": r.ok, "outcome": r.outcome, "error_type": r.error_type,
            "error_message": r.error_message, "finish_reason": r.finish_reason,
            "finish_reason_source": r.finish_reason_source,
            "requested_prompt_tokens": r.requested_prompt_tokens,
            "prompt_tokens": n_prompt, "prompt_tokens_source": prompt_src,
            "prompt_token_counts": _json(r.prompt_token_counts),
            "requested_output_tokens": r.requested_output_tokens,
            "output_tokens": n_out, "output_tokens_source": out_src,
            "output_token_counts": _json(r.output_token_counts),
            "num_chunks": int(len(times)),
            "dispatch_lag": r.dispatch_lag,
            "ttft": r.ttft if r.ok else None,
            "ttft_from_schedule": r.ttft_from_schedule if r.ok else None,
            "tpot": tpot(r) if r.ok else None,
            "max_tbt": float(max(tbts)) if len(tbts) else None,
            "e2e_latency": e2e,
            "e2e_latency_from_schedule": r.completed_at - r.scheduled_at if r.ok else None,
            "normalized_latency": e2e / n_out if e2e is not None and n_out > 0 else None,
            "ttft_deadline": ttft_deadline_of(r, ttft_deadline),
            "deadline_misses": None, "fluidity_index": None, "min_tbt_deadline": None,
            "good": good[i] if good is not None else None,
        }
        row.update(deadline_cols.get(i, {}))
        rows.append(row)
    return rows


def _json(counts: dict) -> str | None:
    return json.dumps(counts, separators=(",", ":"), sort_keys=True) if counts else None


def _deadline_columns(
    records: Sequence[RequestRecord], ttft_deadline: float | None, tbt_deadline: float | None
) -> dict[int, dict]:
    """Deadline columns keyed by record index, for successful requests with tokens."""
    idx = [i for i, r in enumerate(records) if r.ok]
    tl = Timelines.from_token_times(
        idx, [records[i].scheduled_at for i in idx], [token_times(records[i]) for i in idx],
        [records[i].ttft_deadline for i in idx],
    )
    out = {int(i): {"min_tbt_deadline": float(d)}
           for i, d in zip(tl.request_ids, min_tbt_deadlines(tl, ttft_deadline))}
    if tbt_deadline is not None:
        on_time, misses, _ = evaluate_timelines(tl, ttft_deadline, tbt_deadline)
        for i, n_on_time, n_miss in zip(tl.request_ids, on_time, misses):
            out[int(i)]["deadline_misses"] = int(n_miss)
            out[int(i)]["fluidity_index"] = float(n_on_time / (n_on_time + n_miss))
    return out
