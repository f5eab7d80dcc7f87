"""The server's own metrics over a run, as one long table, and what the summary says of them.

A live run scrapes them (``client/server_metrics.py``); a simulation writes the same series under
the same vLLM names from its engines (``simulator/results.py``). Either way the table is
``server_metrics.parquet`` with one row per sample: ``time_s`` (from the run start), ``name``,
``labels`` (JSON) and ``value``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SERIES_FILE = "server_metrics.parquet"
COLUMNS = ("time_s", "name", "labels", "value")
#: series whose label sets (engines, replicas) average rather than add up
MEAN_ACROSS = ("_perc",)
PREFIX_QUERIES, PREFIX_HITS = "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"


def table(rows: list[tuple[float, str, str, float]], start_wall: float = 0.0) -> pd.DataFrame:
    """Rows of (time, name, labels, value) as the table; times made relative to ``start_wall``."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["time_s"] = df["time_s"].astype(float) - start_wall
    df["value"] = df["value"].astype(float)
    return df


def write(df: pd.DataFrame, out_dir: str | Path) -> Path:
    path = Path(out_dir) / SERIES_FILE
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def read(out_dir: str | Path) -> pd.DataFrame | None:
    path = Path(out_dir) / SERIES_FILE
    return pd.read_parquet(path) if path.exists() else None


def per_time(df: pd.DataFrame, name: str) -> pd.Series:
    """One series over time: its label sets added up (averaged for a fraction like KV use)."""
    rows = df[df["name"] == name]
    how = "mean" if name.endswith(MEAN_ACROSS) else "sum"
    return rows.groupby("time_s")["value"].agg(how).sort_index()


def summarize_series(df: pd.DataFrame) -> dict:
    """Per series: gauges' mean and max over the samples, counters' increase over the run, and
    the prefix-cache hit rate (hits / queries, both increases) when the server counts them."""
    gauges, counters = {}, {}
    for name in sorted(df["name"].unique()):
        s = per_time(df, name)
        if name.endswith("_total"):
            counters[name] = float(s.iloc[-1] - s.iloc[0]) if len(s) else None
        elif name.endswith(("_sum", "_count")):
            continue  # a histogram's running totals: the increase says little without buckets
        else:
            gauges[name] = {"mean": float(s.mean()), "max": float(s.max()),
                            "samples": int(len(s))}
    out = {"gauges": gauges, "counters_increase": counters}
    queries, hits = counters.get(PREFIX_QUERIES), counters.get(PREFIX_HITS)
    out["prefix_cache_hit_rate"] = hits / queries if queries and hits is not None else None
    return out


def resample(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The value each step function (``values`` from ``times`` on) has at each grid time; 0
    before the first."""
    idx = np.searchsorted(times, grid, side="right") - 1
    return np.where(idx >= 0, values[np.maximum(idx, 0)], 0.0)
