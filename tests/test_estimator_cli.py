"""``python -m etalon.estimate``: outputs, plots, and the one-line error contract."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from etalon.estimate import main


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etalon.estimate", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=60)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("etalon.estimate: error: ")
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_config_missing_fields_is_one_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32}))
    assert_one_line_error(run_cli("memory", "--model", str(path), "--hardware", "h100-sxm"),
                          "missing required field", "num_attention_heads")


def test_unknown_gpu_is_one_line():
    assert_one_line_error(run_cli("memory", "--model", "llama-3.1-8b", "--hardware", "h1000"),
                          "unknown hardware 'h1000'", "h100-sxm")


def test_tp_not_dividing_heads_is_one_line():
    assert_one_line_error(run_cli("latency", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--tp", "3"),
                          "--tp 3", "valid TP sizes: 1, 2, 4, 8")


def test_bad_flag_value_and_offline_hub_id_are_one_line():
    assert_one_line_error(run_cli("distributed", "--model", "llama-3.1-8b", "--seq-lens", "a,b"), "--seq-lens")
    assert_one_line_error(run_cli("memory", "--model", "no-org/no-model", "--hardware", "h100"), "Hugging Face Hub")


def test_help_documents_flags_and_defaults():
    proc = run_cli("memory", "-h")
    assert proc.returncode == 0
    for flag in ("--model", "--hardware", "--tp", "--pp", "--dp", "--ep", "--dtype", "--kv-dtype", "--context-len",
                 "--batch-size", "--gpu-memory-utilization", "--json", "--output-dir"):
        assert flag in proc.stdout
    assert "default: 0.9" in proc.stdout


def test_memory_json(capsys):
    assert main(["memory", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--context-len", "8192", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["plan"]["kv_bytes_per_token"] == 131072
    assert data["plan"]["max_concurrency"] > 50
    assert data["model"]["params_total"] == pytest.approx(8.03e9, rel=0.005)


def test_memory_table_and_plots(capsys, tmp_path):
    assert main(["memory", "--model", "deepseek-v3", "--hardware", "h200", "--tp", "8", "--context-len", "32768",
                 "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"KV bytes/token \(model\)\s+70,272", out)
    assert (tmp_path / "memory_breakdown.png").stat().st_size > 1000
    assert (tmp_path / "max_concurrency_vs_context.png").stat().st_size > 1000


def test_latency_plan_and_catalog(capsys):
    assert main(["latency", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--json"]) == 0
    lat = json.loads(capsys.readouterr().out)
    assert lat["theoretical"]["tpot_s"] < lat["estimate"]["tpot_s"]
    assert main(["plan", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--context-len", "8192",
                 "--concurrency", "64", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["recommended"]["tp"], plan["recommended"]["pp"]) == (8, 1)
    assert main(["catalog"]) == 0
    assert "smollm2-135m" in capsys.readouterr().out


def test_distributed_outputs_and_plots(capsys, tmp_path):
    assert main(["distributed", "--model", "llama-3.1-70b", "--dtype", "int4", "--seq-lens", "128,1024",
                 "--sweep-servers", "2,4", "--sweep-hardware", "rtx-3090,rtx-4090", "--sweep-rtt-ms", "10,100",
                 "--sweep-bandwidth-mbps", "10,1000", "--output-dir", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scenario"]["blocks"] == [20, 20, 20, 20]
    names = {p.name for p in tmp_path.iterdir()}
    for sweep in ("servers", "gpu", "rtt", "bandwidth"):
        assert f"throughput_by_{sweep}.png" in names and f"theoretical_throughput_by_{sweep}.png" in names
    assert {"client_storage_stackplot.png", "server_storage_stackplot.png"} <= names
