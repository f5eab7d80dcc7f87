"""PNG plots of a run: latency CDFs, TTFT vs prompt length, output tokens over time, and a
simulation's per-replica state over time.

Uses matplotlib's object API with the Agg canvas directly, so it never touches pyplot's global
state or needs a display. A plot without data is skipped (not written, not in the result).
Each plot draws at most a few thousand points whatever the run's size (a CDF through its
quantiles, a time series binned, a scatter thinned evenly), so a 1M-request run plots as fast
as a 1k one; titles still give the full sample count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from etalon.metrics.columns import RunColumns
from etalon.metrics.latency import latency_series
from etalon.record_table import RecordTable
from etalon.records import RequestRecord
from etalon.report.downsample import (
    MAX_POINTS, bin_edges, cdf_points, sorted_quantiles, step_mean_per_bin, thin,
)

# (series name, x-axis label, title) of every CDF plot; times are shown in milliseconds.
CDF_PLOTS: tuple[tuple[str, str, str], ...] = (
    ("ttft", "TTFT (ms)", "Time to first token"),
    ("tbt", "TBT (ms, per token)", "Time between tokens"),
    ("e2e_latency", "End-to-end latency (ms)", "End-to-end latency"),
    ("dispatch_lag", "Dispatch lag (ms)", "Dispatch lag (sent - scheduled)"),
)


def make_plots(records: "Sequence[RequestRecord] | RecordTable | RunColumns",
               out_dir: str | Path) -> dict[str, Path]:
    """Writes every plot that has data into ``out_dir``; returns ``{plot name: path}``."""
    out = Path(out_dir)
    c = RunColumns.of(records)
    series = latency_series(c)
    written: dict[str, Path] = {}
    for name, xlabel, title in CDF_PLOTS:
        path = plot_cdf(series[name].sorted_values, out / f"{name}_cdf.png", xlabel=xlabel,
                        title=title, presorted=True, scale=1e3)
        if path:
            written[f"{name}_cdf"] = path
    has = c.ok & ~np.isnan(c.sent_at)
    keep = thin(np.flatnonzero(has))
    path = plot_scatter(c.prompt_tokens[keep], (c.first_chunk - c.sent_at)[keep] * 1e3,
                        out / "ttft_vs_prompt_tokens.png", xlabel="Prompt tokens",
                        ylabel="TTFT (ms)", title=f"TTFT vs prompt length (n={int(has.sum())})")
    if path:
        written["ttft_vs_prompt_tokens"] = path
    path = plot_tokens_over_time(c.chunk_times, c.chunk_tokens, out / "output_tokens_over_time.png")
    if path:
        written["output_tokens_over_time"] = path
    return written


def _save(fig: Figure, path: Path) -> Path:
    """Margins fixed in inches (room for the tick labels, axis labels and title): a tight
    bounding box would draw every figure twice, half of a plot's cost."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.2 / width, bottom=0.6 / height,
                        top=1 - 0.4 / height)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def plot_cdf(values: Sequence[float] | np.ndarray, path: Path, *, xlabel: str,
             title: str, presorted: bool = False, scale: float = 1.0) -> Path | None:
    """Empirical CDF of ``values`` times ``scale`` (applied to the points drawn, not to a copy
    of every sample); None (nothing written) when there are none. ``presorted``: the values
    are finite and ascending already."""
    v = np.asarray(values, dtype=float)
    if not presorted:
        v = np.sort(v[np.isfinite(v)])
    if v.size == 0:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    x, q = cdf_points(v, presorted=True)
    if v.size <= MAX_POINTS:
        ax.step(x * scale, q, where="post")
    else:  # the CDF through MAX_POINTS quantiles: the same curve to the eye, bounded cost
        ax.plot(x * scale, q)
    for p in sorted_quantiles(v, np.array([0.5, 0.9, 0.99])) * scale:
        ax.axvline(p, linestyle=":", linewidth=0.8, color="grey")
    ax.set(xlabel=xlabel, ylabel="Fraction of samples", title=f"{title} (n={v.size})", ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_scatter(x: Sequence[float], y: Sequence[float], path: Path, *, xlabel: str, ylabel: str,
                 title: str) -> Path | None:
    """Scatter of ``y`` against ``x``; None when empty."""
    if len(x) == 0:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.scatter(x, y, s=6, alpha=0.6)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_tokens_over_time(times: np.ndarray, tokens: np.ndarray, path: Path) -> Path | None:
    """Cumulative streamed output tokens (all requests, failed ones' partial output too) vs
    time, from the content chunks' arrival times and token counts (binned when there are many)."""
    if len(times) == 0:
        return None
    if len(times) <= MAX_POINTS:
        order = np.argsort(times, kind="stable")
        t, total = times[order], np.cumsum(tokens[order])
    else:
        counts, edges = np.histogram(times, bins=MAX_POINTS, weights=tokens)
        t, total = edges[1:], np.cumsum(counts)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.step(t, total, where="post")
    ax.set(xlabel="Time since run start (s)", ylabel="Output tokens (cumulative)",
           title="Output tokens generated over time")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_steps(lines: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path, *, xlabel: str,
               ylabel: str, legend: bool = True) -> Path | None:
    """Step functions ``(label, t, v)`` (value ``v[i]`` from ``t[i]``, sorted) on one axis; a
    line of more than MAX_POINTS samples is drawn as its time-weighted mean over MAX_POINTS
    bins. None when no line has samples."""
    lines = [(label, np.asarray(t, dtype=float), np.asarray(v, dtype=float))
             for label, t, v in lines if len(t)]
    if not lines:
        return None
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    binned = False
    for label, t, v in lines:
        if len(t) > MAX_POINTS:
            edges = bin_edges(float(t[0]), float(t[-1]), MAX_POINTS)
            t, v = edges[:-1], step_mean_per_bin(t, v, edges)
            binned = True
        ax.step(t, v, where="post", label=label, linewidth=0.8)
    ax.set(xlabel=xlabel, ylabel=f"{ylabel} (binned mean)" if binned else ylabel)
    if legend:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)
