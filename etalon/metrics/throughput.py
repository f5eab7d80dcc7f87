"""Run-level rates: token and request throughput over the run window, and open-loop health.

The run window starts at the earliest ``scheduled_at`` or ``sent_at`` of any request (so a
generator that sends late does not shrink it) and ends at the latest ``completed_at`` of any
request, failed ones included. Throughputs count completed requests only (``record.ok``: no
error, at least one token); empty responses add no tokens and are counted in ``num_empty``, not
in ``requests_per_s``. Rates are per second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from etalon.metrics.distribution import percentile
from etalon.metrics.tokens import output_tokens, prompt_tokens
from etalon.records import RequestRecord


@dataclass(frozen=True)
class RunWindow:
    """``[start_s, end_s]`` on the run clock, in seconds."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def run_window(records: Sequence[RequestRecord]) -> RunWindow | None:
    """The window rates are taken over; None when nothing completed or it has no length."""
    starts = [r.scheduled_at for r in records]
    starts += [r.sent_at for r in records if r.sent_at is not None]
    ends = [r.completed_at for r in records if r.completed_at is not None]
    if not starts or not ends:
        return None
    window = RunWindow(min(starts), max(ends))
    return window if window.duration_s > 0 else None


@dataclass(frozen=True)
class Throughput:
    """Token and request throughput of successful requests over the run window."""

    window_start_s: float | None
    window_end_s: float | None
    duration_s: float | None
    num_requests: int
    num_completed: int
    num_empty: int
    num_errors: int
    prompt_tokens: int
    output_tokens: int
    output_tokens_per_s: float | None
    total_tokens_per_s: float | None
    requests_per_s: float | None
    error_rate: float | None
    includes: str = ("completed requests (no error, >= 1 token) for tokens and requests_per_s; "
                     "all requests for error_rate")

    def to_dict(self) -> dict:
        return asdict(self)


def throughput(records: Sequence[RequestRecord]) -> Throughput:
    """Throughput over :func:`run_window`; rates are None when the window is undefined."""
    ok = [r for r in records if r.ok]
    n_prompt = sum(prompt_tokens(r)[0] for r in ok)
    n_output = sum(output_tokens(r)[0] for r in ok)
    n_errors = sum(1 for r in records if r.error_type is not None)
    window = run_window(records)
    dur = window.duration_s if window else None
    return Throughput(
        window_start_s=window.start_s if window else None,
        window_end_s=window.end_s if window else None,
        duration_s=dur,
        num_requests=len(records),
        num_completed=len(ok),
        num_empty=sum(1 for r in records if r.empty),
        num_errors=n_errors,
        prompt_tokens=n_prompt,
        output_tokens=n_output,
        output_tokens_per_s=n_output / dur if dur else None,
        total_tokens_per_s=(n_prompt + n_output) / dur if dur else None,
        requests_per_s=len(ok) / dur if dur else None,
        error_rate=n_errors / len(records) if records else None,
    )


def arrival_rate(times: Sequence[float]) -> float | None:
    """``(n - 1) / (last - first)`` in requests/s; None for fewer than 2 times or a zero span."""
    if len(times) < 2:
        return None
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else None


@dataclass(frozen=True)
class LoadCheck:
    """Did the open-loop generator keep to its schedule? ``warning`` is set when it did not."""

    num_sent: int
    achieved_qps: float | None
    target_qps: float | None
    target_source: str | None
    dispatch_lag_p99_s: float | None
    lag_threshold_s: float
    min_rate_fraction: float
    fell_behind: bool
    warning: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def check_load(
    records: Sequence[RequestRecord],
    *,
    target_qps: float | None = None,
    lag_threshold_s: float = 0.010,
    min_rate_fraction: float = 0.95,
) -> LoadCheck:
    """Achieved vs. target arrival rate and p99 dispatch lag, with a fell-behind verdict.

    The achieved rate is :func:`arrival_rate` of the ``sent_at`` times; the target is
    ``target_qps`` when given, else :func:`arrival_rate` of the ``scheduled_at`` times. The
    generator fell behind when p99 dispatch lag > ``lag_threshold_s`` or achieved <
    ``min_rate_fraction`` x target.
    """
    sent = [r.sent_at for r in records if r.sent_at is not None]
    lags = np.array([r.sent_at - r.scheduled_at for r in records if r.sent_at is not None])
    achieved = arrival_rate(sent)
    source = "given" if target_qps is not None else "schedule"
    target = target_qps if target_qps is not None else arrival_rate([r.scheduled_at for r in records])
    if target is None:
        source = None
    p99 = percentile(lags, 99.0)
    reasons = []
    if p99 is not None and p99 > lag_threshold_s:
        reasons.append(f"p99 dispatch lag {p99 * 1e3:.1f} ms > {lag_threshold_s * 1e3:.1f} ms")
    if achieved is not None and target is not None and achieved < min_rate_fraction * target:
        reasons.append(
            f"achieved {achieved:.3g} req/s < {min_rate_fraction:.0%} of target {target:.3g} req/s"
        )
    warning = None
    if reasons:
        warning = (
            "LOAD GENERATOR FELL BEHIND: " + "; ".join(reasons) + ". The server saw less load "
            "than asked for; trust the *_from_schedule latencies, or add clients/CPU."
        )
    return LoadCheck(
        num_sent=len(sent),
        achieved_qps=achieved,
        target_qps=target,
        target_source=source,
        dispatch_lag_p99_s=p99,
        lag_threshold_s=lag_threshold_s,
        min_rate_fraction=min_rate_fraction,
        fell_behind=bool(reasons),
        warning=warning,
    )


def closed_loop_load(records: Sequence[RequestRecord], users: int, think_time_s: float) -> dict:
    """What a closed loop achieved, next to what Little's law says it should: ``users`` each
    cycling through a request's latency (send to last token), its think time and any dispatch
    lag give ``users / mean cycle`` requests per second. ``achieved_qps`` is measured over the
    whole run, its start included (every user sends at 0, then waits a first cycle), so with few
    requests per user it sits a little below the steady rate: 10 users, 400 requests of a
    saturated 20 req/s server achieve 19.8 (tests/test_capacity_jobs.py)."""
    done = [r for r in records if r.sent_at is not None and r.completed_at is not None]
    latency = float(np.mean([r.e2e_latency for r in done])) if done else None
    lag = float(np.mean([r.dispatch_lag for r in done])) if done else 0.0
    cycle = latency + think_time_s + lag if latency is not None else None
    # user u's k_u sends span k_u - 1 cycles: n - users cycles over the span of the sends (the
    # plain (n - 1) / span counts the users' first sends, all at 0, as if they took time)
    sent = [r.sent_at for r in records if r.sent_at is not None]
    span = max(sent) - min(sent) if sent else 0.0
    achieved = (len(sent) - users) / span if span > 0 and len(sent) > users else None
    return {"mode": "closed_loop", "users": users, "think_time_s": think_time_s,
            "achieved_qps": achieved,
            "mean_latency_s": latency,
            "littles_law_qps": users / cycle if cycle else None}
