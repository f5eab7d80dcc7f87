"""The charts of one or more runs, overlaid: latency CDFs, TTFT against prompt length,
throughput and requests in flight over time, a simulation's batch, queue and KV use, the
deadline miss rate against the TBT target.

Every number comes from :mod:`etalon.metrics` (latency series, deadline evaluation) over the
run's records; this module only chooses points to draw (:mod:`etalon.report.downsample`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from etalon.metrics.columns import RunColumns
from etalon.metrics.deadlines import Timelines, evaluate_many, run_wide_ttft
from etalon.metrics.latency import latency_series
from etalon.report.charts import Chart, Series
from etalon.report.downsample import (
    bin_edges, cdf_points, level_at, rate_per_bin, step_mean_per_bin, thin,
)
from etalon.engine.gauges import KV_USAGE, RUNNING, WAITING
from etalon.metrics.server_series import PREFIX_HITS, PREFIX_QUERIES, per_time, resample
from etalon.report.run_dir import RunDir

CDFS: tuple[tuple[str, str, str], ...] = (
    ("ttft", "Time to first token", "TTFT (ms)"),
    ("tbt", "Time between tokens (per token)", "TBT (ms)"),
    ("e2e_latency", "End-to-end latency", "E2E latency (ms)"),
    ("dispatch_lag", "Dispatch lag (sent - scheduled)", "dispatch lag (ms)"),
)
CDF_POINTS = 600
TIME_BINS = 300
MISS_GRID = 25  # TBT deadlines tried for the miss-rate curve
# Requests walked for that curve: each of its 26 deadlines walks every token of every request
# (7.8 s of a 100k-request ShareGPT report; 0.6 s at 5,000 requests, the largest share of a 10k
# run's report, 0.29 s at 2,000). A mean over 2,000 requests spread evenly over the run came
# within 0.002 of the whole run's at every deadline of that 10k run (1,000: 0.005), which a
# chart cannot show; smaller runs are walked whole.
MISS_CURVE_REQUESTS = 2000
MAX_REPLICAS = 8  # per run, in the simulation timelines


@dataclass
class RunCharts:
    """One run as columns, with what every chart needs."""

    label: str
    run: RunDir
    columns: RunColumns

    @classmethod
    def of(cls, label: str, run: RunDir) -> "RunCharts":
        return cls(label, run, RunColumns.of(run.table))

    @cached_property
    def last_event(self) -> float:
        """The run's last completion, token or send (``t0`` when it has none): the end of the
        over-time charts. Read array by array, ignoring NaN, with no copy of the token times."""
        c = self.columns
        ends = [float(np.fmax.reduce(a)) for a in (c.completed_at, c.chunk_times, c.sent_at)
                if a.size]
        ends = [e for e in ends if np.isfinite(e)]
        return max(ends) if ends else self.t0

    @property
    def t0(self) -> float:
        """The run's first scheduled arrival: time 0 of the over-time charts."""
        s = self.columns.scheduled_at
        return float(np.nanmin(s)) if len(s) and not np.isnan(s).all() else 0.0


def build_charts(runs: list[RunCharts]) -> list[Chart]:
    """Every chart that has data, each overlaying the runs (one colour per run)."""
    charts = cdf_charts(runs)
    charts += [make(runs) for make in (ttft_vs_prompt, throughput_over_time,
                                       completions_over_time, in_flight_over_time,
                                       miss_rate_curve)]
    charts += [timeline_chart(runs, *spec) for spec in TIMELINE_CHARTS]
    charts += [server_chart(runs, *spec) for spec in SERVER_CHARTS]
    charts.append(prefix_hit_rate_over_time(runs))
    return [c for c in charts if not c.empty]


def _each(runs: list[RunCharts], make: Callable[[int, RunCharts], list[Series]]) -> list[Series]:
    return [s for i, r in enumerate(runs) for s in make(i, r)]


def cdf_charts(runs: list[RunCharts]) -> list[Chart]:
    series = [latency_series(r.columns) for r in runs]
    charts = []
    for name, title, xlabel in CDFS:
        chart = Chart(f"cdf_{name}", title, xlabel, "fraction of samples", ymin=0, ymax=1,
                      log_toggle=True, note="p50/p90/p99 marked; click a legend entry to hide it")
        for i, (r, s) in enumerate(zip(runs, series)):
            x, q = cdf_points(s[name].sorted_values, CDF_POINTS, presorted=True)
            chart.series.append(Series(f"{r.label} (n={len(s[name])})", x * 1e3, q, "line", i))
            dist = r.run.summary.get("latency", {}).get(name) or {}
            for p in ("p50", "p90", "p99"):
                if dist.get(p) is not None:
                    chart.vlines.append({"x": dist[p] * 1e3, "label": p, "group": i})
        charts.append(chart)
    return charts


