"""The engine's state under the names vLLM's Prometheus ``/metrics`` uses, so a live vLLM, the
embedded server and the simulator report their internals as one set of series.

The embedded server serves these on ``/metrics``; the simulator writes the same series from its
step samples; a benchmark scrapes whatever server it measures (``client/server_metrics.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etalon.engine.engine import Engine

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = "vllm:kv_cache_usage_perc"  # the fraction of KV blocks in use, 0-1 (vLLM v1's name)
PREEMPTIONS = "vllm:num_preemptions"  # a counter: "_total" in the text format
PREFIX_QUERIES = "vllm:prefix_cache_queries"  # counters of prompt tokens looked up ...
PREFIX_HITS = "vllm:prefix_cache_hits"  # ... and found in the prefix cache (vLLM v1's meaning)

#: (name, Prometheus type, help) of every series the engine reports
SERIES: tuple[tuple[str, str, str], ...] = (
    (RUNNING, "gauge", "Requests in the running batch."),
    (WAITING, "gauge", "Requests waiting to be scheduled."),
    (KV_USAGE, "gauge", "Fraction of KV-cache blocks in use (1 = full)."),
    (PREEMPTIONS, "counter", "Preemptions since the engine started."),
    (PREFIX_QUERIES, "counter", "Prompt tokens looked up in the prefix cache."),
    (PREFIX_HITS, "counter", "Prompt tokens found in the prefix cache."),
)


def engine_gauges(engine: Engine) -> dict[str, float]:
    """The engine's series now: the running batch, the queue, KV use, and counts so far of
    preemptions and of prompt tokens looked up in and found in the prefix cache."""
    pool = engine.pool
    return {RUNNING: float(len(engine.running)), WAITING: float(len(engine.waiting)),
            KV_USAGE: pool.used / pool.num_blocks if pool.num_blocks else 0.0,
            PREEMPTIONS: float(engine.num_preemptions),
            PREFIX_QUERIES: float(engine.prefix_query_tokens),
            PREFIX_HITS: float(engine.prefix_hit_tokens)}


def prometheus_text(values: dict[str, float], labels: dict[str, str]) -> bytes:
    """``values`` in the Prometheus text format (through prometheus_client's own writer)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class _Now:
        def collect(self):
            for name, kind, doc in SERIES:
                if name not in values:
                    continue
                family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                    name, doc, labels=list(labels))
                family.add_metric(list(labels.values()), values[name])
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Now())
    return generate_latest(registry)
