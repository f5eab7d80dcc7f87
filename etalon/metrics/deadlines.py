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

from etalon.metrics.tokens import token_times
from etalon.records import RequestRecord


# Most misses one token can be charged (only reached for absurdly small TBT deadlines).
_MAX_PERIODS = 1e12


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
    """

    request_ids: np.ndarray
    t0: np.ndarray
    lengths: np.ndarray
    times: np.ndarray  # position-major: column i is times[starts[i]:starts[i] + active[i]]
    starts: np.ndarray
    active: np.ndarray

    @classmethod
    def from_token_times(
        cls, request_ids: Sequence[int], t0: Sequence[float], times: Sequence[np.ndarray]
    ) -> "Timelines":
        """Packs one token-time array per request; requests without tokens are left out."""
        lengths = np.array([len(t) for t in times], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        order = order[lengths[order] > 0]
        lengths = lengths[order]
        n, total = len(lengths), int(lengths.sum())
        max_len = int(lengths[0]) if n else 0
        # active[i] = number of rows with more than i tokens; starts[i] = where column i begins.
        active = n - np.cumsum(np.bincount(lengths, minlength=max_len + 1))[:max_len]
        starts = np.concatenate([[0], np.cumsum(active)[:-1]]).astype(np.int64)[:max_len]
        row_major = (np.concatenate([np.asarray(times[i], dtype=float) for i in order])
                     if n else np.empty(0))
        row = np.repeat(np.arange(n), lengths)
        pos = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        packed = np.empty(total)
        packed[starts[pos] + row] = row_major
        return cls(
            request_ids=np.asarray(request_ids, dtype=np.int64).reshape(-1)[order],
            t0=np.asarray(t0, dtype=float).reshape(-1)[order],
            lengths=lengths,
            times=packed,
            starts=starts,
            active=active.astype(np.int64),
        )

    @classmethod
    def from_records(cls, records: Sequence[RequestRecord]) -> "Timelines":
        """Successful requests with at least one streamed token."""
        ok = [r for r in records if r.ok]
        return cls.from_token_times(
            [r.request_id for r in ok], [r.scheduled_at for r in ok], [token_times(r) for r in ok]
        )

    def column(self, i: int) -> np.ndarray:
        """Times of token i (0-based) of the first ``active[i]`` rows (a view)."""
        start = int(self.starts[i])
        return self.times[start:start + int(self.active[i])]

    def __len__(self) -> int:
        return len(self.lengths)


def evaluate_timelines(
    tl: Timelines, ttft_deadline: float | None, tbt_deadline: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tokens_on_time, misses, first_token_misses)`` per row of ``tl``, as int arrays."""
    if tbt_deadline <= 0:
        raise ValueError(f"tbt_deadline must be > 0 seconds, got {tbt_deadline}")
    n = len(tl)
    on_time = np.zeros(n, dtype=np.int64)
    misses = np.zeros(n)  # float: exact for integers below 2**53, and no casts per step
    first = np.zeros(n)
    if n == 0:
        return on_time, misses.astype(np.int64), first.astype(np.int64)
    t = tl.column(0)
    if ttft_deadline is None:
        deadline = t + tbt_deadline  # the first token is not a deadline
    else:
        deadline = tl.t0 + ttft_deadline
        first = _check(t, deadline, tbt_deadline, on_time, misses)
        np.maximum(deadline, t, out=deadline)
        deadline += tbt_deadline
    for i in range(1, len(tl.active)):
        t = tl.column(i)
        d = deadline[: len(t)]
        _check(t, d, tbt_deadline, on_time, misses)
        np.maximum(d, t, out=d)  # the next deadline is max(d, t) + D_tbt (in place)
        d += tbt_deadline
    return on_time, misses.astype(np.int64), first.astype(np.int64)


def _check(t: np.ndarray, d: np.ndarray, tbt: float, on_time: np.ndarray,
           misses: np.ndarray) -> np.ndarray:
    """Charges rows ``[:len(t)]`` for tokens at ``t`` due at ``d``; returns the new misses.

    A late token costs ``floor((t - d) / tbt) + 1``; an on-time one (``t <= d``) costs 0.
    The count is capped so a vanishing ``tbt`` (tried by the fluid-rate search) stays finite.
    """
    a = len(t)
    over = t - d
    late = over > 0
    charged = np.floor(np.clip(over / tbt, 0, _MAX_PERIODS)) + 1
    charged[~late] = 0
    on_time[:a] += ~late
    misses[:a] += charged
    return charged


def evaluate_deadlines(
    times: Sequence[float] | np.ndarray,
    scheduled_at: float,
    ttft_deadline: float | None,
    tbt_deadline: float,
) -> DeadlineOutcome:
    """Deadline accounting of one request whose tokens arrived at ``times`` (one per token)."""
    tl = Timelines.from_token_times([0], [scheduled_at], [np.asarray(times, dtype=float)])
    if len(tl) == 0:
        return DeadlineOutcome(0, 0, 0)
    on_time, misses, first = evaluate_timelines(tl, ttft_deadline, tbt_deadline)
    return DeadlineOutcome(int(on_time[0]), int(misses[0]), int(first[0]))


def min_tbt_deadlines(tl: Timelines, ttft_deadline: float | None) -> np.ndarray:
    """Smallest D_tbt each row meets with zero TBT misses, in seconds (0 for 1-token requests).

    The anchor is ``a = t0 + D_ttft`` when the first token was on time (its banked slack
    counts), else the first token's arrival (the schedule resets there); with ``D_ttft = None``
    it is the first token's arrival. ``D_min = max_{i >= 2} (t_i - a) / (i - 1)``, floored at 0.
    """
    n = len(tl)
    out = np.zeros(n)
    if n == 0:
        return out
    first = tl.column(0)
    anchor = first.copy()
    if ttft_deadline is not None:
        due = tl.t0 + ttft_deadline
        anchor = np.where(first <= due, due, first)
    for i in range(1, len(tl.active)):
        t = tl.column(i)
        a = len(t)
        np.maximum(out[:a], (t - anchor[:a]) / i, out=out[:a])
    return out