def ttft_vs_prompt(runs: list[RunCharts]) -> Chart:
    def make(i: int, r: RunCharts) -> list[Series]:
        c = r.columns
        has = np.flatnonzero(c.ok & ~np.isnan(c.sent_at))
        keep = thin(has)
        return [Series(f"{r.label} ({len(keep)} of {len(has)})", c.prompt_tokens[keep],
                       c.ttft[keep] * 1e3, "points", i)]

    return Chart("ttft_vs_prompt", "TTFT against prompt length", "prompt tokens", "TTFT (ms)",
                 _each(runs, make), note="completed requests, thinned evenly to at most 2000")


def _edges(r: RunCharts) -> np.ndarray:
    return bin_edges(r.t0, r.last_event, TIME_BINS)


def throughput_over_time(runs: list[RunCharts]) -> Chart:
    def make(i: int, r: RunCharts) -> list[Series]:
        c, edges = r.columns, _edges(r)
        return [Series(r.label, edges[:-1] - r.t0,
                       rate_per_bin(c.chunk_times, c.chunk_weights, edges), "step", i)]

    return Chart("throughput", "Output tokens per second", "time since the first arrival (s)",
                 "output tokens/s", _each(runs, make), ymin=0,
                 note=f"every streamed token, {TIME_BINS} bins per run")


def completions_over_time(runs: list[RunCharts]) -> Chart:
    def make(i: int, r: RunCharts) -> list[Series]:
        c, edges = r.columns, _edges(r)
        return [Series(r.label, edges[:-1] - r.t0, rate_per_bin(c.completed_at[c.ok], None, edges),
                       "step", i)]

    return Chart("completions", "Completed requests per second",
                 "time since the first arrival (s)", "requests/s", _each(runs, make), ymin=0,
                 note=f"completed requests (no error, >= 1 token), {TIME_BINS} bins per run")


def in_flight_over_time(runs: list[RunCharts]) -> Chart:
    def make(i: int, r: RunCharts) -> list[Series]:
        c, edges = r.columns, _edges(r)
        return [Series(r.label, edges - r.t0, level_at(c.sent_at, c.completed_at, edges),
                       "step", i)]

    return Chart("in_flight", "Requests in flight", "time since the first arrival (s)",
                 "requests (sent, not finished)", _each(runs, make), ymin=0)


# (timeline column, title, y label); KV is shown as the fraction of the replica's blocks
TIMELINE_CHARTS: tuple[tuple[str, str, str], ...] = (
    ("batch_size", "Batch size (simulated)", "requests in the step"),
    ("queue_length", "Queue length (simulated)", "waiting requests"),
    ("kv_blocks_used", "KV cache in use (simulated)", "fraction of the KV blocks"),
)


def timeline_chart(runs: list[RunCharts], column: str, title: str, ylabel: str) -> Chart:
    def make(i: int, r: RunCharts) -> list[Series]:
        tl = r.run.timeline
        if tl is None or tl.empty:
            return []
        edges = bin_edges(float(tl["time"].min()), float(tl["time"].max()), TIME_BINS)
        out = []
        for (pool, rid), rows in list(tl.groupby(["pool", "replica_id"], sort=True))[:MAX_REPLICAS]:
            rows = rows.sort_values("time", kind="stable")
            v = rows[column].to_numpy(float)
            if column == "kv_blocks_used":
                v = v / rows["kv_blocks_total"].to_numpy(float)
            out.append(Series(f"{r.label}: {pool} {rid}", edges[:-1] - r.t0,
                              step_mean_per_bin(rows["time"].to_numpy(float), v, edges),
                              "step", i))
        return out

    return Chart(f"sim_{column}", title, "time since the first arrival (s)", ylabel,
                 _each(runs, make), ymin=0,
                 note=f"time-weighted mean over {TIME_BINS} bins; at most {MAX_REPLICAS} "
                      f"replicas per run")


# (series name, title, y label): the server's own /metrics, scraped live or written by the
# simulator under the same names, so a live and a simulated run overlay
SERVER_CHARTS: tuple[tuple[str, str, str], ...] = (
    (RUNNING, "Requests running (server /metrics)", "requests in the batch"),
    (WAITING, "Requests waiting (server /metrics)", "requests in the queue"),
    (KV_USAGE, "KV cache in use (server /metrics)", "fraction of the KV blocks"),
)


