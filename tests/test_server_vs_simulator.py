"""One engine, two clocks: the embedded server and the simulator agree on the same workload."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from etalon.metrics.latency import latency_series
from etalon.record_table import read_records, read_table
from etalon.records import load_records

ENGINE = ["--scheduler", "sarathi", "--max-batched-tokens", "512", "--max-batch-size", "16"]


def test_server_and_simulator_agree(tmp_path):
    live = tmp_path / "live"
    res = subprocess.run(
        [sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-ray", "--server", "local",
         "--server-args", " ".join(ENGINE), "--num-ray-clients", "1",
         "--num-concurrent-requests-per-client", "64", "--max-num-completed-requests", "80",
         "--poisson-request-interval-generator-qps", "6",
         "--request-length-generator-provider", "uniform",
         "--uniform-request-length-generator-min-tokens", "200",
         "--uniform-request-length-generator-max-tokens", "900",
         "--uniform-request-length-generator-prefill-to-decode-ratio", "6",
         "--output-dir", str(live), "--no-plots"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    sim = tmp_path / "sim"
    res = subprocess.run([sys.executable, "-m", "etalon.simulate", "--replay", str(live / "requests.jsonl"),
                          *ENGINE, "--output-dir", str(sim), "--no-plots"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    live_s = latency_series(load_records(live / "requests.jsonl"))
    sim_s = latency_series(read_table(sim))
    # (metric, percentile, tolerance). The server adds the HTTP request path to every TTFT
    # (~2-3 ms here: +6-10 % on ~40 ms) and client-side read jitter to each gap, which moves the
    # TBT median (+6 %) but cancels in the mean (the steps run back to back on the model's
    # timeline; measured within 0.2 %). TBT p90 is not compared: the client timestamps up to
    # 16 streams one after another, which widens the tail.
    # A stall of the shared 2 cores only ever adds to live times (one run: TTFT p50 +6.4 ms on
    # 38 ms; a CI run: TBT mean +3.5 % on 7.1 ms), so each may also run a little over its
    # bound (4 ms on a TTFT, 0.25 ms on the mean gap); below it stays as tight.
    checks = [("ttft_from_schedule", 50, 0.12, 0.004), ("ttft_from_schedule", 90, 0.15, 0.004),
              ("tbt", 50, 0.12, 0.0), ("tbt", "mean", 0.03, 0.00025)]
    for metric, q, tol, stall in checks:
        a, b = live_s[metric].values, sim_s[metric].values
        lv, sv = (a.mean(), b.mean()) if q == "mean" else (np.percentile(a, q), np.percentile(b, q))
        assert sv * (1 - tol) <= lv <= sv * (1 + tol) + stall, (metric, q, lv, sv)


def _simulate(out, *args: str) -> dict:
    res = subprocess.run([sys.executable, "-m", "etalon.simulate", *args, "--output-dir", str(out),
                          "--no-plots"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads((out / "summary.json").read_text())


def test_server_and_simulator_agree_on_a_shared_prefix_workload(tmp_path):
    # 4 system prompts of 512 tokens (32 blocks), zipf-popular, before uniform own parts: both
    # sides cache the prefixes (the server hashes the prompt text's tokens, the simulator the
    # requests' prefix groups), so their TTFTs agree; without caching the simulator's differ.
    engine = [*ENGINE, "--enable-prefix-caching"]
    workload = ["--max-num-completed-requests", "80", "--poisson-request-interval-generator-qps", "6",
                "--request-length-generator-provider", "uniform",
                "--uniform-request-length-generator-min-tokens", "100",
                "--uniform-request-length-generator-max-tokens", "500",
                "--uniform-request-length-generator-prefill-to-decode-ratio", "6",
                "--request-prefix-generator-provider", "shared",
                "--shared-request-prefix-generator-groups", "4",
                "--shared-request-prefix-generator-prefix-tokens", "512",
                "--shared-request-prefix-generator-popularity", "zipf"]
    live = tmp_path / "live"
    res = subprocess.run(
        [sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-ray", "--server", "local",
         "--server-args", " ".join(engine), "--num-ray-clients", "1",
         "--num-concurrent-requests-per-client", "64", *workload,
         "--output-dir", str(live), "--no-plots"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = _simulate(tmp_path / "sim", *engine, *workload)
    _simulate(tmp_path / "nocache", *ENGINE, *workload)
    live_records = load_records(live / "requests.jsonl")
    assert all(r.ok for r in live_records) and len(live_records) == 80
    # the live prompts were exactly as long as the simulated requests
    sim_table = read_table(tmp_path / "sim")
    assert sorted(r.num_prompt_tokens for r in live_records) == sorted(
        r.num_prompt_tokens for r in read_records(tmp_path / "sim"))
    cache = summary["simulation"]["prefix_cache"]
    # every request but the first of each of the 4 groups finds its group's 512 tokens cached
    assert cache["hit_tokens"] == 512 * (80 - 4) and cache["evicted_blocks"] == 0
    # Request by request, the live TTFT is the cached simulation's plus the server's request
    # path (HTTP, tokenizing and hashing the prompt: 3-6 ms on two shared cores, which the
    # default perf model does not charge), and far from the uncached simulation's.
    ttft = {name: {r.request_id: r.chunk_times[0] - r.scheduled_at for r in records}
            for name, records in (("live", live_records), ("sim", read_records(tmp_path / "sim")),
                                  ("off", read_records(tmp_path / "nocache")))}
    path = np.array([ttft["live"][i] - ttft["sim"][i] for i in ttft["live"]])
    assert 0.0 < np.median(path) < 0.008, np.percentile(path, [10, 50, 90])
    closer = [abs(ttft["live"][i] - ttft["sim"][i]) < abs(ttft["live"][i] - ttft["off"][i])
              for i in ttft["live"]]
    assert np.mean(closer) >= 0.9
    # Distributions: TTFT p50 within the request path's 8 ms (TTFTs here are ~21 ms, so the
    # path alone is +15-30 %). The uncached simulation's p50 is ~62 ms, far outside. TBT mean
    # within 5 % (+1.5 % on a quiet machine, +3.3 % at a load average of 3; the uncached one is
    # ~33 % off), and, as in the test above, a stall of the shared cores only ever adds to the
    # live gaps, so the live mean may run up to 0.5 ms over (+8.2 % on 6.3 ms in a CI run amid
    # the whole suite), never under.
    # TTFT p90 nearer the cached simulation's than the uncached one's: the path's own tail
    # reached +8 ms in one of three runs and +19 ms (live 51.8 ms, cached 32.7 ms) in a CI run
    # amid the whole suite, so a bound on it measures the machine, not the cache.
    live_s, sim_s = latency_series(live_records), latency_series(sim_table)
    off_s = latency_series(read_table(tmp_path / "nocache"))
    lv, sv = (np.percentile(s["ttft_from_schedule"].values, 50) for s in (live_s, sim_s))
    assert lv == pytest.approx(sv, abs=0.008), ("ttft_from_schedule p50", lv, sv)
    lv, sv, ov = (s["tbt"].values.mean() for s in (live_s, sim_s, off_s))
    assert sv * 0.95 <= lv <= sv * 1.05 + 0.0005, ("tbt mean", lv, sv)
    assert abs(ov - sv) > 0.15 * sv, ("uncached tbt mean", ov, sv)  # the bound tells them apart
    lv, sv, ov = (np.percentile(s["ttft_from_schedule"].values, 90) for s in (live_s, sim_s, off_s))
    assert abs(lv - sv) < abs(lv - ov), ("ttft_from_schedule p90", lv, sv, ov)
    off = np.percentile(off_s["ttft_from_schedule"].values, 50)
    live_p50 = np.percentile(live_s["ttft_from_schedule"].values, 50)
    assert off > live_p50 * 2, (off, live_p50)
    # The live records keep each request's group, so a replay of them shares what the server
    # could cache: the same 76 hits of 512 tokens, and the server's own hit rate (its /metrics
    # counters, scraped during the run) within a point of the replay's.
    assert {r.prefix_tokens for r in live_records} == {512}
    assert len({r.prefix_group for r in live_records}) == 4
    replay = _simulate(tmp_path / "replay", "--replay", str(live / "requests.jsonl"), *engine)
    assert replay["simulation"]["prefix_cache"]["hit_tokens"] == 512 * (80 - 4)
    live_rate = json.loads((live / "summary.json").read_text())["server_metrics"]["prefix_cache_hit_rate"]
    assert replay["server_metrics"]["prefix_cache_hit_rate"] == pytest.approx(live_rate, abs=0.01)
