"""A few thousand points whatever the run's size: CDFs through quantiles, scatters thinned
evenly, time series binned. Shared by the PNG plots and the HTML report, so a 1M-request run
draws as fast (and its report is as small) as a 1k one."""

from __future__ import annotations

import numpy as np

from etalon.metrics.distribution import PERCENTILES, linear_quantiles

MAX_POINTS = 2000  # per curve or scatter


def thin(index: np.ndarray, limit: int = MAX_POINTS) -> np.ndarray:
    """At most ``limit`` of ``index``, evenly spaced (deterministic)."""
    if len(index) <= limit:
        return index
    return index[np.linspace(0, len(index) - 1, limit).astype(np.int64)]


def cdf_points(values: np.ndarray, limit: int = MAX_POINTS, *,
               presorted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(x, fraction of samples <= x)`` of the finite ``values``: every sample when there are
    at most ``limit``, else the curve through ``limit`` quantiles (the last ones denser toward
    the tail, where p99 and p99.9 live; the summary's percentiles among them). Empty input
    gives two empty arrays. ``presorted``: ``values`` are finite and ascending already (a
    series' ``sorted_values``), so they are not copied and sorted again."""
    v = np.asarray(values, dtype=float)
    if not presorted:
        finite = np.isfinite(v)
        v = np.sort(v if finite.all() else v[finite])
    if v.size <= limit:
        return v, np.arange(1, v.size + 1) / max(v.size, 1)
    body = np.linspace(0.0, 0.99, limit - limit // 5 - len(PERCENTILES))
    tail = 1.0 - np.geomspace(1e-2, 1.0 / v.size, limit // 5)
    marks = [p / 100 for _, p in PERCENTILES]  # the summary's percentiles lie on the curve
    q = np.unique(np.concatenate([body, tail, marks, [1.0]]))
    return sorted_quantiles(v, q), q


def sorted_quantiles(v: np.ndarray, q: np.ndarray | float) -> np.ndarray:
    """numpy's "linear" quantiles ``q`` (0..1) of ascending ``v``, read off without a copy."""
    return linear_quantiles(v.__getitem__, v.size, q)


def bin_edges(start: float, end: float, bins: int) -> np.ndarray:
    """``bins + 1`` equal bins over [start, end] (one bin of width 1 when the span is empty)."""
    if not end > start:
        end = start + 1.0
    return np.linspace(start, end, bins + 1)


def rate_per_bin(times: np.ndarray, weights: np.ndarray | None, edges: np.ndarray) -> np.ndarray:
    """Events (or the sum of their ``weights``) per second in each bin."""
    width = np.diff(edges)
    if len(edges) > 1 and np.allclose(width, width[0], rtol=1e-9, atol=0):
        # equal bins (``bin_edges``): numpy's one-pass path over the same linspace edges,
        # where an array of edges sorts the 44 M token times of a 100k run (1.4 s)
        counts, _ = np.histogram(times, bins=len(edges) - 1, range=(edges[0], edges[-1]),
                                 weights=weights)
    else:
        counts, _ = np.histogram(times, bins=edges, weights=weights)
    return counts / width


def step_mean_per_bin(t: np.ndarray, v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Time-weighted mean in each bin of a step function that takes value ``v[i]`` from
    ``t[i]`` (sorted) until the next sample (the last one holds to the end); 0 before the
    first sample."""
    t = np.asarray(t, dtype=float)
    v = np.asarray(v, dtype=float)
    if t.size == 0:
        return np.zeros(len(edges) - 1)
    integral = np.concatenate([[0.0], np.cumsum(v[:-1] * np.diff(t))])  # ∫ from t[0] to t[i]
    k = np.searchsorted(t, edges, side="right") - 1  # last sample at or before each edge
    at = np.where(k >= 0, integral[np.maximum(k, 0)] + v[np.maximum(k, 0)]
                  * (edges - t[np.maximum(k, 0)]), 0.0)
    return np.diff(at) / np.diff(edges)


def level_at(starts: np.ndarray, ends: np.ndarray, at: np.ndarray) -> np.ndarray:
    """How many intervals ``[start, end)`` cover each time of ``at`` (an ``end`` of NaN never
    ends): e.g. requests in flight from their sends and completions."""
    s = np.sort(starts[np.isfinite(starts)])
    e = np.sort(np.where(np.isnan(ends), np.inf, ends)[np.isfinite(starts)])
    return np.searchsorted(s, at, side="right") - np.searchsorted(e, at, side="right")
