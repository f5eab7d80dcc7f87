"""The server's own metrics: the embedded server's /metrics, the scraper beside a run, the
simulator's same series, and what the summary says of them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from etalon.client.server_metrics import metrics_url, parse
from etalon.engine import Engine, EngineConfig
from etalon.engine.gauges import KV_USAGE, RUNNING, WAITING
from etalon.metrics.server_series import per_time, summarize_series, table
from etalon.perf import ParametricPerfModel
from etalon.simulator import Replica, Simulation, make_router
from etalon.simulator.results import server_series
from etalon.workload.request import Request

PAGE = """# HELP vllm:num_requests_running Running.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# HELP vllm:prefix_cache_queries Queries.
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{model_name="m"} 400.0
# HELP vllm:e2e_request_latency_seconds Latency.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="m"} 4.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 5.0
vllm:e2e_request_latency_seconds_sum{model_name="m"} 3.5
vllm:e2e_request_latency_seconds_count{model_name="m"} 5.0
"""


def test_a_page_parses_to_rows_without_histogram_buckets():
    rows = parse(PAGE, wall=100.0)
    names = [r[1] for r in rows]
    assert names == [RUNNING, RUNNING, "vllm:prefix_cache_queries_total",
                     "vllm:e2e_request_latency_seconds_sum", "vllm:e2e_request_latency_seconds_count"]
    assert json.loads(rows[0][2]) == {"engine": "0", "model_name": "m"} and rows[1][3] == 2.0
    assert metrics_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("http://h:1/v1/") == "http://h:1/metrics"


def test_summary_adds_engines_averages_fractions_and_takes_counter_increases():
    lab = [json.dumps({"engine": e}) for e in "01"]
    rows = []
    for t, (r0, r1, kv0, kv1, q, h) in enumerate([(1, 3, 0.2, 0.4, 10, 2), (2, 4, 0.4, 0.6, 30, 12)]):
        rows += [(10.0 + t, RUNNING, lab[0], r0), (10.0 + t, RUNNING, lab[1], r1),
                 (10.0 + t, KV_USAGE, lab[0], kv0), (10.0 + t, KV_USAGE, lab[1], kv1),
                 (10.0 + t, "vllm:prefix_cache_queries_total", "{}", q),
                 (10.0 + t, "vllm:prefix_cache_hits_total", "{}", h)]
    df = table(rows, start_wall=10.0)
    assert list(per_time(df, RUNNING).index) == [0.0, 1.0]
    s = summarize_series(df)
    assert s["gauges"][RUNNING] == {"mean": 5.0, "max": 6.0, "samples": 2}  # (4 + 6) / 2
    assert s["gauges"][KV_USAGE]["max"] == pytest.approx(0.5)  # the mean of 0.4 and 0.6
    assert s["counters_increase"]["vllm:prefix_cache_queries_total"] == 20
    assert s["prefix_cache_hit_rate"] == pytest.approx(10 / 20)


def _perf(tmp_path, step: float) -> str:
    path = tmp_path / "perf.json"
    path.write_text(json.dumps({"kind": "parametric", "step_overhead": step, "per_prefill_token": 0,
                                "per_attention_pair": 0, "per_decode_seq": 0, "per_context_token": 0}))
    return str(path)


def test_embedded_server_and_simulator_report_the_same_series(tmp_path):
    # 8 requests at once, one at a time (batch 1), each 1 prefill + 4 decode steps of 50 ms:
    # the engine is busy 8 x 0.25 = 2 s with one request running, the other 7 waiting at first.
    # Scraped every 0.1 s, running summed over the scrapes times 0.1 s is that busy time.
    n, step, interval = 8, 0.05, 0.1
    busy = n * 5 * step
    perf = _perf(tmp_path, step)
    out = tmp_path / "live"
    res = subprocess.run(
        [sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-plots", "--no-report",
         "--no-ray", "--server", "local", "--server-args", f"--max-batch-size 1 --perf-model-file {perf}",
         "--request-interval-generator-provider", "static", "--max-num-completed-requests", str(n),
         "--fixed-request-generator-prefill-tokens", "32", "--fixed-request-generator-decode-tokens", "5",
         "--server-metrics-interval", str(interval), "--output-dir", str(out)],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())["server_metrics"]
    assert summary["available"] and summary["scrapes"] >= busy / interval
    live = pd.read_parquet(out / "server_metrics.parquet")
    running = per_time(live, RUNNING)
    assert running.max() == 1 and per_time(live, WAITING).max() >= n - 3
    assert running.sum() * interval == pytest.approx(busy, abs=0.35)
    assert per_time(live, KV_USAGE).iloc[-1] == 0.0  # every request's blocks freed at the end
    # the HTML report draws the scraped series (binned, so its peak is the one-request batch)
    from etalon.report.html import embedded_data, render

    charts = {c["id"]: c for c in embedded_data(render([out]))["charts"]}
    peak = max(v for v in charts["server_num_requests_running"]["series"][0]["y"] if v is not None)
    assert peak == pytest.approx(1.0)

    cfg = EngineConfig(max_batch_size=1, max_batched_tokens=10**6, num_kv_blocks=10**4)
    model = ParametricPerfModel(step_overhead=step, per_prefill_token=0, per_attention_pair=0,
                                per_decode_seq=0, per_context_token=0)
    sim = Simulation([Replica(0, Engine(cfg, model))],
                     router=make_router("round_robin", np.random.default_rng(0)))
    sim_df = server_series(sim.run([Request(i, 0.0, 32, 5) for i in range(n)]), interval)
    assert set(sim_df["name"]) == {RUNNING, WAITING, KV_USAGE}
    assert per_time(sim_df, WAITING).max() == n - 1 and per_time(sim_df, RUNNING).max() == 1
    assert per_time(sim_df, RUNNING).sum() * interval == pytest.approx(busy, abs=0.11)


def test_a_server_without_metrics_costs_one_line_not_the_run(programmed_server, tmp_path):
    out = tmp_path / "plain"
    res = subprocess.run(
        [sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-plots", "--no-report",
         "--no-ray", "--server", programmed_server.base_url, "--model", "m",
         "--max-num-completed-requests", "3", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["num_completed"] == 3
    metrics = summary["server_metrics"]
    assert metrics["available"] is False and "404" in metrics["error"]
    assert not (out / "server_metrics.parquet").exists()


def test_an_idle_engine_reads_as_idle_between_requests():
    # Two requests 10 s apart, each 1 prefill + 4 decode steps of 50 ms alone: the engine runs
    # 2 x 0.25 s of the 10.25 s, one request at a time, and holds no KV block while idle.
    # Time-weighted, the batch is 0.5 / 10.25; a scrape every 0.1 s sees it running ~5 times.
    step, interval = 0.05, 0.1
    cfg = EngineConfig(max_batch_size=4, max_batched_tokens=10**6, num_kv_blocks=10**4)
    model = ParametricPerfModel(step_overhead=step, per_prefill_token=0, per_attention_pair=0,
                                per_decode_seq=0, per_context_token=0)
    sim = Simulation([Replica(0, Engine(cfg, model))],
                     router=make_router("round_robin", np.random.default_rng(0)))
    result = sim.run([Request(0, 0.0, 32, 5), Request(1, 10.0, 32, 5)])
    assert result.end_time == pytest.approx(10.25)
    from etalon.simulator.results import simulation_summary

    rep = simulation_summary(result)["replicas"][0]
    assert rep["mean_batch_size"] == pytest.approx(0.5 / 10.25)
    assert rep["kv_mean_fraction"] * rep["kv_blocks"] < 0.05 * rep["kv_blocks_peak"]
    df = server_series(result, interval)
    running = per_time(df, RUNNING)
    assert running.loc[5.0] == 0 and per_time(df, KV_USAGE).loc[5.0] == 0
    assert running.sum() * interval == pytest.approx(0.5, abs=0.11)
