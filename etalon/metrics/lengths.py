"""Requested vs delivered token counts: the short-output rule, the run's check and warning, and
how the token counts of different sources disagree.

A server that ignores ``ignore_eos``/``min_tokens`` ends many requests early, and then every
throughput, TPOT and E2E figure of the run describes a shorter workload than the one asked for.
This module says so as loudly as the load check says the generator fell behind. The client
applies the same rule when ``--require-exact-output-lengths`` turns short outputs into failed
records (``error_type`` :data:`SHORT_OUTPUT_ERROR`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from etalon.metrics.columns import RunColumns
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

    def short(self, requested: np.ndarray, delivered: np.ndarray) -> np.ndarray:
        """:meth:`is_short` of every request at once."""
        return (requested > 0) & (requested - delivered > np.maximum(self.tokens,
                                                                     self.fraction * requested))

    def max_short_requests(self, checked: int) -> int:
        """The most short requests a run of ``checked`` requests may have without a warning."""
        return max(self.requests, math.floor(self.requests_fraction * checked))


TOLERANCE = LengthTolerance()


def answered(c: RunColumns) -> np.ndarray:
    """Where the server finished answering: completed, empty, or failed only for being short."""
    error = c.table.requests["error_type"]
    return ~np.isnan(c.completed_at) & (error.isna() | (error == SHORT_OUTPUT_ERROR)).to_numpy()


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


def output_lengths(records: "Sequence[RequestRecord] | RunColumns",
                   tolerance: LengthTolerance = TOLERANCE) -> OutputLengths:
    """Checks delivered against requested output tokens (see :class:`LengthTolerance`)."""
    c = RunColumns.of(records)
    wanted = c.table.requests["requested_output_tokens"].to_numpy(np.int64)
    checked = answered(c) & (wanted > 0)
    wanted, got = wanted[checked], c.output_tokens[checked]
    requested, delivered = int(wanted.sum()), int(got.sum())
    num_short = int(tolerance.short(wanted, got).sum())
    num_empty = int((c.streamed_tokens[checked] == 0).sum())
    num_checked = int(checked.sum())
    allowed = tolerance.max_short_requests(num_checked)
    is_short_run = num_short > allowed
    warning = None
    if is_short_run:
        warning = (
            f"OUTPUTS SHORTER THAN REQUESTED: {num_short} of {num_checked} requests delivered "
            f"fewer output tokens than requested ({num_empty} with none); {delivered} of "
            f"{requested} requested output tokens were delivered ({delivered / requested:.0%}). "
            "The server likely ignores ignore_eos/min_tokens, so throughput, TPOT and E2E "
            "describe a shorter workload than the one asked for. --require-exact-output-lengths "
            "makes such requests failures."
        )
    failed_short = (c.table.requests["error_type"] == SHORT_OUTPUT_ERROR).to_numpy()
    return OutputLengths(
        num_checked=num_checked,
        requested_tokens=requested,
        delivered_tokens=delivered,
        delivered_fraction=delivered / requested if requested else None,
        num_short=num_short,
        num_empty=num_empty,
        num_failed_short=int((checked & failed_short).sum()),
        max_short_requests=allowed,
        tolerance=asdict(tolerance),
        short=is_short_run,
        warning=warning,
        count_sources=_sources(c, "output", checked),
        disagreement=disagreement(c, "output", checked),
    )


def prompt_lengths(records: "Sequence[RequestRecord] | RunColumns") -> dict:
    """Requested vs counted prompt tokens of the answered requests, with count sources and how
    the other counts differ (e.g. ``tokenizer vs usage``: the text alone against what the
    server counted, so the chat template's tokens show)."""
    c = RunColumns.of(records)
    checked = answered(c)
    requested = c.table.requests["requested_prompt_tokens"].to_numpy(np.int64)
    return {
        "num_checked": int(checked.sum()),
        "requested_tokens": int(requested[checked].sum()),
        "counted_tokens": int(c.prompt_tokens[checked].sum()),
        "count_sources": _sources(c, "prompt", checked),
        "disagreement": disagreement(c, "prompt", checked),
        "includes": "answered requests (completed, empty, or failed for being short)",
    }


def _sources(c: RunColumns, kind: str, rows: np.ndarray) -> dict[str, int]:
    """How many of ``rows`` took their ``kind`` count from each source, by source name."""
    return dict(sorted(Counter(c.token_source(kind)[rows].tolist()).items()))


def disagreement(c: RunColumns, kind: str, rows: np.ndarray) -> dict[str, dict]:
    """``{"<other> vs <used>": stats}`` over the ``rows`` (a mask) that carry other ``kind``
    (``prompt``/``output``) counts than the one they use, where ``<used>`` is the source that
    count came from and ``<other>`` another count the request carries; stats of
    ``other - used`` in tokens: ``num_requests``, ``num_differ``, ``mean``, ``min``, ``max``."""
    counts = c.table.requests[f"{kind}_token_counts"]
    rows = np.flatnonzero(rows & counts.notna().to_numpy())
    used_n = (c.prompt_tokens if kind == "prompt" else c.output_tokens)[rows]
    used_source = c.token_source(kind)[rows]
    diffs: dict[str, list[int]] = {}
    for text, n, used in zip(counts.to_numpy()[rows], used_n.tolist(), used_source):
        for source, other in json.loads(text).items():
            if source != used and isinstance(other, int):
                diffs.setdefault(f"{source} vs {used}", []).append(other - n)
    return {
        key: {"num_requests": len(d), "num_differ": sum(1 for x in d if x),
              "mean": sum(d) / len(d), "min": min(d), "max": max(d)}
        for key, d in sorted(diffs.items())
    }
