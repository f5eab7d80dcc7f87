"""Third-party plug-ins: a separate package, installed in this test session, extends etalon's
registries through the ``etalon.plugins`` entry-point group, and its entries appear in the
generated flags and run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from etalon.record_table import read_records
from etalon.registry import Registry, UnknownName, registry

PLUGIN_SRC = Path(__file__).parent / "plugins" / "etalon_example_plugin"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict:
    """Installs the example plug-in into a private folder and returns an environment that
    sees it (etalon itself stays the one under test)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(PLUGIN_SRC)],
                   check=True, capture_output=True, text=True)
    assert list(target.glob("etalon_example_plugin-*.dist-info"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")])
    return env


def etalon(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "etalon", *args], env=env, capture_output=True,
                         text=True, timeout=240)
    if check:
        assert res.returncode == 0, res.stderr[-2000:]
    return res


def test_plugin_entries_appear_in_the_generated_choices(plugin_env):
    bench = etalon(plugin_env, "bench", "-h").stdout
    assert "completions-unary" in bench and "openai-completions" in bench
    simulate = etalon(plugin_env, "simulate", "-h").stdout
    assert "one-at-a-time" in simulate and "sarathi" in simulate
    # without the plug-in on the path the names are not there
    assert "one-at-a-time" not in etalon(dict(os.environ), "simulate", "-h").stdout


def test_plugin_scheduler_runs_in_the_simulator(plugin_env, tmp_path):
    # Four requests arrive at once. One at a time, each starts only after the previous one
    # finished; vLLM's policy prefills all four in the first step instead.
    common = ["--request-interval-generator-provider", "static",
              "--max-num-completed-requests", "4", "--fixed-request-generator-prefill-tokens",
              "64", "--fixed-request-generator-decode-tokens", "8", "--no-plots"]
    runs = {}
    for scheduler in ("one-at-a-time", "vllm"):
        out = tmp_path / scheduler
        etalon(plugin_env, "simulate", "--scheduler", scheduler, "--output-dir", str(out), *common)
        rows = [vars(r) for r in read_records(out)]
        runs[scheduler] = sorted(rows, key=lambda r: r["chunk_times"][0])
    serial = runs["one-at-a-time"]
    for before, after in zip(serial, serial[1:]):
        assert after["chunk_times"][0] >= before["completed_at"]
    batched = runs["vllm"]
    assert batched[-1]["chunk_times"][0] < batched[0]["completed_at"]


def test_plugin_client_benchmarks_the_embedded_server(plugin_env, tmp_path):
    out = tmp_path / "bench"
    etalon(plugin_env, "bench", "--server", "local", "--llm-api", "completions-unary", "--no-ray",
           "--no-progress", "--no-plots", "--max-num-completed-requests", "5",
           "--poisson-request-interval-generator-qps", "20",
           "--fixed-request-generator-prefill-tokens", "32",
           "--fixed-request-generator-decode-tokens", "6", "--output-dir", str(out))
    rows = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    for row in rows:
        assert row["error_type"] is None
        assert row["chunk_tokens"] == [6] and row["num_output_tokens"] == 6


def test_unknown_plugin_name_is_one_line(plugin_env):
    res = etalon(plugin_env, "simulate", "--scheduler", "nope", check=False)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1
    assert "one-at-a-time" in res.stderr  # the valid names include the plug-in's


def test_registry_rules():
    reg = Registry("scheduler")
    reg.register("a", "json:dumps")  # lazy reference, resolved on first use
    assert reg.get("a") is json.dumps
    with pytest.raises(ValueError, match="registered already"):
        reg.register("a", object())
    with pytest.raises(UnknownName, match="unknown scheduler 'b'; valid: a"):
        reg.get("b")
    assert set(registry("scheduler").names()) >= {"vllm", "sarathi", "orca", "static",
                                                  "windowed"}
