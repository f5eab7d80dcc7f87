"""The single entry point from records to a JSON-able run summary (live runs and simulations).

``summarize`` assembles the pieces; each number is computed in its own module:
latency series (:mod:`.latency`), throughput and open-loop health (:mod:`.throughput`),
requested vs delivered lengths (:mod:`.lengths`), deadlines and fluidity (:mod:`.deadlines`,
:mod:`.fluid_rate`) and goodput (:mod:`.goodput`). Every warning of a section is also listed
in the summary's top-level ``warnings``, so a reader checks one place.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from etalon.cli_errors import UserError
from etalon.metrics.columns import RunColumns
from etalon.metrics.deadlines import (
    completed_timelines, row_deadlines, run_wide_ttft, ttft_deadline_label,
)
from etalon.metrics.distribution import Distribution
from etalon.metrics.fluid_rate import fluid_token_rate
from etalon.metrics.goodput import goodput
from etalon.metrics.latency import latency_series
from etalon.metrics.lengths import TOLERANCE, LengthTolerance, output_lengths, prompt_lengths
from etalon.metrics.sessions import session_summary
from etalon.metrics.throughput import check_load, closed_loop_load, throughput
from etalon.records import RequestRecord

SCHEMA_VERSION = 1


def summarize(
    records: "Iterable[RequestRecord] | RunColumns",
    *,
    ttft_deadline: float | None = None,
    tbt_deadline: float | None = None,
    target_qps: float | None = None,
    lag_threshold_s: float = 0.010,
    min_rate_fraction: float = 0.95,
    fluid_min_fluidity: float = 0.9,
    fluid_percentile: float = 1.0,
    length_tolerance: LengthTolerance = TOLERANCE,
    columns: RunColumns | None = None,
    closed_loop: tuple[int, float] | None = None,
) -> dict:
    """Summarises a run. Deadlines are seconds; None skips what needs them.

    Sections: ``parameters``, ``counts``, ``latency`` (one distribution per metric, each with
    its ``unit`` and what it ``includes``), ``throughput``, ``load`` (achieved vs. target
    rate, ``fell_behind`` and ``warning``), ``lengths`` (requested vs delivered tokens; output
    ``short`` and ``warning``), ``deadlines``, ``goodput`` (None without deadlines) and
    ``warnings`` (every section's warning). See docs/metrics.md.

    Records with their own ``ttft_deadline`` are judged by it; ``ttft_deadline`` is the
    run-wide one for the rest. ``parameters.ttft_deadline_s`` is that run-wide value, or
    ``"per-request"`` when there is none and records carry their own. ``records`` may be
    the run's :class:`RunColumns` themselves; ``columns``: the records' own, when the caller
    has built them (either way no section walks the records). ``closed_loop``:
    ``(users, think time s)`` of a closed-loop run, which ``load.closed_loop`` then describes
    (``load.mode`` says which loop ran).
    """
    ttft_deadline = run_wide_ttft(ttft_deadline)
    for name, value in (("ttft_deadline", ttft_deadline), ("tbt_deadline", tbt_deadline)):
        if value is not None and value <= 0:
            raise UserError(f"{name} must be > 0 seconds, got {value}")
    # built once (unless the caller has): every section reads these arrays, not the records
    c = RunColumns.of(records if columns is None else columns)
    tput = throughput(c)
    load = check_load(c, target_qps=target_qps, lag_threshold_s=lag_threshold_s,
                      min_rate_fraction=min_rate_fraction)
    good = goodput(c, ttft_deadline, tbt_deadline, tput.duration_s, columns=c)
    outputs = output_lengths(c, length_tolerance)
    # before the latency distributions: the deadline walk packs every token time, and the
    # sorted copies those keep (for the CDFs) need not exist beside that
    deadlines = deadline_summary(c, ttft_deadline, tbt_deadline,
                                 min_fluidity=fluid_min_fluidity, percentile=fluid_percentile,
                                 columns=c)
    return {
        "schema_version": SCHEMA_VERSION,
        "parameters": {
            "ttft_deadline_s": ttft_deadline_label(c, ttft_deadline),
            "tbt_deadline_s": tbt_deadline,
            "target_qps": target_qps,
            "lag_threshold_s": lag_threshold_s,
            "min_rate_fraction": min_rate_fraction,
            "fluid_min_fluidity": fluid_min_fluidity,
            "fluid_percentile": fluid_percentile,
        },
        "counts": count_summary(c),
        "latency": {
            name: {"unit": s.spec.unit, "includes": s.spec.includes, **s.distribution().to_dict()}
            for name, s in latency_series(c).items()
        },
        "throughput": tput.to_dict(),
        "load": {**load.to_dict(), "mode": "closed_loop" if closed_loop else "open_loop",
                 "closed_loop": closed_loop_load(c, *closed_loop) if closed_loop else None},
        "lengths": {"output": outputs.to_dict(), "prompt": prompt_lengths(c)},
        "deadlines": deadlines,
        "goodput": good.to_dict() if good else None,
        "sessions": session_summary(c),
        "warnings": [w for w in (load.warning, outputs.warning) if w],
    }


def count_summary(records: "Sequence[RequestRecord] | RunColumns") -> dict:
    """How many requests were sent, completed (with tokens), empty, failed and unfinished; how
    answered requests finished and whether the server said so; where token counts came from."""
    c = RunColumns.of(records)
    requests = c.table.requests
    errors = _counts(requests["error_type"].dropna())
    outcomes = Counter(c.outcome.tolist())
    finished = ~np.isnan(c.completed_at)
    return {
        "num_requests": len(c),
        "num_sent": int((~np.isnan(c.sent_at)).sum()),
        "num_completed": outcomes["completed"],
        "num_empty": outcomes["empty"],
        "num_errors": sum(errors.values()),
        "num_unfinished": outcomes["unfinished"],
        "errors_by_type": errors,
        "finish_reasons": _counts(requests["finish_reason"][finished]),
        "finish_reason_sources": _counts(requests["finish_reason_source"][finished]),
        "token_count_sources": {
            "prompt": dict(sorted(Counter(c.token_source("prompt").tolist()).items())),
            "output": dict(sorted(Counter(c.token_source("output").tolist()).items())),
        },
    }


def _counts(values) -> dict[str, int]:
    """Occurrences of each text in a column (missing ones as ``unknown``), sorted by text."""
    return dict(sorted(Counter(v if isinstance(v, str) and v else "unknown"
                               for v in values.tolist()).items()))


def deadline_summary(
    records: "Sequence[RequestRecord] | RunColumns",
    ttft_deadline: float | None,
    tbt_deadline: float | None,
    *,
    min_fluidity: float = 0.9,
    percentile: float = 1.0,
    columns: RunColumns | None = None,
    closed_loop: tuple[int, float] | None = None,
) -> dict:
    """Deadline metrics over successful requests with tokens (``columns``: the records' own,
    when the caller has built them).

    ``min_tbt_deadline`` and ``fluid_token_rate`` need no TBT deadline (they search for one);
    miss counts, mean miss rate and the fluidity distribution are None without ``tbt_deadline``.
    ``num_own_ttft_deadlines`` counts the evaluated requests judged by their record's own TTFT
    deadline instead of ``ttft_deadline``.
    """
    columns = RunColumns.of(records if columns is None else columns)
    tl = completed_timelines(columns)
    judged = row_deadlines(columns, ttft_deadline, tbt_deadline, tl)
    out: dict = {
        "includes": "completed requests (no error, >= 1 streamed token)",
        "ttft_deadline_s": ttft_deadline_label(columns, ttft_deadline),
        "tbt_deadline_s": tbt_deadline,
        "num_requests_evaluated": len(tl),
        "num_own_ttft_deadlines": int(np.count_nonzero(~np.isnan(tl.ttft))),
        "deadlines_total": None,
        "misses": None,
        "first_token_misses": None,
        "mean_miss_rate": None,
        "fluidity_index": None,
        "min_tbt_deadline": {"unit": "s", **Distribution.of(judged.min_tbt).to_dict()},
        "fluid_token_rate": fluid_token_rate(tl, ttft_deadline, min_fluidity=min_fluidity,
                                             percentile=percentile,
                                             min_tbt=judged.min_tbt).to_dict(),
    }
    if tbt_deadline is None:
        return out
    on_time, misses, first = judged.on_time, judged.misses, judged.first_misses
    total = on_time + misses
    miss_rate = misses[total > 0] / total[total > 0]
    out.update(
        deadlines_total=int(total.sum()),
        misses=int(misses.sum()),
        first_token_misses=int(first.sum()),
        mean_miss_rate=float(miss_rate.mean()) if miss_rate.size else None,
        fluidity_index={"unit": "fraction", **Distribution.of(1.0 - miss_rate).to_dict()},
    )
    return out

