"""A capacity-search job that launches vLLM on CPU itself: started, probed, always stopped.

One probe at a rate far below this engine's capacity (~1 req/s for these requests), so the
check is about the job's handling of a real server — start, readiness, the run's records,
stop, resume — not about where the capacity lies (benchmarks/capacity_vllm_cpu.py measures
that; docs/capacity_vllm_cpu.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from etalon.launchers.base import pid_alive
from etalon.launchers.vllm_cpu import vllm_cpu_missing_reason
from etalon.record_table import read_table

pytestmark = pytest.mark.real_engine


def test_job_launches_vllm_probes_it_and_stops_it(tmp_path):
    reason = vllm_cpu_missing_reason()
    if reason:
        pytest.skip(f"vLLM-on-CPU unavailable: {reason}")
    job = {"slo": {"ttft_percentile": 90, "ttft_max_s": 10.0},
           "search": {"start_qps": 0.3, "max_qps": 0.3, "max_probes": 1},
           "num_requests": 10,
           "workloads": {"short": {"request_length_generator_provider": "fixed",
                                   "fixed_request_generator_prefill_tokens": 64,
                                   "fixed_request_generator_decode_tokens": 8}},
           "deployments": [{"name": "vllm", "launch": {"kind": "vllm-cpu", "args": {"max_num_seqs": 8},
                                                       "startup_timeout_s": 600}}]}
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(job))

    def run() -> dict:
        res = subprocess.run([sys.executable, "-m", "etalon.capacity_search", "--config", str(cfg),
                              "--output-dir", str(tmp_path / "out"), "--no-ray", "--no-plots"],
                             capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads((tmp_path / "out" / "capacity.json").read_text())["configurations"]["vllm"]

    conf = run()
    assert conf["kind"] == "launched" and conf["capacity_qps"] == pytest.approx(0.3)
    assert conf["server"]["startup_s"] > 0 and not pid_alive(conf["server"]["pid"])
    probe = conf["search"]["probes"][0]
    table = read_table(probe["output_dir"])
    assert len(table) == 10
    requests = table.requests
    assert (requests["num_output_tokens"] == 8).all()
    # vLLM's usage, not etalon's approximation, counted the tokens
    assert set(requests["output_tokens_source"]) == {"usage"}
    # rerun: the stored probe answers, vLLM is not started again
    again = run()
    assert again["probes_run"] == 0 and again["probes_reused"] == 1 and again["server"] is None
