"""Per-token deadline evaluation with slack carry-over: misses, fluidity index, minimum TBT deadline.

The schedule of one request is anchored at its scheduled arrival ``t0`` (open loop: the user
started waiting then, whether or not the generator sent on time):

* token 1 is due at ``d_1 = t0 + D_ttft``; token i is due at ``d_i = d_{i-1} + D_tbt``. The
  schedule is absolute, so a token that arrives early banks the slack for the next ones.
* A token at ``t <= d`` is on time and the next deadline is ``d + D_tbt``.
* A token at ``t > d`` is a stall. It is charged one miss per deadline period it covers,
  ``floor((t - d) / D_tbt) + 1`` (periods after the first deadline are D_tbt long, also for the
  first token), and the schedule resets from the late token: the next deadline is ``t + D_tbt``.
  Together: the next deadline is always ``max(d, t) + D_tbt``.
* A chunk of k tokens gives k tokens at the same time, each checked against its own deadline.
* With ``D_ttft = None`` the first token is not a deadline: the schedule starts at its arrival.
* ``D_ttft`` is per request: a record's own ``ttft_deadline`` when set (e.g. predicted prefill
  time plus a slack), else the run-wide ``ttft_deadline`` argument. ``D_tbt`` is run-wide.

Per request ``deadlines_total = tokens_on_time + misses``, ``miss_rate = misses /
deadlines_total`` and ``fluidity_index = 1 - miss_rate``.

Monotonicity (what makes bisection on D_tbt valid): the next deadline ``max(d, t) + D_tbt``
grows with both d and D_tbt and the first deadline does not depend on D_tbt, so by induction
every deadline is non-decreasing in D_tbt. Hence the set of on-time tokens can only grow and
each late token's charge ``floor((t - d)/D_tbt) + 1`` can only shrink: the fluidity index
``on_time / (on_time + misses)`` is non-decreasing in D_tbt.

Only successful requests (``record.ok``) with at least one token are evaluated; failed ones
are accounted for by goodput and the error counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from etalon.cli_errors import UserError
from etalon.metrics.columns import RunColumns
from etalon.records import RequestRecord


# Most misses one token can be charged (only reached for absurdly small TBT deadlines).
_MAX_PERIODS = 1e12

# What a summary's ``ttft_deadline_s`` says when the records carry their own TTFT deadlines
# and there is no run-wide one.
PER_REQUEST = "per-request"


def run_wide_ttft(value: float | str | None) -> float | None:
    """The run-wide TTFT deadline (s) of a summary's ``ttft_deadline_s``: :data:`PER_REQUEST`
    means there is none (each record carries its own)."""
    if value == PER_REQUEST:
        return None
    if isinstance(value, str):
        raise UserError(f"ttft_deadline must be seconds, None or {PER_REQUEST!r}, got {value!r}")
    return value


def ttft_deadline_label(c: RunColumns, ttft_deadline: float | None) -> float | str | None:
    """How a summary names the TTFT deadline: the run-wide seconds when given (records with
    their own still use theirs), :data:`PER_REQUEST` when only records carry one, else None."""
    if ttft_deadline is not None:
        return ttft_deadline
    return PER_REQUEST if (~np.isnan(c.own_ttft_deadline)).any() else None


@dataclass(frozen=True)
class DeadlineOutcome:
    """Deadline accounting of one request; ``first_token_misses`` is part of ``misses``."""

    tokens_on_time: int
    misses: int
    first_token_misses: int = 0

    @property
    def deadlines_total(self) -> int:
        return self.tokens_on_time + self.misses

    @property
    def tbt_misses(self) -> int:
        return self.misses - self.first_token_misses

    @property
    def miss_rate(self) -> float | None:
        total = self.deadlines_total
        return self.misses / total if total else None

    @property
    def fluidity_index(self) -> float | None:
        rate = self.miss_rate
        return None if rate is None else 1.0 - rate


@dataclass
class Timelines:
    """Token times of many requests packed for vectorised evaluation, position-major.

    Rows (requests) are stored longest first, so the rows that have a token at position i
    (0-based) are always the first ``active[i]`` ones, and ``column(i)`` is a contiguous view of
    those rows' i-th token times. Each step of the evaluation is then one slice, no gather.
    ``ttft[j]`` is row j's own TTFT deadline in seconds, NaN where the run-wide one applies.
    """

    request_ids: np.ndarray
    t0: np.ndarray
    lengths: np.ndarray
    times: np.ndarray  # position-major: column i is times[starts[i]:starts[i] + active[i]]
    starts: np.ndarray
    active: np.ndarray
    ttft: np.ndarray | None = None  # per row; None = NaN for every row

    def __post_init__(self) -> None:
        if self.ttft is None:
            self.ttft = np.full(len(self.lengths), np.nan)

    @classmethod
    def from_token_times(
        cls, request_ids: Sequence[int], t0: Sequence[float], times: Sequence[np.ndarray],
        ttft_deadlines: Sequence[float | None] | None = None,
    ) -> "Timelines":
        """Packs one token-time array per request; requests without tokens are left out.

        ``ttft_deadlines`` (seconds, one per request, None = the run-wide one) are the
        requests' own TTFT deadlines; omitted, every request uses the run-wide one.
        """
        lengths = np.array([len(t) for t in times], dtype=np.int64)
        own = (np.full(len(times), np.nan) if ttft_deadlines is None else
               np.array([np.nan if d is None else d for d in ttft_deadlines], dtype=float))
        if len(own) != len(times):
            raise UserError(f"{len(own)} TTFT deadlines for {len(times)} requests")
        row_major = (np.concatenate([np.asarray(t, dtype=float) for t in times])
                     if len(times) else np.empty(0))
        return cls.pack(request_ids, t0, lengths, row_major, own)

    @classmethod
    def pack(cls, request_ids: Sequence[int] | np.ndarray, t0: Sequence[float] | np.ndarray,
             lengths: np.ndarray, row_major: np.ndarray, ttft: np.ndarray) -> "Timelines":
        """Packs requests given as one flat array of token times, request after request
        (``lengths[j]`` tokens of request j); requests without tokens are left out."""
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        order = np.argsort(-lengths, kind="stable")
        order = order[lengths[order] > 0]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        lengths = lengths[order]
        n, total = len(lengths), int(lengths.sum())
        max_len = int(lengths[0]) if n else 0
        # active[i] = number of rows with more than i tokens; starts[i] = where column i begins.
        active = n - np.cumsum(np.bincount(lengths, minlength=max_len + 1))[:max_len]
        starts = np.concatenate([[0], np.cumsum(active)[:-1]]).astype(np.int64)[:max_len]
        # column i holds token i of the first active[i] rows (longest first): one gather per
        # column, so no index array as long as every token (44 M in a 100k ShareGPT run)
        row_major = np.asarray(row_major, dtype=float)
        first = bounds[order]
        packed = np.empty(total)
        for i in range(max_len):
            a = int(active[i])
            np.take(row_major, first[:a] + i, out=packed[starts[i]:starts[i] + a])
        return cls(
            request_ids=np.asarray(request_ids, dtype=np.int64).reshape(-1)[order],
            t0=np.asarray(t0, dtype=float).reshape(-1)[order],
            lengths=lengths,
            times=packed,
            starts=starts,
            active=active.astype(np.int64),
            ttft=np.asarray(ttft, dtype=float).reshape(-1)[order],
        )

    @classmethod
    def from_records(cls, records: "Sequence[RequestRecord] | RunColumns") -> "Timelines":
        """Successful requests with at least one streamed token, with their own TTFT deadlines
        (``request_ids`` are the records' ids)."""
        cols = RunColumns.of(records)
        rows = np.flatnonzero(cols.ok)
        return cls.from_columns(cols, rows, cols.request_id[rows])

    @classmethod
    def from_columns(cls, cols: "RunColumns", rows: np.ndarray, ids: np.ndarray) -> "Timelines":
        """The given rows of a run's columns, labelled ``ids``."""
        lengths, times = cols.token_times(rows)
        return cls.pack(ids, cols.scheduled_at[rows], lengths, times, cols.own_ttft_deadline[rows])

    def subset(self, rows: np.ndarray) -> "Timelines":
        """The given rows (positions in this packing, ascending) as their own packing.

        Rows ascending here are longest first among themselves too, so column i of the subset
        is column i of this packing at the first rows that reach token i: one gather per
        column, each reading forward through that column (no index array as long as the
        rows' tokens: 1.7 s of a 100k-request run's fluid-rate search before).
        """
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        n = len(rows)
        max_len = int(lengths[0]) if n else 0
        active = n - np.cumsum(np.bincount(lengths, minlength=max_len + 1))[:max_len]
        starts = np.concatenate([[0], np.cumsum(active)[:-1]]).astype(np.int64)[:max_len]
        packed = np.empty(int(lengths.sum()))
        for i in range(max_len):
            a = int(active[i])
            np.take(self.times, self.starts[i] + rows[:a], out=packed[starts[i]:starts[i] + a])
        return Timelines(self.request_ids[rows], self.t0[rows], lengths, packed, starts,
                         active.astype(np.int64), self.ttft[rows])

    def ttft_deadlines(self, default: float | None) -> np.ndarray:
        """Each row's TTFT deadline (s): its own, else ``default``; NaN where it has none."""
        if default is None:
            return self.ttft.copy()
        return np.where(np.isnan(self.ttft), default, self.ttft)

    def column(self, i: int) -> np.ndarray:
        """Times of token i (0-based) of the first ``active[i]`` rows (a view)."""
        start = int(self.starts[i])
        return self.times[start:start + int(self.active[i])]

    def __len__(self) -> int:
        return len(self.lengths)


def evaluate_timelines(
    tl: Timelines, ttft_deadline: float | None, tbt_deadline: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tokens_on_time, misses, first_token_misses)`` per row of ``tl``, as int arrays.

    A row's TTFT deadline is its own (``tl.ttft``) where set, else ``ttft_deadline``; a row
    with neither has no first-token deadline (its first token is neither on time nor missed).
    """
    on_time, misses, first = evaluate_many(tl, ttft_deadline, np.array([tbt_deadline], dtype=float))
    return on_time[0], misses[0], first[0]


def evaluate_many(
    tl: Timelines, ttft_deadline: float | None, tbt_deadlines: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`evaluate_timelines` at K TBT deadlines at once: ``(K, rows)`` int arrays.

    One walk over the token columns serves every deadline (a miss-rate curve, a step of the
    fluid-rate search), so the per-column Python cost is paid once, not K times.
    """
    tbt = np.asarray(tbt_deadlines, dtype=float).reshape(-1, 1)
    if (tbt <= 0).any():
        raise UserError(f"tbt_deadline must be > 0 seconds, got {float(tbt.min())}")
    k, n = len(tbt), len(tl)
    on_time = np.zeros((k, n), dtype=np.int64)
    misses = np.zeros((k, n))  # float: exact for integers below 2**53, and no casts per step
    first = np.zeros((k, n))
    if n == 0:
        return on_time, misses.astype(np.int64), first.astype(np.int64)
    t = tl.column(0)
    due = tl.t0 + tl.ttft_deadlines(ttft_deadline)
    judged = ~np.isnan(due)
    if not judged.all():
        # Without a TTFT deadline the first token is not judged and anchors the schedule.
        due = np.where(judged, due, t)
    deadline = np.repeat(due[None, :], k, axis=0)
    first = _check(t, deadline, tbt, on_time, misses, judged)
    np.maximum(deadline, t, out=deadline)
    deadline += tbt
    for i in range(1, len(tl.active)):
        t = tl.column(i)
        d = deadline[:, : len(t)]
        _check(t, d, tbt, on_time, misses)
        np.maximum(d, t, out=d)  # the next deadline is max(d, t) + D_tbt (in place)
        d += tbt
    return on_time, misses.astype(np.int64), first.astype(np.int64)


@dataclass(frozen=True)
class RowDeadlines:
    """The deadline results of a run's completed requests: their ``rows`` in the run's columns,
    the smallest TBT deadline each meets, and with a TBT deadline its tokens on time, its
    missed deadlines and its first token's."""

    rows: np.ndarray
    min_tbt: np.ndarray
    on_time: np.ndarray | None = None
    misses: np.ndarray | None = None
    first_misses: np.ndarray | None = None


def completed_timelines(c: RunColumns) -> Timelines:
    """The completed requests' timelines, labelled by their rows in ``c``."""
    rows = np.flatnonzero(c.ok)
    return Timelines.from_columns(c, rows, rows)


def row_deadlines(c: RunColumns, ttft_deadline: float | None, tbt_deadline: float | None,
                  tl: Timelines | None = None) -> RowDeadlines:
    """:class:`RowDeadlines` of the columns at these deadlines, computed once (``tl``: their
    :func:`completed_timelines`, when the caller has them): the summary and ``requests.csv``
    both read them, and packing 44 M token times alone takes 1.5 s. Only these per-request
    arrays are kept with the columns, not the packed token times."""
    cache = c.__dict__.setdefault("_row_deadlines", {})
    key = (ttft_deadline, tbt_deadline)
    if key not in cache:
        tl = completed_timelines(c) if tl is None else tl
        judged = (evaluate_timelines(tl, ttft_deadline, tbt_deadline)
                  if tbt_deadline is not None else (None, None, None))
        cache.clear()  # a run is judged at one pair of deadlines: keep no other's arrays
        cache[key] = RowDeadlines(tl.request_ids, min_tbt_deadlines(tl, ttft_deadline), *judged)
    return cache[key]


def _check(t: np.ndarray, d: np.ndarray, tbt: np.ndarray, on_time: np.ndarray,
           misses: np.ndarray, counted: np.ndarray | None = None) -> np.ndarray:
    """Charges columns ``[:len(t)]`` of every deadline's row (``d``, ``on_time`` and ``misses``
    are ``(K, rows)``, ``tbt`` is ``(K, 1)``) for tokens at ``t``; returns the new misses.

    A late token costs ``floor((t - d) / tbt) + 1``; an on-time one (``t <= d``) costs 0 and
    counts as on time unless ``counted`` (a row mask) says the token is not a deadline.
    The count is capped so a vanishing ``tbt`` (tried by the fluid-rate search) stays finite.
    """
    a = len(t)
    over = t - d
    late = over > 0
    # floor(max(over, 0) / tbt) + late is 0 on time and floor(over / tbt) + 1 when late:
    # computed in place, so a step allocates two arrays, not eight
    np.maximum(over, 0, out=over)
    over /= tbt
    np.minimum(over, _MAX_PERIODS, out=over)
    np.floor(over, out=over)
    over += late
    np.logical_not(late, out=late)
    if counted is not None:
        late &= counted
    on_time[:, :a] += late
    misses[:, :a] += over
    return over


def evaluate_deadlines(
    times: Sequence[float] | np.ndarray,
    scheduled_at: float,
    ttft_deadline: float | None,
    tbt_deadline: float,
) -> DeadlineOutcome:
    """Deadline accounting of one request whose tokens arrived at ``times`` (one per token);
    ``ttft_deadline`` is that request's own."""
    tl = Timelines.from_token_times([0], [scheduled_at], [np.asarray(times, dtype=float)])
    if len(tl) == 0:
        return DeadlineOutcome(0, 0, 0)
    on_time, misses, first = evaluate_timelines(tl, ttft_deadline, tbt_deadline)
    return DeadlineOutcome(int(on_time[0]), int(misses[0]), int(first[0]))


def min_tbt_deadlines(tl: Timelines, ttft_deadline: float | None) -> np.ndarray:
    """Smallest D_tbt each row meets with zero TBT misses, in seconds (0 for 1-token requests).

    The anchor is ``a = t0 + D_ttft`` when the first token was on time (its banked slack
    counts), else the first token's arrival (the schedule resets there); for a row with no
    TTFT deadline (neither its own nor ``ttft_deadline``) it is the first token's arrival.
    ``D_min = max_{i >= 2} (t_i - a) / (i - 1)``, floored at 0.
    """
    n = len(tl)
    out = np.zeros(n)
    if n == 0:
        return out
    first = tl.column(0)
    due = tl.t0 + tl.ttft_deadlines(ttft_deadline)  # NaN compares False: anchor at the token
    anchor = np.where(first <= due, due, first)
    for i in range(1, len(tl.active)):
        t = tl.column(i)
        a = len(t)
        np.maximum(out[:a], (t - anchor[:a]) / i, out=out[:a])
    return out
