"""What each PNG plot shows, reduced to a few thousand points: a :class:`PlotSpec` per plot.

This half needs numpy only. Drawing a spec (``etalon.report.plots``) needs matplotlib, which
takes ~0.6 s to import and ~0.1 s a figure. A spec is small and picklable, so a command can hand
its plots to a second process (``etalon.report.plot_worker``) and go on writing its other
results while they are drawn. The reduction happens here, next to the run's columns: a CDF
through its quantiles, a time series binned, a scatter thinned evenly. So a 1M-request run
plots as fast as a 1k one, and titles still give the full sample count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection, Sequence

import numpy as np

from etalon.report.downsample import (
    MAX_POINTS, bin_edges, cdf_points, sorted_quantiles, step_mean_per_bin, thin,
)

if TYPE_CHECKING:  # the drawing process needs none of these (pandas and Arrow: ~0.5 s)
    from etalon.metrics.columns import RunColumns
    from etalon.record_table import RecordTable
    from etalon.records import RequestRecord

# (series name, x-axis label, title) of every CDF plot; times are shown in milliseconds.
STREAM_PLOTS = ("ttft_vs_prompt_tokens", "output_tokens_over_time")  # need no latency series
CDF_PLOTS: tuple[tuple[str, str, str], ...] = (
    ("ttft", "TTFT (ms)", "Time to first token"),
    ("tbt", "TBT (ms, per token)", "Time between tokens"),
    ("e2e_latency", "End-to-end latency (ms)", "End-to-end latency"),
    ("dispatch_lag", "Dispatch lag (ms)", "Dispatch lag (sent - scheduled)"),
)
RUN_PLOTS = (*(f"{name}_cdf" for name, _, _ in CDF_PLOTS), *STREAM_PLOTS)


@dataclass(frozen=True)
class Line:
    """One curve: ``style`` is "line", "step" (value ``y[i]`` from ``x[i]`` on) or "scatter"."""

    x: np.ndarray
    y: np.ndarray
    style: str = "line"
    label: str | None = None
    width: float | None = None  # line width (points); None: matplotlib's default


@dataclass(frozen=True)
class PlotSpec:
    """Everything one PNG draws; ``vlines``: dotted markers (e.g. p50/p90/p99) at these x."""

    lines: tuple[Line, ...]
    xlabel: str
    ylabel: str
    title: str | None = None
    size: tuple[float, float] = (6.0, 4.0)
    vlines: tuple[float, ...] = ()
    ylim: tuple[float, float] | None = None
    legend: bool = False

    @property
    def points(self) -> int:
        return sum(len(line.x) for line in self.lines)


def cdf_spec(values: Sequence[float] | np.ndarray, *, xlabel: str, title: str,
             presorted: bool = False, scale: float = 1.0) -> PlotSpec | None:
    """Empirical CDF of ``values`` times ``scale`` (applied to the points drawn, not to a copy
    of every sample), p50/p90/p99 marked; None when there are none. ``presorted``: the values
    are finite and ascending already."""
    v = np.asarray(values, dtype=float)
    if not presorted:
        v = np.sort(v[np.isfinite(v)])
    if v.size == 0:
        return None
    x, q = cdf_points(v, presorted=True)
    # every sample as a step; past MAX_POINTS the curve through that many quantiles
    line = Line(x * scale, q, "step" if v.size <= MAX_POINTS else "line")
    marks = sorted_quantiles(v, np.array([0.5, 0.9, 0.99])) * scale
    return PlotSpec((line,), xlabel, "Fraction of samples", f"{title} (n={v.size})",
                    vlines=tuple(float(m) for m in marks), ylim=(0.0, 1.01))


def scatter_spec(x: Sequence[float], y: Sequence[float], *, xlabel: str, ylabel: str,
                 title: str) -> PlotSpec | None:
    """Scatter of ``y`` against ``x`` (the caller thins them); None when empty."""
    if len(x) == 0:
        return None
    return PlotSpec((Line(np.asarray(x, dtype=float), np.asarray(y, dtype=float), "scatter"),),
                    xlabel, ylabel, title)


def tokens_over_time_spec(times: np.ndarray, tokens: np.ndarray | None) -> PlotSpec | None:
    """Cumulative streamed output tokens (all requests, failed ones' partial output too) vs
    time, from the content chunks' arrival times and token counts (binned when there are many;
    ``tokens`` None: one per chunk, counted without a weight array)."""
    if len(times) == 0:
        return None
    if len(times) <= MAX_POINTS:
        order = np.argsort(times, kind="stable")
        t = times[order]
        total = np.arange(1, len(t) + 1) if tokens is None else np.cumsum(tokens[order])
    else:
        counts, edges = np.histogram(times, bins=MAX_POINTS, weights=tokens)
        t, total = edges[1:], np.cumsum(counts)
    return PlotSpec((Line(np.asarray(t, dtype=float), np.asarray(total, dtype=float), "step"),),
                    "Time since run start (s)", "Output tokens (cumulative)",
                    "Output tokens generated over time")


def steps_spec(lines: Sequence[tuple[str, np.ndarray, np.ndarray]], *, xlabel: str, ylabel: str,
               legend: bool = True) -> PlotSpec | None:
    """Step functions ``(label, t, v)`` (value ``v[i]`` from ``t[i]``, sorted) on one axis; a
    line of more than MAX_POINTS samples is its time-weighted mean over MAX_POINTS bins. None
    when no line has samples."""
    drawn, binned = [], False
    for label, t, v in lines:
        t, v = np.asarray(t, dtype=float), np.asarray(v, dtype=float)
        if not len(t):
            continue
        if len(t) > MAX_POINTS:
            edges = bin_edges(float(t[0]), float(t[-1]), MAX_POINTS)
            t, v = edges[:-1], step_mean_per_bin(t, v, edges)
            binned = True
        drawn.append(Line(t, v, "step", label, width=0.8))
    if not drawn:
        return None
    return PlotSpec(tuple(drawn), xlabel, f"{ylabel} (binned mean)" if binned else ylabel,
                    size=(7.0, 3.5), legend=legend)


def run_specs(records: "Sequence[RequestRecord] | RecordTable | RunColumns",
              names: Collection[str] | None = None) -> dict[str, PlotSpec]:
    """The run's plots among ``names`` (default: every one of :data:`RUN_PLOTS`) that have
    data, by name (the PNG's file stem). The :data:`STREAM_PLOTS` read the columns alone, so a
    command can have them drawn before its summary; the CDFs read the latency series the
    summary computes."""
    wanted = set(RUN_PLOTS if names is None else names)
    from etalon.metrics.columns import RunColumns
    from etalon.metrics.latency import latency_series

    c = RunColumns.of(records)
    specs: dict[str, PlotSpec | None] = {}
    if any(f"{name}_cdf" in wanted for name, _, _ in CDF_PLOTS):
        series = latency_series(c)
        specs = {f"{name}_cdf": cdf_spec(series[name].sorted_values, xlabel=xlabel, title=title,
                                         presorted=True, scale=1e3)
                 for name, xlabel, title in CDF_PLOTS if f"{name}_cdf" in wanted}
    if "ttft_vs_prompt_tokens" in wanted:
        has = c.ok & ~np.isnan(c.sent_at)
        keep = thin(np.flatnonzero(has))
        specs["ttft_vs_prompt_tokens"] = scatter_spec(
            c.prompt_tokens[keep], (c.first_chunk - c.sent_at)[keep] * 1e3,
            xlabel="Prompt tokens", ylabel="TTFT (ms)",
            title=f"TTFT vs prompt length (n={int(has.sum())})")
    if "output_tokens_over_time" in wanted:
        specs["output_tokens_over_time"] = tokens_over_time_spec(c.chunk_times, c.chunk_weights)
    return {name: spec for name, spec in specs.items() if spec is not None}
