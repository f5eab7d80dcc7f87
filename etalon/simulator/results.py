"""What a simulation adds to the shared summary: utilization, KV memory, queues, preemptions,
the prefix cache's hits and evictions; its over-time table (``timeline.parquet``: what the HTML
report draws), the engines' state under vLLM's /metrics names, and plots (batch size, queue
length, KV memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etalon.simulator.simulation import SimResult


SAMPLE_COLUMNS = 6  # Replica.samples: t, batch, waiting, kv blocks, prefix queries, prefix hits


def _samples(replica) -> np.ndarray:
    """A replica's step samples as a (steps, SAMPLE_COLUMNS) float array."""
    return np.array(replica.samples, dtype=float).reshape(-1, SAMPLE_COLUMNS)


def _time_weighted_mean(samples: np.ndarray, column: int, end: float) -> float:
    if len(samples) == 0:
        return 0.0
    t = samples[:, 0]
    widths = np.diff(np.append(t, max(end, t[-1])))
    total = widths.sum()
    return float((samples[:, column] * widths).sum() / total) if total > 0 else 0.0


def _device_memory(memory: dict | None, peak_blocks: int, mean_blocks: float) -> dict:
    """Peak and mean per-device memory: weights + activations + overhead + KV in use (GiB)."""
    if not memory:
        return {}
    fixed = memory["weights_bytes"] + memory["activation_bytes"] + memory["overhead_bytes"]
    gib = 1024 ** 3
    return {"device_memory_gib": memory["device_memory_bytes"] / gib,
            "weights_gib": memory["weights_bytes"] / gib,
            "activation_gib": memory["activation_bytes"] / gib,
            "peak_memory_gib": (fixed + peak_blocks * memory["kv_bytes_per_block"]) / gib,
            "mean_memory_gib": (fixed + mean_blocks * memory["kv_bytes_per_block"]) / gib}


def prefix_cache_summary(engines: list) -> dict:
    """Hit rate = prompt tokens found cached / prompt tokens looked up (at admission; a
    preempted request is looked up again), over ``engines`` with prefix caching on."""
    query = sum(e.prefix_query_tokens for e in engines)
    hits = sum(e.prefix_hit_tokens for e in engines)
    return {"hit_rate": hits / query if query else 0.0, "hit_tokens": hits,
            "query_tokens": query, "evicted_blocks": sum(e.pool.evictions for e in engines),
            "cached_blocks_at_end": sum(e.pool.cached for e in engines)}


def simulation_summary(result: SimResult) -> dict:
    replicas = []
    makespan = max(result.end_time, 1e-12)
    for r in result.replicas:
        eng = r.engine
        s = _samples(r)
        replicas.append({
            "replica_id": r.replica_id, "pool": r.pool,
            "utilization": eng.busy_time / makespan,
            "steps": eng.num_steps, "preemptions": eng.num_preemptions,
            "kv_blocks": eng.pool.num_blocks, "kv_block_size": eng.pool.block_size,
            "kv_blocks_peak": eng.pool.peak,
            "kv_peak_fraction": eng.pool.peak / eng.pool.num_blocks,
            "kv_mean_fraction": _time_weighted_mean(s, 3, result.end_time) / eng.pool.num_blocks,
            "mean_batch_size": _time_weighted_mean(s, 1, result.end_time),
            "mean_queue_length": _time_weighted_mean(s, 2, result.end_time),
            "max_queue_length": int(s[:, 2].max()) if len(s) else 0,
            "perf_model": eng.perf.describe(),
            **_device_memory(r.memory, eng.pool.peak, _time_weighted_mean(s, 3, result.end_time)),
        })
        if eng.caching:
            replicas[-1]["prefix_cache"] = prefix_cache_summary([eng])
    out = {"makespan_s": result.end_time, "events": result.events,
           "preemptions": sum(r["preemptions"] for r in replicas),
           "rejected": len(result.rejected), "replicas": replicas}
    caching = [r.engine for r in result.replicas if r.engine.caching]
    if caching:
        out["prefix_cache"] = prefix_cache_summary(caching)
    if result.link is not None:
        out["transfer_link"] = {"bytes_sent": result.link.bytes_sent,
                                "utilization": result.link.busy_time / makespan}
    return out


