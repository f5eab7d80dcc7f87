"""Goodput: the requests per second that succeeded and met their latency deadlines.

A request is good when it succeeded (``record.ok``), its TTFT **from send** (``first content chunk -
sent_at``) is at most its D_ttft (the record's own ``ttft_deadline`` when set, else the
run-wide one), and it had zero TBT misses under the slack-carry-over schedule of
:mod:`etalon.metrics.deadlines` (first-token misses there are judged by TTFT, not again here).
TTFT is taken from send so that goodput judges the server; dispatch lag is reported on its own.
A deadline given as None is not checked; with no TTFT deadline (run-wide or on any record) and
no TBT deadline goodput is not computed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from etalon.metrics.columns import RunColumns
from etalon.metrics.deadlines import Timelines, evaluate_timelines, ttft_deadline_label
from etalon.records import RequestRecord


@dataclass(frozen=True)
class Goodput:
    """Good requests: count, share of all requests, and rate over the run window (req/s).

    ``ttft_deadline_s`` is the run-wide deadline, or ``"per-request"`` when only the records
    carry one (see :func:`etalon.metrics.deadlines.ttft_deadline_label`).
    """

    num_good: int
    num_requests: int
    fraction: float | None
    requests_per_s: float | None
    ttft_deadline_s: float | str | None
    tbt_deadline_s: float | None
    includes: str = ("all requests in the denominator; only completed ones (>= 1 token) can be "
                     "good: failed and empty responses never are")

    def to_dict(self) -> dict:
        return asdict(self)


def good_mask(
    records: "Sequence[RequestRecord] | RunColumns", ttft_deadline: float | None,
    tbt_deadline: float | None,
) -> list[bool]:
    """``mask[i]`` says whether request i is good (see the module docstring)."""
    c = RunColumns.of(records)
    due = c.ttft_deadlines(ttft_deadline)
    with np.errstate(invalid="ignore"):
        mask = c.ok & (np.isnan(due) | (c.ttft <= due))
    if tbt_deadline is not None:
        rows = np.flatnonzero(mask)
        tl = Timelines.from_columns(c, rows, rows)
        _, misses, first = evaluate_timelines(tl, ttft_deadline, tbt_deadline)
        mask[tl.request_ids[(misses - first) > 0]] = False
    return mask.tolist()


def goodput(
    records: "Sequence[RequestRecord] | RunColumns",
    ttft_deadline: float | None,
    tbt_deadline: float | None,
    duration_s: float | None,
    columns: RunColumns | None = None,
) -> Goodput | None:
    """Goodput over a window of ``duration_s`` seconds; None when no deadline applies
    (``columns``: the records' own, when the caller has built them)."""
    c = RunColumns.of(records if columns is None else columns)
    ttft_label = ttft_deadline_label(c, ttft_deadline)
    if ttft_label is None and tbt_deadline is None:
        return None
    n_good = sum(good_mask(c, ttft_deadline, tbt_deadline))
    return Goodput(
        num_good=n_good,
        num_requests=len(c),
        fraction=n_good / len(c) if len(c) else None,
        requests_per_s=n_good / duration_s if duration_s else None,
        ttft_deadline_s=ttft_label,
        tbt_deadline_s=tbt_deadline,
    )
