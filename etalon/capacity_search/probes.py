"""Probes: run one load level against a deployment and judge it against the SLO.

A simulated probe runs ``etalon.simulate`` with the job's settings at the probe's Poisson rate;
a live probe runs ``etalon.run_benchmark`` (a child process, exactly as a user would) at that
rate. Both read back the records they wrote, so the SLO is judged by the same code.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

from etalon.capacity_search.search import Probe
from etalon.capacity_search.slo import SLO
from etalon.cli_errors import UserError
from etalon.record_table import read_table


def simulated_probe(sim_settings: dict, slo: SLO, num_requests: int, out_dir: Path, where: str):
    """A probe function over a simulator config mapping (the ``etalon.simulate`` file schema)."""
    from etalon.simulate import simulate
    from etalon.options import from_mapping
    from etalon.simulator.config import SimConfig

    from_mapping(SimConfig, copy.deepcopy(sim_settings), where).validate()  # fail before probing

    def probe(qps: float) -> Probe:
        data = copy.deepcopy(sim_settings)
        workload = data.setdefault("workload", {})
        workload.update(request_interval_generator_provider="poisson",
                        poisson_request_interval_generator_qps=qps,
                        max_num_completed_requests=num_requests)
        out = out_dir / f"qps_{qps:.4g}"
        data.update(output_dir=str(out), no_plots=True)
        cfg = from_mapping(SimConfig, data, where).validate()
        summary = simulate(cfg, quiet=True)
        table = read_table(out)
        measured = table.select(table.numbers("scheduled_at") >= cfg.warm_up)
        passed, observed = slo.check(measured, summary["load"]["fell_behind"])
        return Probe(qps, passed, observed, str(out))

    return probe


def live_probe(benchmark_args: list[str], slo: SLO, num_requests: int, out_dir: Path, where: str):
    """A probe function that runs ``run_benchmark`` with ``benchmark_args`` plus the rate."""
    reserved = ("--poisson-request-interval-generator-qps", "--request-interval-generator-provider",
                "--output-dir", "--max-num-completed-requests")
    clash = [a for a in benchmark_args if a.split("=")[0] in reserved]
    if clash:
        raise UserError(f"{where}: benchmark_args must not set {clash}: the search sets them")

    def probe(qps: float) -> Probe:
        out = out_dir / f"qps_{qps:.4g}"
        cmd = [sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-plots",
               *benchmark_args, "--request-interval-generator-provider", "poisson",
               "--poisson-request-interval-generator-qps", str(qps),
               "--max-num-completed-requests", str(num_requests), "--output-dir", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"{where}: the benchmark at {qps:g} req/s failed: {last}")
        summary = json.loads((out / "summary.json").read_text())
        passed, observed = slo.check(read_table(out), summary["load"]["fell_behind"])
        return Probe(qps, passed, observed, str(out))

    return probe