def server_chart(runs: list[RunCharts], name: str, title: str, ylabel: str) -> Chart:
    def make(i: int, r: RunCharts) -> list[Series]:
        df = r.run.server_metrics
        if df is None or df.empty:
            return []
        s = per_time(df, name)
        if s.empty:
            return []
        t = s.index.to_numpy(float)
        edges = bin_edges(float(t.min()), float(t.max()), TIME_BINS)
        return [Series(r.label, edges[:-1] - r.t0, step_mean_per_bin(t, s.to_numpy(float), edges),
                       "step", i)]

    return Chart(f"server_{name.split(':')[-1]}", title, "time since the run start (s)", ylabel,
                 _each(runs, make), ymin=0,
                 note=f"{name}, engines added up (a fraction averaged); at most {TIME_BINS} bins")


def prefix_hit_rate_over_time(runs: list[RunCharts]) -> Chart:
    """The prefix cache's hit rate in each time bin: prompt tokens found in the cache over those
    looked up, both read as increases of the server's two counters (vLLM's, or the
    simulator's under the same names), so a cache warming up or thrashing shows."""
    def make(i: int, r: RunCharts) -> list[Series]:
        df = r.run.server_metrics
        if df is None or df.empty:
            return []
        queries, hits = per_time(df, PREFIX_QUERIES), per_time(df, PREFIX_HITS)
        both = queries.index.intersection(hits.index)
        if len(both) < 2:
            return []
        t = both.to_numpy(float)
        edges = bin_edges(float(t.min()), float(t.max()), min(TIME_BINS, len(t) - 1))
        asked = np.diff(resample(t, queries[both].to_numpy(float), edges))
        found = np.diff(resample(t, hits[both].to_numpy(float), edges))
        some = asked > 0
        return [Series(r.label, (edges[:-1] - r.t0)[some], found[some] / asked[some], "step", i)]

    return Chart("server_prefix_hit_rate", "Prefix-cache hit rate over time (server /metrics)",
                 "time since the run start (s)", "prompt tokens found / looked up",
                 _each(runs, make), ymin=0, ymax=1,
                 note=f"increase of {PREFIX_HITS} over that of {PREFIX_QUERIES} in each bin "
                      f"(bins without a lookup left out)")


def miss_rate_curve(runs: list[RunCharts]) -> Chart:
    """Mean per-request deadline miss rate (the summary's ``mean_miss_rate``) at TBT deadlines
    around the run's target (or its TBT distribution when it has none)."""
    chart = Chart("miss_rate", "Deadline miss rate against the TBT deadline", "TBT deadline (ms)",
                  "mean deadline miss rate", xlog=True, ymin=0,
                  note="per request: missed deadlines / deadlines, averaged over completed "
                       "requests; the run's TBT target marked")
    sampled: list[str] = []
    for i, r in enumerate(runs):
        params = r.run.summary.get("parameters") or {}
        target = params.get("tbt_deadline_s")
        grid = _deadline_grid(target, (r.run.summary.get("latency") or {}).get("tbt") or {})
        if grid is None:
            continue
        c = r.columns
        completed = np.flatnonzero(c.ok)
        rows = thin(completed, MISS_CURVE_REQUESTS)
        tl = Timelines.from_columns(c, rows, c.request_id[rows])
        if len(tl) == 0:
            continue
        if len(rows) < len(completed):
            sampled.append(f"{r.label}: {len(rows):,} of {len(completed):,} requests")
        ttft = run_wide_ttft(params.get("ttft_deadline_s"))
        on_time, misses, _ = evaluate_many(tl, ttft, grid)
        total = on_time + misses
        mean = [float(np.mean(m[c] / t[c])) if c.any() else float("nan")
                for m, t, c in zip(misses, total, total > 0)]
        chart.series.append(Series(r.label, grid * 1e3, mean, "line", i))
        if target is not None:
            chart.vlines.append({"x": target * 1e3, "label": "target", "group": i})
    if sampled:
        chart.note += ("; drawn from requests spread evenly over the run (" + "; ".join(sampled)
                       + "), the summary's mean miss rate is over all of them")
    return chart


def _deadline_grid(target: float | None, tbt: dict) -> np.ndarray | None:
    """TBT deadlines (s) from a tenth to ten times the target (the target itself included), or
    around the TBT distribution; None without either."""
    if target is not None and target > 0:
        lo, hi = target / 10, target * 10
    elif tbt.get("p50") and tbt.get("max"):
        lo, hi = tbt["p50"] / 2, max(tbt["max"], tbt["p50"]) * 2
    else:
        return None
    grid = np.geomspace(lo, hi, MISS_GRID)
    return np.unique(np.append(grid, target)) if target is not None else grid
