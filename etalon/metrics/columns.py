"""The per-request quantities every metric starts from, computed once over a run's columns.

What ``RequestRecord``'s properties (``ok``, ``outcome``, ...) and :mod:`etalon.metrics.tokens`
say about one request, as arrays over all of them: no Python call per request or per token.
Content chunks are the ones that carried a token: a zero-token chunk never counts as a first
token or resets a gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import numpy as np

from etalon.record_table import RecordTable
from etalon.records import RequestRecord

GAP_BLOCK = 1 << 22  # chunks whose gaps are held at once (32 MB) by RunColumns.max_tbt


@dataclass(frozen=True)
class RunColumns:
    """One run's per-request arrays (row i = ``table.requests`` row i) and content chunks."""

    table: RecordTable

    @classmethod
    def of(cls, records: "Iterable[RequestRecord] | RecordTable | RunColumns") -> "RunColumns":
        """Columns of records, of a table, or themselves (so a caller builds them once)."""
        if isinstance(records, RunColumns):
            return records
        return cls(RecordTable.from_records(records))

    def __len__(self) -> int:
        return len(self.table)

    # --- the record's own columns -----------------------------------------------------------

    @cached_property
    def request_id(self) -> np.ndarray:
        return self.table.requests["request_id"].to_numpy(np.int64)

    @cached_property
    def scheduled_at(self) -> np.ndarray:
        return self.table.numbers("scheduled_at")

    @cached_property
    def sent_at(self) -> np.ndarray:
        return self.table.numbers("sent_at")

    @cached_property
    def completed_at(self) -> np.ndarray:
        return self.table.numbers("completed_at")

    @cached_property
    def own_ttft_deadline(self) -> np.ndarray:
        """Each request's own TTFT deadline (s), NaN where the run-wide one applies."""
        return self.table.numbers("ttft_deadline")

    # --- content chunks -----------------------------------------------------------------------

    @cached_property
    def _content(self) -> np.ndarray | slice:
        """The content chunks: every one (a slice, so the columns below are views, not copies
        of 44 M values) unless some chunk carried no token."""
        content = self.table.chunk_tokens > 0
        return slice(None) if content.all() else content

    @cached_property
    def chunk_row(self) -> np.ndarray:
        """The request row of every content chunk (request order, arrival order within);
        int32 where the rows allow it, half the memory of the longest column of a run."""
        dtype = np.int32 if len(self) < 2 ** 31 else np.int64
        rows = np.repeat(np.arange(len(self), dtype=dtype),
                         self.table.requests["num_chunks"].to_numpy(np.int64))
        return rows[self._content]

    @cached_property
    def chunk_times(self) -> np.ndarray:
        return self.table.chunk_times[self._content]

    @cached_property
    def chunk_tokens(self) -> np.ndarray:
        return self.table.chunk_tokens[self._content]

    @cached_property
    def unit_chunks(self) -> bool:
        """Whether every content chunk carried exactly one token (a simulator's, most servers')."""
        return bool((self.chunk_tokens == 1).all())

    @property
    def chunk_weights(self) -> np.ndarray | None:
        """Tokens per content chunk as counting weights, None where every chunk is one token
        (a histogram then counts chunks: numpy's faster unweighted path, no weight array)."""
        return None if self.unit_chunks else self.chunk_tokens

    @cached_property
    def num_chunks(self) -> np.ndarray:
        """Content chunks per request (the table's count where every chunk carried content)."""
        if isinstance(self._content, slice):
            return self.table.requests["num_chunks"].to_numpy(np.int64).copy()
        return np.bincount(self.chunk_row, minlength=len(self)).astype(np.int64)

    @cached_property
    def streamed_tokens(self) -> np.ndarray:
        """Tokens the content chunks carried, per request: one sum per request's run of chunks,
        no float weights or row ids over every chunk (1.8 s at 44 M chunks before)."""
        n = self.num_chunks
        if self.unit_chunks:
            return n.copy()
        out = np.zeros(len(self), dtype=np.int64)
        has = n > 0
        if has.any():
            starts = np.cumsum(n) - n
            out[has] = np.add.reduceat(self.chunk_tokens, starts[has], dtype=np.int64)
        return out

    @cached_property
    def first_chunk(self) -> np.ndarray:
        """Arrival of each request's first content chunk; NaN without one."""
        return self._at(np.concatenate([[0], np.cumsum(self.num_chunks)[:-1]]))

    @cached_property
    def last_chunk(self) -> np.ndarray:
        """Arrival of each request's last content chunk; NaN without one."""
        return self._at(np.cumsum(self.num_chunks) - 1)

    def _at(self, index: np.ndarray) -> np.ndarray:
        out = np.full(len(self), np.nan)
        has = self.num_chunks > 0
        out[has] = self.chunk_times[index[has]]
        return out

    # --- per-request latencies (NaN where a request has none) ---------------------------------

    @cached_property
    def ttft(self) -> np.ndarray:
        """First content chunk - sent_at."""
        return self.first_chunk - self.sent_at

    @cached_property
    def tpot(self) -> np.ndarray:
        """(last - first content chunk) / (output tokens - 1), for completed requests with 2+
        content chunks and 2+ output tokens."""
        n = self.output_tokens
        defined = self.ok & (self.num_chunks >= 2) & (n >= 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(defined, (self.last_chunk - self.first_chunk) / (n - 1), np.nan)

    def ttft_deadlines(self, default: float | None) -> np.ndarray:
        """Each request's TTFT deadline (s): its own, else ``default``; NaN where it has none."""
        own = self.own_ttft_deadline
        return np.where(np.isnan(own), np.nan if default is None else default, own)

    # --- outcomes -----------------------------------------------------------------------------

    @cached_property
    def answered(self) -> np.ndarray:
        """Completed without error (with or without tokens)."""
        return self.table.missing("error_type") & ~np.isnan(self.completed_at)

    @cached_property
    def ok(self) -> np.ndarray:
        """``RequestRecord.ok``: completed without error with at least one token."""
        return self.answered & (self.streamed_tokens > 0)

    @cached_property
    def empty(self) -> np.ndarray:
        """``RequestRecord.empty``: completed without error, no token."""
        return self.answered & (self.streamed_tokens == 0)

    @cached_property
    def outcome(self) -> np.ndarray:
        """``RequestRecord.outcome`` per request."""
        failed = ~self.table.missing("error_type")
        return np.select([failed, np.isnan(self.completed_at), self.streamed_tokens > 0],
                         ["failed", "unfinished", "completed"], "empty").astype(object)

    # --- token counts -------------------------------------------------------------------------

    @cached_property
    def output_tokens(self) -> np.ndarray:
        """:func:`etalon.metrics.tokens.output_tokens`: the record's count, else streamed tokens."""
        own = self.table.numbers("num_output_tokens")
        return np.where(np.isnan(own), self.streamed_tokens, own).astype(np.int64)

    @cached_property
    def prompt_tokens(self) -> np.ndarray:
        """The record's own prompt count, else the requested length."""
        own = self.table.numbers("num_prompt_tokens")
        return np.where(np.isnan(own), self.table.numbers("requested_prompt_tokens"), own).astype(np.int64)

    def token_source(self, kind: str) -> np.ndarray:
        """Where each request's ``prompt`` or ``output`` count came from (as ``tokens`` says)."""
        own = self.table.requests[f"{kind}_tokens_source"].astype(object)
        counted = ~self.table.missing(f"num_{kind}_tokens")
        fallback = "chunks" if kind == "output" else "requested"
        return np.where(counted, own.where(own.notna(), "unknown").to_numpy(), fallback).astype(object)

    # --- tokens of completed requests ---------------------------------------------------------

    @cached_property
    def max_tbt(self) -> np.ndarray:
        """Each completed request's largest TBT sample; NaN without two content chunks.

        The gaps between consecutive chunks reduced per request, a block of requests (up to
        GAP_BLOCK chunks) at a time: no per-token row ids or masks, and no gap array of every
        chunk (350 MB at 44 M chunks, the peak of writing ``requests.csv``)."""
        out = np.full(len(self), np.nan)
        n = self.num_chunks
        ends = np.cumsum(n)
        starts = ends - n
        segments = np.flatnonzero(n >= 2)
        if segments.size == 0:
            return out
        # the requests of a block: those whose first chunk lies in the same GAP_BLOCK (a longer
        # request makes a block of its own)
        cuts = np.searchsorted(starts[segments], np.arange(0, ends[-1], GAP_BLOCK)[1:])
        for rows in np.split(segments, np.unique(cuts)):
            if rows.size == 0:
                continue
            s0, s1 = int(starts[rows[0]]), int(ends[rows[-1]])
            gaps = np.diff(self.chunk_times[s0:s1])  # gaps[j]: chunk s0 + j to the next
            if not self.unit_chunks:
                gaps /= self.chunk_tokens[s0 + 1:s1]  # a chunk of k tokens: k samples of gap / k
            # the gap into any request's first chunk is no sample; a segment then runs from one
            # multi-chunk request's first gap to the next one's: its own gaps, then only such
            # boundaries (-inf) and one-chunk requests (no gaps)
            inner = starts[np.searchsorted(starts, s0, "right"):np.searchsorted(starts, s1, "left")]
            gaps[inner - s0 - 1] = -np.inf
            peak = np.maximum.reduceat(gaps, starts[rows] - s0)
            keep = self.ok[rows]
            out[rows[keep]] = peak[keep]
        return out

    def token_times(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens per row, flat arrival time of every token)`` of the given rows, in their
        order: a chunk of k tokens gives k equal times."""
        rows = np.asarray(rows)
        per_row = self.streamed_tokens
        if len(rows) == len(self) and self.unit_chunks and (len(rows) < 2 or np.all(np.diff(rows) > 0)):
            return per_row[rows], self.chunk_times  # every row, one token per chunk: no copy
        keep = np.zeros(len(self), dtype=bool)
        keep[rows] = True
        chunk = keep[self.chunk_row]
        per_row = np.where(keep, per_row, 0)
        times = (self.chunk_times[chunk] if self.unit_chunks else
                 np.repeat(self.chunk_times[chunk], self.chunk_tokens[chunk]))
        if len(rows) > 1 and np.any(np.diff(rows) <= 0):  # not in table order: regroup
            starts = np.concatenate([[0], np.cumsum(per_row)[:-1]])
            times = np.concatenate([times[starts[r]:starts[r] + per_row[r]] for r in rows])
        return per_row[rows], times


def tbt_samples(row: np.ndarray, times: np.ndarray, tokens: np.ndarray,
                ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(request row, sample)`` of every per-token TBT sample of completed requests: a later
    content chunk of k tokens g seconds after the previous gives k samples of g / k. A function
    of the content chunks' columns, so a series can make its ids later without holding the
    run's columns."""
    same = (row[1:] == row[:-1]) & ok[row[1:]]
    gaps = np.diff(times)[same]
    k = tokens[1:][same]
    if (k == 1).all():  # one token per chunk (a simulator's, most servers'): no spreading
        return row[1:][same], gaps
    return np.repeat(row[1:][same], k), np.repeat(gaps / k, k)


SMALL_MASK = 64  # failed requests with gaps up to which their gaps are masked one by one


def tbt_values(num_chunks: np.ndarray, times: np.ndarray, tokens: np.ndarray,
               ok: np.ndarray, unit: bool) -> np.ndarray:
    """The samples of :func:`tbt_samples` (in the same order) from each request's count of
    content chunks instead of a row id per chunk: the gaps between consecutive chunks with those
    into a request's first chunk, or within a failed request, left out. Two passes over the
    chunks where every request completed (a simulation's), not seven (1.5 s at 44 M chunks).
    ``unit``: every chunk carried one token."""
    if len(times) < 2:
        return np.empty(0)
    ends = np.cumsum(num_chunks)
    starts = ends - num_chunks
    keep = np.ones(len(times) - 1, dtype=bool)  # gap j: chunk j to chunk j + 1
    firsts = starts[(num_chunks > 0) & (starts > 0)]
    keep[firsts - 1] = False
    failed = np.flatnonzero(~ok & (num_chunks >= 2))
    if len(failed) <= SMALL_MASK:
        for r in failed.tolist():
            keep[starts[r]:ends[r] - 1] = False
    else:
        keep &= np.repeat(ok, num_chunks)[1:]
    gaps = np.diff(times)
    gaps = gaps if keep.all() else gaps[keep]
    if unit:  # one token per chunk (a simulator's, most servers'): no spreading
        return gaps
    k = tokens[1:][keep]
    return np.repeat(gaps / k, k)