TIMELINE_FILE = "timeline.parquet"
TIMELINE_COLUMNS = ("replica_id", "pool", "time", "batch_size", "queue_length", "kv_blocks_used",
                    "kv_blocks_total")


def write_timeline(result: SimResult, out_dir: str | Path) -> dict[str, Path]:
    """Writes ``timeline.parquet``: one row each time a replica starts a step or goes idle (its
    batch size, 0 when idle, waiting requests and KV blocks in use from then on), every
    replica's rows in time order."""
    import pandas as pd

    frames = []
    for r in result.replicas:
        s = _samples(r)
        frames.append(pd.DataFrame({
            "replica_id": np.full(len(s), r.replica_id, dtype=np.int64), "pool": r.pool,
            "time": s[:, 0], "batch_size": s[:, 1].astype(np.int64),
            "queue_length": s[:, 2].astype(np.int64), "kv_blocks_used": s[:, 3].astype(np.int64),
            "kv_blocks_total": np.full(len(s), r.engine.pool.num_blocks, dtype=np.int64)}))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=list(TIMELINE_COLUMNS))
    path = Path(out_dir) / TIMELINE_FILE
    tmp = path.with_name(path.name + ".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)
    return {"timeline": path}


def timeline_specs(result: SimResult) -> dict:
    """Plots of batch size, queue length and KV blocks in use over time, one line per
    replica (``etalon.report.figures`` specs, by name)."""
    from etalon.report.figures import steps_spec

    samples = [(f"{r.pool} {r.replica_id}", _samples(r), r.engine.pool.num_blocks)
               for r in result.replicas]
    specs = {}
    for col, name, label in ((1, "batch_size_over_time", "batch size"),
                             (2, "queue_length_over_time", "waiting requests"),
                             (3, "kv_memory_over_time", "KV cache in use (fraction)")):
        lines = [(replica, s[:, 0], s[:, col] / blocks if col == 3 else s[:, col])
                 for replica, s, blocks in samples]
        spec = steps_spec(lines, xlabel="time (s)", ylabel=label, legend=len(lines) <= 8)
        if spec:
            specs[name] = spec
    return specs


SERIES_INTERVAL_S = 1.0  # a scraper's usual period (run_benchmark's --server-metrics-interval)


def server_series(result: SimResult, interval_s: float = SERIES_INTERVAL_S) -> "pd.DataFrame":
    """The engines' state as a scraper would have seen it every ``interval_s``, under vLLM's
    ``/metrics`` names (``engine/gauges.py``), one label set per replica: the batch, the queue
    and KV use of the step in progress (or of the idle engine) at each scrape, and with prefix
    caching the prompt tokens looked up in and found in the cache so far."""
    import json

    import pandas as pd

    from etalon.engine.gauges import KV_USAGE, RUNNING, WAITING
    from etalon.metrics.server_series import COLUMNS, PREFIX_HITS, PREFIX_QUERIES, resample

    grid = np.arange(0.0, result.end_time + interval_s, interval_s)
    frames = []
    for r in result.replicas:
        s = _samples(r)
        labels = json.dumps({"engine": str(r.replica_id), "pool": r.pool}, sort_keys=True)
        blocks = max(r.engine.pool.num_blocks, 1)
        series = [(RUNNING, 1, 1.0), (WAITING, 2, 1.0), (KV_USAGE, 3, 1.0 / blocks)]
        if r.engine.caching:  # counters, named as a scrape of vLLM's text format has them
            series += [(PREFIX_QUERIES, 4, 1.0), (PREFIX_HITS, 5, 1.0)]
        for name, col, scale in series:
            values = resample(s[:, 0], s[:, col] * scale, grid) if len(s) else np.zeros(len(grid))
            frames.append(pd.DataFrame({"time_s": grid, "name": name, "labels": labels,
                                        "value": values}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
