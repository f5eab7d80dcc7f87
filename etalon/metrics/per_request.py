"""One flat row per request: the record's own fields next to every per-request metric.

This is what ``requests.csv`` and the W&B request table hold. Metrics a request has no value
for (a failed request's TTFT, a TBT-only column without a TBT deadline) are None.
``ttft_deadline`` is the TTFT deadline (s) the request was judged by: its record's own when
set, else the run-wide one. ``outcome`` is completed, empty, failed or unfinished; latency
columns are filled for completed requests only. ``prompt_token_counts`` and
``output_token_counts`` are every count the client made, as JSON (``{"usage": 158, ...}``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from etalon.metrics.columns import RunColumns
from etalon.metrics.deadlines import row_deadlines, run_wide_ttft
from etalon.metrics.goodput import good_mask
from etalon.record_table import RecordTable
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


def request_frame(
    records: "Sequence[RequestRecord] | RecordTable | RunColumns",
    ttft_deadline: float | str | None = None,
    tbt_deadline: float | None = None,
) -> pd.DataFrame:
    """The rows as a DataFrame with the columns of :data:`COLUMNS`, in record order; times in
    seconds, missing values NaN/None. Computed over the run's columns, no loop per request.

    ``ttft_deadline`` is the run-wide one, used for records without their own; a summary's
    ``parameters.ttft_deadline_s`` can be passed as it is (``"per-request"`` means none).
    """
    ttft_deadline = run_wide_ttft(ttft_deadline)
    c = RunColumns.of(records)
    req, ok = c.table.requests, c.ok
    first, n_out = c.first_chunk, c.output_tokens
    e2e = np.where(ok, c.completed_at - c.sent_at, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = np.where(n_out > 0, e2e / n_out, np.nan)
    has_deadline = (ttft_deadline is not None or tbt_deadline is not None
                    or not np.isnan(c.own_ttft_deadline).all())
    frame = pd.DataFrame({
        "request_id": c.request_id, "client_id": req["client_id"].to_numpy(),
        "replica_id": req["replica_id"].astype("Int64"),
        "scheduled_at": c.scheduled_at, "sent_at": c.sent_at, "completed_at": c.completed_at,
        "ok": ok, "outcome": c.outcome, "error_type": req["error_type"],
        "error_message": req["error_message"], "finish_reason": req["finish_reason"],
        "finish_reason_source": req["finish_reason_source"],
        "requested_prompt_tokens": req["requested_prompt_tokens"].to_numpy(np.int64),
        "prompt_tokens": c.prompt_tokens, "prompt_tokens_source": c.token_source("prompt"),
        "prompt_token_counts": req["prompt_token_counts"],
        "requested_output_tokens": req["requested_output_tokens"].to_numpy(np.int64),
        "output_tokens": n_out, "output_tokens_source": c.token_source("output"),
        "output_token_counts": req["output_token_counts"],
        "num_chunks": c.num_chunks,
        "dispatch_lag": c.sent_at - c.scheduled_at,
        "ttft": np.where(ok, c.ttft, np.nan),
        "ttft_from_schedule": np.where(ok, first - c.scheduled_at, np.nan),
        "tpot": c.tpot, "max_tbt": c.max_tbt, "e2e_latency": e2e,
        "e2e_latency_from_schedule": np.where(ok, c.completed_at - c.scheduled_at, np.nan),
        "normalized_latency": normalized,
        "ttft_deadline": c.ttft_deadlines(ttft_deadline),
        "deadline_misses": pd.array([pd.NA] * len(c), dtype="Int64"),
        "fluidity_index": np.full(len(c), np.nan),
        "min_tbt_deadline": np.full(len(c), np.nan),
        "good": (pd.array(good_mask(c, ttft_deadline, tbt_deadline), dtype="boolean") if has_deadline
                 else pd.array([pd.NA] * len(c), dtype="boolean")),
    }, columns=list(COLUMNS))
    _add_deadline_columns(frame, c, ttft_deadline, tbt_deadline)
    return frame


def request_rows(
    records: "Sequence[RequestRecord] | RecordTable | RunColumns",
    ttft_deadline: float | str | None = None,
    tbt_deadline: float | None = None,
) -> list[dict]:
    """:func:`request_frame` as one dict per request, None where a value is missing."""
    frame = request_frame(records, ttft_deadline, tbt_deadline).astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


def _add_deadline_columns(frame: pd.DataFrame, c: RunColumns, ttft_deadline: float | None,
                          tbt_deadline: float | None) -> None:
    """Deadline columns of completed requests (rows without a value keep NaN)."""
    judged = row_deadlines(c, ttft_deadline, tbt_deadline)  # the summary's, when it ran
    rows = judged.rows
    at = frame.columns.get_loc
    frame.iloc[rows, at("min_tbt_deadline")] = judged.min_tbt
    if tbt_deadline is not None:
        on_time, misses = judged.on_time, judged.misses
        frame.iloc[rows, at("deadline_misses")] = misses
        with np.errstate(divide="ignore", invalid="ignore"):
            frame.iloc[rows, at("fluidity_index")] = on_time / (on_time + misses)
