"""One engine, two clocks: the embedded server and the simulator agree on the same workload."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from etalon.metrics.latency import latency_series
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
    sim_s = latency_series(load_records(sim / "requests.jsonl"))
    checks = [("ttft_from_schedule", 50), ("ttft_from_schedule", 90), ("tbt", 50), ("tbt", "mean")]
    for metric, q in checks:
        a, b = live_s[metric].values, sim_s[metric].values
        lv, sv = (a.mean(), b.mean()) if q == "mean" else (np.percentile(a, q), np.percentile(b, q))
        # The server adds HTTP, event-loop and sleep jitter; on this 2-core machine the client
        # and the server share the CPU, which shifts arrivals across step boundaries (TTFT p50 seen 5-17 % high live). Per-token
        # jitter cancels in the mean TBT but not in its tail, so TBT p90 is not compared (it
        # runs ~40 % high live: the client timestamps 16 streams one after another).
        assert lv == pytest.approx(sv, rel=0.2, abs=0.002), (metric, q, lv, sv)
