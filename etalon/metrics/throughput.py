"""Run-level rates: token and request throughput over the run window, and open-loop health.

The run window starts at the earliest ``scheduled_at`` or ``sent_at`` of any request (so a
generator that sends late does not shrink it) and ends at the latest ``completed_at`` of any
request, failed ones included. Throughputs count completed requests only (``record.ok``: no
error, at least one token); empty responses add no tokens and are counted in ``num_empty``, not
in ``requests_per_s``. Rates are per second. Every function reads a run's columns
(:class:`RunColumns`; records are turned into them), no Python call per request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from etalon.metrics.columns import RunColumns
from etalon.metrics.distribution import percentile
from etalon.records import RequestRecord

Records = Sequence[RequestRecord] | RunColumns


@dataclass(frozen=True)
class RunWindow:
    """``[start_s, end_s]`` on the run clock, in seconds."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def run_window(records: Records) -> RunWindow | None:
    """The window rates are taken over; None when nothing completed or it has no length."""
    c = RunColumns.of(records)
    sent = c.sent_at[~np.isnan(c.sent_at)]
    ends = c.completed_at[~np.isnan(c.completed_at)]
    if not len(c) or not ends.size:
        return None
    start = min(float(c.scheduled_at.min()), float(sent.min()) if sent.size else np.inf)
    window = RunWindow(start, float(ends.max()))
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


def throughput(records: Records) -> Throughput:
    """Throughput over :func:`run_window`; rates are None when the window is undefined."""
    c = RunColumns.of(records)
    ok = c.ok
    n_prompt = int(c.prompt_tokens[ok].sum())
    n_output = int(c.output_tokens[ok].sum())
    n_errors = int((~c.table.missing("error_type")).sum())
    window = run_window(c)
    dur = window.duration_s if window else None
    return Throughput(
        window_start_s=window.start_s if window else None,
        window_end_s=window.end_s if window else None,
        duration_s=dur,
        num_requests=len(c),
        num_completed=int(ok.sum()),
        num_empty=int(c.empty.sum()),
        num_errors=n_errors,
        prompt_tokens=n_prompt,
        output_tokens=n_output,
        output_tokens_per_s=n_output / dur if dur else None,
        total_tokens_per_s=(n_prompt + n_output) / dur if dur else None,
        requests_per_s=int(ok.sum()) / dur if dur else None,
        error_rate=n_errors / len(c) if len(c) else None,
    )


def arrival_rate(times: Sequence[float]) -> float | None:
    """``(n - 1) / (last - first)`` in requests/s; None for fewer than 2 times or a zero span."""
    if len(times) < 2:
        return None
    times = np.asarray(times, dtype=float)
    span = float(times.max() - times.min())
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
    records: Records,
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
    c = RunColumns.of(records)
    has = ~np.isnan(c.sent_at)
    sent = c.sent_at[has]
    lags = sent - c.scheduled_at[has]
    achieved = arrival_rate(sent)
    source = "given" if target_qps is not None else "schedule"
    target = target_qps if target_qps is not None else arrival_rate(c.scheduled_at)
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


def closed_loop_load(records: Records, users: int, think_time_s: float) -> dict:
    """What a closed loop achieved, next to what Little's law says it should: ``users`` each
    cycling through a request's latency (send to last token), its think time and any dispatch
    lag give ``users / mean cycle`` requests per second. ``achieved_qps`` is measured over the
    whole run, its start included (every user sends at 0, then waits a first cycle), so with few
    requests per user it sits a little below the steady rate: 10 users, 400 requests of a
    saturated 20 req/s server achieve 19.8 (tests/test_capacity_jobs.py)."""
    c = RunColumns.of(records)
    done = ~np.isnan(c.sent_at) & ~np.isnan(c.completed_at)
    latency = float(np.mean(c.completed_at[done] - c.sent_at[done])) if done.any() else None
    lag = float(np.mean(c.sent_at[done] - c.scheduled_at[done])) if done.any() else 0.0
    cycle = latency + think_time_s + lag if latency is not None else None
    # user u's k_u sends span k_u - 1 cycles: n - users cycles over the span of the sends (the
    # plain (n - 1) / span counts the users' first sends, all at 0, as if they took time)
    sent = c.sent_at[~np.isnan(c.sent_at)]
    span = float(sent.max() - sent.min()) if sent.size else 0.0
    achieved = (len(sent) - users) / span if span > 0 and len(sent) > users else None
    return {"mode": "closed_loop", "users": users, "think_time_s": think_time_s,
            "achieved_qps": achieved,
            "mean_latency_s": latency,
            "littles_law_qps": users / cycle if cycle else None}
