"""Goodput: the requests per second that succeeded and met their latency deadlines.

A request is good when it succeeded (``record.ok``), its TTFT **from send** (``first chunk -
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

from etalon.metrics.deadlines import (
    Timelines, evaluate_timelines, ttft_deadline_label, ttft_deadline_of,
)
from etalon.metrics.tokens import token_times
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
    records: Sequence[RequestRecord], ttft_deadline: float | None, tbt_deadline: float | None
) -> list[bool]:
    """``mask[i]`` says whether ``records[i]`` is good (see the module docstring)."""
    mask = [r.ok and _ttft_met(r, ttft_deadline_of(r, ttft_deadline)) for r in records]
    if tbt_deadline is not None:
        idx = [i for i, good in enumerate(mask) if good]
        tl = Timelines.from_token_times(
            idx, [records[i].scheduled_at for i in idx], [token_times(records[i]) for i in idx],
            [records[i].ttft_deadline for i in idx],
        )
        _, misses, first = evaluate_timelines(tl, ttft_deadline, tbt_deadline)
        for i in tl.request_ids[(misses - first) > 0]:
            mask[int(i)] = False
    return mask


def _ttft_met(record: RequestRecord, deadline: float | None) -> bool:
    return deadline is None or (record.ttft is not None and record.ttft <= deadline)


def goodput(
    records: Sequence[RequestRecord],
    ttft_deadline: float | None,
    tbt_deadline: float | None,
    duration_s: float | None,
) -> Goodput | None:
    """Goodput over a window of ``duration_s`` seconds; None when no deadline applies."""
    ttft_label = ttft_deadline_label(records, ttft_deadline)
    if ttft_label is None and tbt_deadline is None:
        return None
    n_good = sum(good_mask(records, ttft_deadline, tbt_deadline))
    return Goodput(
        num_good=n_good,
        num_requests=len(records),
        fraction=n_good / len(records) if records else None,
        requests_per_s=n_good / duration_s if duration_s else None,
        ttft_deadline_s=ttft_label,
        tbt_deadline_s=tbt_deadline,
    )
