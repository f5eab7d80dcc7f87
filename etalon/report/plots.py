"""PNG plots of a run: latency CDFs, TTFT vs prompt length, output tokens over time.

Uses matplotlib's object API with the Agg canvas directly, so it never touches pyplot's global
state or needs a display. A plot without data is skipped (not written, not in the result).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from etalon.metrics.latency import latency_series
from etalon.metrics.tokens import content_chunks, prompt_tokens
from etalon.records import RequestRecord

# (series name, x-axis label, title) of every CDF plot; times are shown in milliseconds.
CDF_PLOTS: tuple[tuple[str, str, str], ...] = (
    ("ttft", "TTFT (ms)", "Time to first token"),
    ("tbt", "TBT (ms, per token)", "Time between tokens"),
    ("e2e_latency", "End-to-end latency (ms)", "End-to-end latency"),
    ("dispatch_lag", "Dispatch lag (ms)", "Dispatch lag (sent - scheduled)"),
)


def make_plots(records: Sequence[RequestRecord], out_dir: str | Path) -> dict[str, Path]:
    """Writes every plot that has data into ``out_dir``; returns ``{plot name: path}``."""
    out = Path(out_dir)
    series = latency_series(records)
    written: dict[str, Path] = {}
    for name, xlabel, title in CDF_PLOTS:
        values = np.asarray(series[name].values) * 1e3
        path = plot_cdf(values, out / f"{name}_cdf.png", xlabel=xlabel, title=title)
        if path:
            written[f"{name}_cdf"] = path
    pairs = [(prompt_tokens(r)[0], r.ttft * 1e3) for r in records
             if r.ok and r.ttft is not None and len(content_chunks(r)[0])]
    path = plot_scatter([p for p, _ in pairs], [t for _, t in pairs],
                        out / "ttft_vs_prompt_tokens.png", xlabel="Prompt tokens",
                        ylabel="TTFT (ms)", title="TTFT vs prompt length")
    if path:
        written["ttft_vs_prompt_tokens"] = path
    path = plot_tokens_over_time(records, out / "output_tokens_over_time.png")
    if path:
        written["output_tokens_over_time"] = path
    return written


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_cdf(values: Sequence[float] | np.ndarray, path: Path, *, xlabel: str,
             title: str) -> Path | None:
    """Empirical CDF of ``values``; None (nothing written) when there are none."""
    v = np.sort(np.asarray(values, dtype=float))
    v = v[~np.isnan(v)]
    if v.size == 0:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.step(v, np.arange(1, v.size + 1) / v.size, where="post")
    for q in (50, 90, 99):
        ax.axvline(np.percentile(v, q), linestyle=":", linewidth=0.8, color="grey")
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


def plot_tokens_over_time(records: Sequence[RequestRecord], path: Path) -> Path | None:
    """Cumulative streamed output tokens (all requests, failed ones' partial output too) vs time."""
    times, tokens = [], []
    for r in records:
        t, k = content_chunks(r)
        times.append(t)
        tokens.append(k)
    if not times or sum(len(t) for t in times) == 0:
        return None
    t = np.concatenate(times)
    k = np.concatenate(tokens)
    order = np.argsort(t, kind="stable")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.step(t[order], np.cumsum(k[order]), where="post")
    ax.set(xlabel="Time since run start (s)", ylabel="Output tokens (cumulative)",
           title="Output tokens generated over time")
    ax.grid(alpha=0.3)
    return _save(fig, path)
