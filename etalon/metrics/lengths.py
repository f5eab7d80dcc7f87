"""Requested vs delivered token counts: the short-output rule, the run's check and warning, and
how the token counts of different sources disagree.

A server that ignores ``ignore_eos``/``min_tokens`` ends many requests early, and then every
throughput, TPOT and E2E figure of the run describes a shorter workload than the one asked for.
This module says so as loudly as the load check says the generator fell behind. The client
applies the same rule when ``--require-exact-output-lengths`` turns short outputs into failed
records (``error_type`` :data:`SHORT_OUTPUT_ERROR`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from etalon.metrics.tokens import output_tokens, prompt_tokens
from etalon.records import RequestRecord

SHORT_OUTPUT_ERROR = "short_output"


@dataclass(frozen=True)
class LengthTolerance:
    """When a request is short, and how many short requests make a run warn.

    A request is short when ``requested - delivered > max(tokens, fraction * requested)``
    output tokens (a token or two of slack absorbs counting by re-tokenization). A run warns
    when more than ``max(requests, requests_fraction * checked)`` requests are short, so a
    stray early stop in a long run stays a count, not an alarm.
    """

    tokens: int = 1
    fraction: float = 0.02
    requests: int = 2
    requests_fraction: float = 0.01

    def is_short(self, requested: int, delivered: int) -> bool:
        return requested > 0 and requested - delivered > max(self.tokens, self.fraction * requested)

    def max_short_requests(self, checked: int) -> int:
        """The most short requests a run of ``checked`` requests may have without a warning."""
        return max(self.requests, math.floor(self.requests_fraction * checked))


TOLERANCE = LengthTolerance()


def answered(record: RequestRecord) -> bool:
    """The server finished answering: completed, empty, or failed only for being short."""
    return record.completed_at is not None and record.error_type in (None, SHORT_OUTPUT_ERROR)


@dataclass(frozen=True)
class OutputLengths:
    """Requested vs delivered output tokens over the answered requests with a requested length.

    ``num_failed_short`` are short requests that ``--require-exact-output-lengths`` made failed
    records; they are counted here too. ``warning`` is set when ``short`` is true.
    """

    num_checked: int
    requested_tokens: int
    delivered_tokens: int
    delivered_fraction: float | None
    num_short: int
    num_empty: int
    num_failed_short: int
    max_short_requests: int
    tolerance: dict
    short: bool
    warning: str | None
    count_sources: dict = field(default_factory=dict)
    disagreement: dict = field(default_factory=dict)
    includes: str = ("answered requests with a requested output length: completed, empty, and "
                     "failed for being short; not other failures")

    def to_dict(self) -> dict:
        return asdict(self)


def output_lengths(records: Sequence[RequestRecord],
                   tolerance: LengthTolerance = TOLERANCE) -> OutputLengths:
    """Checks delivered against requested output tokens (see :class:`LengthTolerance`)."""
    checked = [r for r in records if answered(r) and r.requested_output_tokens > 0]
    requested = sum(r.requested_output_tokens for r in checked)
    delivered = sum(output_tokens(r)[0] for r in checked)
    short = [r for r in checked if tolerance.is_short(r.requested_output_tokens, output_tokens(r)[0])]
    num_empty = sum(1 for r in checked if not r.streamed_tokens)
    allowed = tolerance.max_short_requests(len(checked))
    is_short_run = len(short) > allowed
    warning = None
    if is_short_run:
        warning = (
            f"OUTPUTS SHORTER THAN REQUESTED: {len(short)} of {len(checked)} requests delivered "
            f"fewer output tokens than requested ({num_empty} with none); {delivered} of "
            f"{requested} requested output tokens were delivered ({delivered / requested:.0%}). "
            "The server likely ignores ignore_eos/min_tokens, so throughput, TPOT and E2E "
            "describe a shorter workload than the one asked for. --require-exact-output-lengths "
            "makes such requests failures."
        )
    return OutputLengths(
        num_checked=len(checked),
        requested_tokens=requested,
        delivered_tokens=delivered,
        delivered_fraction=delivered / requested if requested else None,
        num_short=len(short),
        num_empty=num_empty,
        num_failed_short=sum(1 for r in checked if r.error_type == SHORT_OUTPUT_ERROR),
        max_short_requests=allowed,
        tolerance=asdict(tolerance),
        short=is_short_run,
        warning=warning,
        count_sources=dict(sorted(Counter(output_tokens(r)[1] for r in checked).items())),
        disagreement=disagreement(checked, lambda r: r.output_token_counts, output_tokens),
    )


def prompt_lengths(records: Sequence[RequestRecord]) -> dict:
    """Requested vs counted prompt tokens of the answered requests, with count sources and how
    the other counts differ (e.g. ``tokenizer vs usage``: the text alone against what the
    server counted, so the chat template's tokens show)."""
    checked = [r for r in records if answered(r)]
    return {
        "num_checked": len(checked),
        "requested_tokens": sum(r.requested_prompt_tokens for r in checked),
        "counted_tokens": sum(prompt_tokens(r)[0] for r in checked),
        "count_sources": dict(sorted(Counter(prompt_tokens(r)[1] for r in checked).items())),
        "disagreement": disagreement(checked, lambda r: r.prompt_token_counts, prompt_tokens),
        "includes": "answered requests (completed, empty, or failed for being short)",
    }


def disagreement(records: Sequence[RequestRecord],
                 counts_of: Callable[[RequestRecord], dict],
                 used_of: Callable[[RequestRecord], tuple[int, str]]) -> dict[str, dict]:
    """``{"<other> vs <used>": stats}`` over the requests that have both counts, where
    ``<used>`` is the source a request's count came from and ``<other>`` another count it
    carries; stats of ``other - used`` in tokens: ``num_requests``, ``num_differ``, ``mean``,
    ``min``, ``max``."""
    diffs: dict[str, list[int]] = {}
    for r in records:
        used_n, used = used_of(r)
        for source, n in counts_of(r).items():
            if source != used and isinstance(n, int):
                diffs.setdefault(f"{source} vs {used}", []).append(n - used_n)
    return {
        key: {"num_requests": len(d), "num_differ": sum(1 for x in d if x),
              "mean": sum(d) / len(d), "min": min(d), "max": max(d)}
        for key, d in sorted(diffs.items())
    }
