"""run_benchmark against live vLLM on CPU serving a real model, with its real tokenizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from etalon.records import load_records

pytestmark = pytest.mark.real_engine


def bench(server, out: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    res = subprocess.run([sys.executable, "-m", "etalon.run_benchmark", "--no-progress",
                          "--server", server.base_url, "--model", server.model_name,
                          "--tokenizer", str(server.tokenizer_path), "--output-dir", str(out), *args],
                         capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def test_prompt_and_output_lengths_match_and_ttft_grows(vllm_server, tmp_path):
    lengths = [64, 256, 512, 1024]
    trace = tmp_path / "isolated.csv"
    trace.write_text("arrival_time,num_prefill_tokens,num_decode_tokens\n" +
                     "".join(f"{i * 4.0},{n},8\n" for i, n in enumerate(lengths)))
    out = tmp_path / "lengths"
    bench(vllm_server, out, "--no-ray", "--num-ray-clients", "1",
          "--max-num-completed-requests", str(len(lengths)),
          "--request-interval-generator-provider", "trace",
          "--trace-request-interval-generator-trace-file", str(trace),
          "--request-length-generator-provider", "trace",
          "--trace-request-length-generator-trace-file", str(trace), "--no-plots")
    recs = load_records(out / "requests.jsonl")
    assert [r.error_type for r in recs] == [None] * len(lengths)
    for r, n in zip(recs, lengths):
        assert r.prompt_tokens_source == "usage"
        assert abs(r.num_prompt_tokens - n) <= 0.02 * n, (n, r.num_prompt_tokens)
        assert r.num_output_tokens == 8
    ttft = [r.ttft for r in recs]
    assert all(a < b for a, b in zip(ttft, ttft[1:])), ttft


def test_poisson_runs_at_three_rates(vllm_server, tmp_path):
    summaries = []
    for i, qps in enumerate((0.5, 1.0, 2.0)):
        out = tmp_path / f"qps{qps}"
        extra = (["--num-ray-clients", "2", "--should-write-metrics", "--wandb-project", "etalon-real",
                  "--wandb-run-name", f"qps{qps}"] if i == 0 else ["--no-ray", "--no-plots"])
        bench(vllm_server, out, "--max-num-completed-requests", "8",
              "--poisson-request-interval-generator-qps", str(qps),
              "--fixed-request-generator-prefill-tokens", "64",
              "--fixed-request-generator-decode-tokens", "8",
              "--ttft-deadline", "2", "--tbt-deadline", "0.5", *extra, cwd=tmp_path)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["counts"]["num_completed"] == 8 and summary["counts"]["num_errors"] == 0
        summaries.append(summary)
    first = tmp_path / "qps0.5"
    assert list((first / "plots").glob("*.png"))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb"))
    # a higher offered rate cannot lower the measured request throughput at these light loads
    rates = [s["throughput"]["requests_per_s"] for s in summaries]
    assert rates[0] < rates[2], rates
