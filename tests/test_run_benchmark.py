"""End to end: run_benchmark against the embedded server, its outputs, W&B offline, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from etalon.perf import ParametricPerfModel, StepBatch
from etalon.records import load_records
from etalon.server.process import LocalServer


@pytest.fixture(scope="module")
def embedded():
    with LocalServer(["--scheduler", "vllm"]) as srv:
        yield srv


def bench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etalon.run_benchmark", "--no-progress", *args],
                          capture_output=True, text=True, timeout=240, cwd=cwd)


def _isolated_run(server: str, tmp: Path, prompt: int, n: int = 6) -> list:
    """``n`` requests of ``prompt`` tokens, 0.4 s apart: each runs alone on the engine."""
    out = tmp / f"run{prompt}"
    res = bench("--server", server, "--model", "etalon-embedded", "--no-ray",
                "--num-ray-clients", "1", "--max-num-completed-requests", str(n),
                "--request-interval-generator-provider", "trace",
                "--trace-request-interval-generator-trace-file",
                str(_uniform_trace(tmp, n, 0.4, prompt)),
                "--fixed-request-generator-prefill-tokens", str(prompt),
                "--fixed-request-generator-decode-tokens", "20", "--output-dir", str(out), "--no-plots")
    assert res.returncode == 0, res.stderr
    recs = load_records(out / "requests.jsonl")
    assert len(recs) == n and all(r.ok for r in recs)
    assert all(r.prompt_tokens_source == "usage" and abs(r.num_prompt_tokens - prompt) <= 5
               for r in recs)
    return recs


def test_embedded_server_timing_matches_its_perf_model(embedded, tmp_path):
    # Requests run alone, so TTFT is one prefill step plus the HTTP request path (a constant that
    # is the machine's, not the model's: 2-8 ms here), and TBT is one decode step of batch 1.
    # The difference of two prompt lengths' TTFTs cancels the request path exactly.
    model = ParametricPerfModel()
    short, long_ = _isolated_run(embedded.base_url, tmp_path, 256), _isolated_run(
        embedded.base_url, tmp_path, 2048)
    prefill = {len_: model.step_time(StepBatch.prefill(recs[0].num_prompt_tokens))
               for len_, recs in ((256, short), (2048, long_))}
    ttft = {256: np.median([r.ttft for r in short]), 2048: np.median([r.ttft for r in long_])}
    assert prefill[2048] - prefill[256] > 0.09  # the lengths are far enough apart to tell
    assert ttft[2048] - ttft[256] == pytest.approx(prefill[2048] - prefill[256], abs=0.004)
    for len_ in (256, 2048):  # never faster than the model, and the request path is small
        assert prefill[len_] <= ttft[len_] <= prefill[len_] + 0.015
    gaps = np.concatenate([np.diff(r.chunk_times) for r in long_])
    prompt = long_[0].num_prompt_tokens
    expect_tbt = model.step_time(StepBatch.decode(1, prompt + 10))  # mid-stream context
    assert np.median(gaps) == pytest.approx(expect_tbt, abs=0.002)


def _uniform_trace(tmp: Path, n: int, gap: float, prompt: int = 512) -> Path:
    path = tmp / f"arrivals{prompt}.csv"
    rows = "\n".join(f"{i * gap},{prompt},20" for i in range(n))
    path.write_text("arrival_time,num_prefill_tokens,num_decode_tokens\n" + rows + "\n")
    return path


def test_quick_start_run_writes_every_output_and_wandb_offline(tmp_path, ray_cluster):
    out = tmp_path / "quick"
    res = bench("--server", "local", "--max-num-completed-requests", "20",
                "--poisson-request-interval-generator-qps", "8", "--num-ray-clients", "2",
                "--ttft-deadline", "0.5", "--tbt-deadline", "0.05", "--output-dir", str(out),
                "--should-write-metrics", "--wandb-project", "etalon-test", "--wandb-group", "g",
                "--wandb-run-name", "r", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for name in ("requests.jsonl", "requests.parquet", "tokens.parquet", "summary.json",
                 "config.json", "requests.csv"):
        assert (out / name).is_file(), name
    assert list((out / "plots").glob("*.png"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["num_completed"] == 20
    assert summary["counts"]["num_errors"] == 0
    assert "TTFT" in res.stdout
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb"))


def test_api_key_never_written(embedded, tmp_path):
    import os

    out = tmp_path / "k"
    env = {**os.environ, "OPENAI_API_KEY": "sk-secret-123456"}
    res = subprocess.run([sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-ray",
                          "--server", embedded.base_url, "--model", "etalon-embedded",
                          "--max-num-completed-requests", "3", "--output-dir", str(out)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    for f in out.rglob("*"):
        if f.is_file():  # every file, the Parquet tables and plots included
            assert b"sk-secret-123456" not in f.read_bytes(), f


@pytest.mark.parametrize("args, needle", [
    (["--server", "http://127.0.0.1:9/v1", "--model", "m"], "unreachable"),
    (["--server", "local", "--poisson-request-interval-generator-qps", "-1"], "qps"),
    (["--server", "local", "--request-length-generator-provider", "trace",
      "--trace-request-length-generator-trace-file", "/nonexistent.csv"], "/nonexistent.csv"),
])
def test_bad_input_is_one_line(args, needle, tmp_path):
    res = bench(*args, "--output-dir", str(tmp_path / "o"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr


def test_garbled_trace_column_is_named(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("num_prefill_tokens,decode\n10,5\n")
    res = bench("--server", "local", "--request-length-generator-provider", "trace",
                "--trace-request-length-generator-trace-file", str(bad), "--output-dir", str(tmp_path / "o"))
    assert res.returncode == 2 and "num_decode_tokens" in res.stderr and "Traceback" not in res.stderr


def test_ctrl_c_writes_what_finished_and_the_summary(tmp_path):
    import signal
    import time

    out = tmp_path / "int"
    proc = subprocess.Popen([sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-ray",
                             "--server", "local", "--max-num-completed-requests", "200",
                             "--poisson-request-interval-generator-qps", "10",
                             "--output-dir", str(out), "--no-plots"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jsonl = out / "requests.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 5):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "interrupted" in stderr
    summary = json.loads((out / "summary.json").read_text())
    recs = load_records(jsonl)
    assert 5 <= len(recs) < 200
    assert summary["counts"]["num_requests"] == len(recs)
    assert summary["run"]["not_dispatched"] == 200 - len(recs)


def test_short_outputs_warn_and_require_exact_fails_them(token_server, chat_tokenizer_dir, tmp_path):
    # A llama.cpp-like server: ignores ignore_eos (prompts whose CRC-32 is 0 or 1 mod 4 stop
    # after that many tokens), streams no usage and no finish reason.
    url = token_server.fault_url("eos+nousage+nofinish")
    common = ("--server", url, "--model", "m", "--llm-api", "openai-chat", "--no-ray",
              "--num-ray-clients", "1", "--tokenizer", str(chat_tokenizer_dir),
              "--max-num-completed-requests", "16", "--poisson-request-interval-generator-qps", "40",
              "--fixed-request-generator-prefill-tokens", "32",
              "--fixed-request-generator-decode-tokens", "8", "--no-plots")
    res = bench(*common, "--output-dir", str(tmp_path / "warn"))
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "warn" / "summary.json").read_text())
    recs = load_records(tmp_path / "warn" / "requests.jsonl")
    early = [r for r in recs if r.num_output_tokens < 8]
    assert len(early) > 2 and all(r.num_output_tokens <= 1 for r in early)
    assert all(r.finish_reason == "stop" and r.finish_reason_source == "inferred" for r in early)
    assert summary["lengths"]["output"]["num_short"] == len(early)
    assert summary["lengths"]["output"]["delivered_tokens"] == sum(r.num_output_tokens for r in recs)
    assert "WARNING: OUTPUTS SHORTER THAN REQUESTED" in res.stdout
    assert summary["warnings"] and summary["lengths"]["output"]["short"]
    # The chat template's tokens are counted (no usage: the tokenizer's template renders them).
    assert {r.prompt_tokens_source for r in recs} == {"chat_template"}
    assert all(r.num_prompt_tokens > r.prompt_token_counts["tokenizer"] == 32 for r in recs)

    res = bench(*common, "--require-exact-output-lengths", "--output-dir", str(tmp_path / "exact"))
    assert res.returncode == 0, res.stderr
    exact = load_records(tmp_path / "exact" / "requests.jsonl")
    failed = {r.request_id for r in exact if r.error_type == "short_output"}
    assert failed == {r.request_id for r in early}
    assert all(r.ok for r in exact if r.request_id not in failed)
