"""One engine, two clocks: the embedded server and the simulator agree on the same workload."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from etalon.metrics.latency import latency_series
from etalon.record_table import read_table
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
    checks = [("ttft_from_schedule", 50, 0.12), ("ttft_from_schedule", 90, 0.15),
              ("tbt", 50, 0.12), ("tbt", "mean", 0.03)]
    for metric, q, tol in checks:
        a, b = live_s[metric].values, sim_s[metric].values
        lv, sv = (a.mean(), b.mean()) if q == "mean" else (np.percentile(a, q), np.percentile(b, q))
        assert lv == pytest.approx(sv, rel=tol), (metric, q, lv, sv)
