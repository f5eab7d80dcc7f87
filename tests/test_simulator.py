"""The simulator against queueing theory, hand-worked cases and its own invariants."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from etalon.engine import Engine, EngineConfig
from etalon.perf import ParametricPerfModel
from etalon.simulator import Link, Replica, Simulation, make_router
from etalon.workload.request import Request

ZERO = dict(step_overhead=0.0, per_prefill_token=0.0, per_attention_pair=0.0,
            per_decode_seq=0.0, per_context_token=0.0)


def single_server(model, **engine) -> Simulation:
    cfg = EngineConfig(max_batch_size=1, max_batched_tokens=10**7, num_kv_blocks=10**6, **engine)
    return Simulation([Replica(0, Engine(cfg, model))],
                      router=make_router("round_robin", np.random.default_rng(0)))


def poisson(n: int, lam: float, seed: int) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).exponential(1 / lam, n))


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_wait(rho):
    # Batch size 1, each request one 0.1 s prefill step (mu = 10/s): an M/D/1 queue with
    # mean wait rho / (2 mu (1 - rho)) (Pollaczek–Khinchine).
    mu, n = 10.0, 150_000
    arrivals = poisson(n, rho * mu, seed=11)
    sim = single_server(ParametricPerfModel(**{**ZERO, "step_overhead": 0.1}))
    res = sim.run([Request(i, float(a), 1, 1) for i, a in enumerate(arrivals)])
    wait = np.mean([r.chunk_times[0] - r.scheduled_at - 0.1 for r in res.records])
    assert wait == pytest.approx(rho / (2 * mu * (1 - rho)), rel=0.05)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mm1_mean_wait(rho):
    # Service time 1e-4 s per prompt token with exponentially distributed prompts of mean 1000
    # tokens: exponential service of mean 0.1 s, so M/M/1 with mean wait rho / (mu - lambda).
    mu, n = 10.0, 150_000
    arrivals = poisson(n, rho * mu, seed=12)
    prompts = np.maximum(1, np.rint(np.random.default_rng(13).exponential(1000, n))).astype(int)
    sim = single_server(ParametricPerfModel(**{**ZERO, "per_prefill_token": 1e-4}))
    res = sim.run([Request(i, float(a), int(p), 1) for i, (a, p) in enumerate(zip(arrivals, prompts))])
    wait = np.mean([r.chunk_times[0] - r.scheduled_at - r.num_prompt_tokens * 1e-4 for r in res.records])
    assert wait == pytest.approx(rho / (mu - rho * mu), rel=0.05)


def test_two_requests_exact_timestamps_with_arrival_mid_decode():
    # A arrives at 0: prefill 100 tokens (0.01 + 0.1 = 0.11), then decode steps of 0.01 s.
    # B arrives at 0.135, during A's 3rd decode step (0.13-0.14); vLLM's policy prefills B next
    # (0.14 -> 0.14 + 0.01 + 0.05 = 0.20), then both decode together.
    model = ParametricPerfModel(**{**ZERO, "step_overhead": 0.01, "per_prefill_token": 1e-3})
    sim = Simulation([Replica(0, Engine(EngineConfig(), model))],
                     router=make_router("round_robin", np.random.default_rng(0)))
    res = sim.run([Request(0, 0.0, 100, 6), Request(1, 0.135, 50, 2)])
    a, b = res.records
    np.testing.assert_allclose(a.chunk_times, [0.11, 0.12, 0.13, 0.14, 0.21, 0.22])
    np.testing.assert_allclose(b.chunk_times, [0.20, 0.21])


def test_disaggregated_ttft_includes_kv_transfer():
    # Prefill of 1000 tokens takes 0.01 + 1.0 s; its KV (1000 tokens x 131072 B) crosses a
    # 10 GB/s link with 2 ms latency: 0.0131072 + 0.002 s. The first token reaches the user then.
    model = ParametricPerfModel(**{**ZERO, "step_overhead": 0.01, "per_prefill_token": 1e-3})
    pre = [Replica(0, Engine(EngineConfig(), model), pool="prefill")]
    dec = [Replica(1, Engine(EngineConfig(), model), pool="decode")]
    sim = Simulation(router=make_router("round_robin", np.random.default_rng(0)), prefill=pre,
                     decode=dec, link=Link(10e9, 0.002), kv_bytes_per_token=131072)
    rec = sim.run([Request(0, 0.0, 1000, 3)]).records[0]
    first = 1.01 + 1000 * 131072 / 10e9 + 0.002
    np.testing.assert_allclose(rec.chunk_times, [first, first + 0.01, first + 0.02])


def test_invariants_conservation_causality_determinism():
    rng = np.random.default_rng(5)
    reqs = [Request(i, float(t), int(p), int(o)) for i, (t, p, o) in enumerate(
        zip(np.cumsum(rng.exponential(0.02, 400)), rng.integers(20, 2000, 400), rng.integers(1, 300, 400)))]

    def run():
        reps = [Replica(i, Engine(EngineConfig(scheduler="sarathi", max_batched_tokens=512,
                                               num_kv_blocks=600), ParametricPerfModel()))
                for i in range(2)]
        return Simulation(reps, router=make_router("least_outstanding", np.random.default_rng(0))).run(reqs)

    first, second = run(), run()
    assert [r.to_json() for r in first.records] == [r.to_json() for r in second.records]
    assert sorted(r.request_id for r in first.records) == list(range(400))
    for r, q in zip(first.records, reqs):
        t = np.array(r.chunk_times)
        assert len(t) == q.output_tokens and t[0] > q.arrival_time and np.all(np.diff(t) >= 0)
        assert r.completed_at == pytest.approx(t[-1])
    assert any(rep.engine.num_preemptions for rep in first.replicas)  # the KV budget bit


def test_simulate_cli_writes_live_run_files(tmp_path):
    out = tmp_path / "sim"
    res = subprocess.run([sys.executable, "-m", "etalon.simulate", "--max-num-completed-requests", "200",
                          "--poisson-request-interval-generator-qps", "20", "--scheduler", "sarathi",
                          "--num-replicas", "2", "--router", "least_outstanding",
                          "--output-dir", str(out), "--ttft-deadline", "0.5", "--tbt-deadline", "0.05"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["num_completed"] == 200
    assert len(summary["simulation"]["replicas"]) == 2
    assert (out / "plots" / "kv_memory_over_time.png").is_file()
    # the simulator writes the columns directly: one row per request, every chunk in tokens
    assert not (out / "requests.jsonl").exists()
    requests, tokens = (pd.read_parquet(out / name) for name in ("requests.parquet", "tokens.parquet"))
    assert len(requests) == 200 and requests["request_id"].is_unique
    assert len(tokens) == requests["num_chunks"].sum() and set(tokens["request_id"]) == set(requests["request_id"])


def test_simulate_config_rejects_unknown_keys(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("num_replicas: 2\nnum_replica: 3\n")
    res = subprocess.run([sys.executable, "-m", "etalon.simulate", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "num_replica" in res.stderr and "Traceback" not in res.stderr


def test_pipeline_parallel_virtual_engines_and_device_memory(tmp_path):
    from etalon.estimator.memory import kv_bytes_per_token
    from etalon.estimator.models import load_model
    from etalon.simulate import simulate
    from etalon.simulator.config import SimConfig
    from etalon.workload.config import WorkloadConfig

    wl = WorkloadConfig.of(max_num_completed_requests=100, poisson_request_interval_generator_qps=20)
    base = dict(model="llama-3.1-8b", hardware="h100-sxm", workload=wl, no_plots=True)
    one = simulate(SimConfig.of(**base, output_dir=str(tmp_path / "pp1")).validate(), quiet=True)
    two = simulate(SimConfig.of(**base, pp=2, output_dir=str(tmp_path / "pp2")).validate(), quiet=True)
    r1, r2 = one["simulation"]["replicas"], two["simulation"]["replicas"]
    assert len(r1) == 1 and len(r2) == 2  # pp=2: two virtual engines, one micro-batch each
    # the per-device KV pool of a 2-stage layout is split between the two virtual engines
    from etalon.estimator.memory import kv_cache_capacity

    assert r2[0]["kv_blocks"] == kv_cache_capacity("llama-3.1-8b", "h100-sxm", pp=2).num_blocks // 2
    assert r1[0]["kv_blocks"] == kv_cache_capacity("llama-3.1-8b", "h100-sxm").num_blocks
    # peak device memory = weights + activations + overhead + peak KV blocks x bytes per block
    per_block = kv_bytes_per_token(load_model("llama-3.1-8b")) * 16 / 1024 ** 3
    rep = r1[0]
    fixed = rep["peak_memory_gib"] - rep["kv_blocks_peak"] * per_block
    assert fixed == pytest.approx(rep["mean_memory_gib"] - rep["kv_mean_fraction"] * rep["kv_blocks"] * per_block)
    assert rep["weights_gib"] == pytest.approx(8.03e9 * 2 / 1024 ** 3, rel=0.08)
