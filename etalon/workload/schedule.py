"""Builds the whole open-loop arrival schedule up front, as absolute times.

Conventions: the first request is scheduled at ``t = 0`` (the run start, as in ``records.py``)
and request ``i`` at the sum of the first ``i`` gaps. Intervals and lengths come from two
independent streams spawned from ``SeedSequence(seed)``, so the same seed gives the same
requests in any process, and changing the length provider does not move the arrivals. Prefix
groups come from a third stream, so turning shared prefixes on moves neither arrivals nor
lengths.
"""

from __future__ import annotations

import logging

import numpy as np

from .config import WorkloadConfig
from .intervals import make_interval_generator
from .lengths import make_length_generator
from .prefixes import make_prefix_generator
from .request import Request
from .sessions import fixed_turns, session_requests

log = logging.getLogger(__name__)


def workload_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(intervals, lengths) generators; independent, and fixed by ``seed`` alone."""
    interval_seq, length_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(interval_seq), np.random.default_rng(length_seq)


def prefix_stream(seed: int) -> np.random.Generator:
    """The prefix generator's stream: ``SeedSequence(seed)``'s third child (the first two are
    ``workload_streams``'s, unchanged by its existence)."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])


def arrival_times(gaps: np.ndarray) -> np.ndarray:
    """Absolute times ``[0, g0, g0 + g1, ...]``: one more time than gaps."""
    return np.concatenate(([0.0], np.cumsum(np.asarray(gaps, dtype=np.float64))))


def build_requests(cfg: WorkloadConfig) -> list[Request]:
    """The schedule of ``cfg.max_num_completed_requests`` requests, sorted by arrival.

    The count is the smallest of what was asked and what each generator could give: a trace
    that runs out ends the schedule cleanly (a trace of ``m`` arrival rows gives ``m``).
    """
    cfg.validate()
    interval_rng, length_rng = workload_streams(cfg.seed)
    intervals = make_interval_generator(cfg, interval_rng)
    lengths = make_length_generator(cfg, length_rng)
    n = cfg.max_num_completed_requests
    plan = lengths.session_plan(n)  # a dataset's whole conversations, each a session
    if plan is not None:
        times = arrival_times(intervals.intervals(max(plan.num_sessions - 1, 0)))
        if len(times) < plan.num_sessions:
            log.warning("%d sessions planned, the arrival trace gives %d: the run has %d",
                        plan.num_sessions, len(times), len(times))
            plan = plan.head(len(times))
        return session_requests(times, plan)
    turns = cfg.session_turns
    arrivals = -(-n // turns)  # sessions (each of `turns` requests), or requests
    times = arrival_times(intervals.intervals(max(arrivals - 1, 0)))
    prefill, decode = lengths.lengths(n)
    count = min(n, len(times) * turns, len(prefill))
    if count < n:
        short = "length trace" if len(prefill) < n else "arrival trace"
        log.warning("%d requests asked, the %s gives %d: the run has %d%s", n, short,
                    len(prefill) if len(prefill) < n else len(times) * turns, count,
                    " (--trace-request-length-generator-cycle repeats the lengths)"
                    if len(prefill) < n else "")
    texts = getattr(lengths, "prompts", None) or [None] * count  # a dataset's real prompts
    if turns > 1:
        return session_requests(times, fixed_turns(prefill[:count], decode[:count], turns,
                                                   texts[:count]))
    prefill, decode, prefixes = make_prefix_generator(cfg, prefix_stream(cfg.seed)).apply(
        prefill, decode)
    return [Request(i, float(times[i]), int(prefill[i]), int(decode[i]),
                    int(prefixes.group[i]) if prefixes.group[i] >= 0 else None,
                    int(prefixes.tokens[i]), prompt_text=texts[i])
            for i in range(count)]
