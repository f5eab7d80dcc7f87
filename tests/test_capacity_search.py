"""Capacity search against queueing theory (simulated) and a live embedded server."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml

from etalon.capacity_search import Probe, SearchSettings, search_capacity


def test_bisection_brackets_a_known_threshold():
    seen = []

    def probe(qps: float) -> Probe:
        seen.append(qps)
        return Probe(qps, qps <= 13.7, {"reasons": []})

    res = search_capacity(probe, SearchSettings(start_qps=1, max_qps=1000, tolerance=0.01))
    good, bad = res.bracket
    assert good <= 13.7 < bad and (bad - good) / bad <= 0.01
    assert seen[:5] == [1, 2, 4, 8, 16]  # doubles until the first failure, then bisects


def test_simulated_capacity_matches_mm1_sojourn_percentile(tmp_path):
    # One server, batch 1, service 1e-4 s per prompt token with exponential prompts of mean
    # 1000 tokens: M/M/1 with mu = 10/s. Its sojourn time (here TTFT) is exponential with rate
    # mu - lambda, so p90 TTFT <= 0.5 s holds up to lambda* = mu - ln(10) / 0.5 = 5.395 req/s.
    rng = np.random.default_rng(3)
    prompts = np.maximum(1, np.rint(rng.exponential(1000, 6000))).astype(int)
    trace = tmp_path / "exp.csv"
    trace.write_text("num_prefill_tokens,num_decode_tokens\n" + "".join(f"{p},1\n" for p in prompts))
    perf = tmp_path / "perf.json"
    perf.write_text(json.dumps({"kind": "parametric", "step_overhead": 0, "per_prefill_token": 1e-4,
                                "per_attention_pair": 0, "per_decode_seq": 0, "per_context_token": 0}))
    job = {"slo": {"ttft_percentile": 90, "ttft_max_s": 0.5},
           "search": {"start_qps": 1, "max_qps": 10, "tolerance": 0.02},
           "num_requests": 6000,
           "deployments": [{"name": "mm1", "simulate": {
               "perf_model_file": str(perf), "max_batch_size": 1, "max_batched_tokens": 100000,
               "num_kv_blocks": 100000, "warm_up": 50,
               "workload": {"request_length_generator_provider": "trace",
                            "trace_request_length_generator_trace_file": str(trace),
                            "request_generator_max_tokens": 100000, "seed": 5}}}]}
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(job))
    res = subprocess.run([sys.executable, "-m", "etalon.capacity_search", "--config", str(cfg),
                          "--output-dir", str(tmp_path / "out"), "--no-ray"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "out" / "capacity.json").read_text())
    capacity = report["configurations"]["mm1"]["capacity_qps"]
    assert capacity == pytest.approx(10 - math.log(10) / 0.5, rel=0.08)
    assert (tmp_path / "out" / "capacity.png").is_file()


@pytest.mark.slow
def test_live_capacity_search_on_embedded_server(tmp_path):
    job = {"slo": {"ttft_percentile": 90, "ttft_max_s": 0.15},
           "search": {"start_qps": 4, "max_qps": 64, "tolerance": 0.25, "max_probes": 3},
           "num_requests": 40,
           "deployments": [{"name": "embedded", "benchmark_args": [
               "--server", "local", "--no-ray", "--num-ray-clients", "1",
               "--num-concurrent-requests-per-client", "128",
               "--fixed-request-generator-prefill-tokens", "512",
               "--fixed-request-generator-decode-tokens", "16"]}]}
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(job))
    res = subprocess.run([sys.executable, "-m", "etalon.capacity_search", "--config", str(cfg),
                          "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    dep = json.loads((tmp_path / "out" / "capacity.json").read_text())["configurations"]["embedded"]
    probes = dep["search"]["probes"]
    assert probes[0]["qps"] == 4 and probes[0]["passed"]  # ~6 req/s load on a ~40 req/s engine
    # Monotone verdicts: no rate passes above one that failed.
    failed = [p["qps"] for p in probes if not p["passed"]]
    assert all(p["qps"] < min(failed) for p in probes if p["passed"]) if failed else True
    assert dep["capacity_qps"] >= 4


def test_job_file_errors_are_one_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("slo: {ttft_max_s: 1}\ndeployments: [{name: a, launch: embedded, url: 'http://x:1', model: m}]\n")
    res = subprocess.run([sys.executable, "-m", "etalon.capacity_search", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "exactly one of" in res.stderr and "Traceback" not in res.stderr
