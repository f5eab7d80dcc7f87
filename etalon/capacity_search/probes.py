"""Probes: run one load level against a configuration and judge it against the SLO.

A simulated probe runs ``etalon.simulate`` in this process; a live probe runs
``etalon.run_benchmark`` as a child process, exactly as a user would, from a config file it
leaves in the probe's folder (``probe.yaml``: rerun it by hand to see the probe again). Both
read back the records they wrote, so the SLO is judged by the same code.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from etalon.capacity_search.jobs import probe_workload, searches_users
from etalon.capacity_search.search import Probe
from etalon.capacity_search.slo import SLO
from etalon.cli_errors import UserError
from etalon.metrics.columns import RunColumns
from etalon.metrics.latency import DISPATCH_LAG, latency_series
from etalon.record_table import read_table

#: run_benchmark settings a live probe sets itself
RESERVED_FLAGS = ("--poisson-request-interval-generator-qps", "--gamma-request-interval-generator-qps",
                  "--closed-loop-request-interval-generator-users",
                  "--request-interval-generator-provider", "--output-dir",
                  "--max-num-completed-requests", "--config")


def _judge(slo: SLO, table, load: dict, level: float) -> tuple[bool, dict]:
    """The SLO's verdict on a probe's records; a closed loop's achieved rate (the throughput at
    that many users) goes with it, for the goodput and the capacity in req/s."""
    loop = load.get("closed_loop")
    rate = loop.get("achieved_qps") if loop else level
    columns = RunColumns.of(table)  # built once: the SLO check reads the same series
    lags = latency_series(columns)[DISPATCH_LAG.name].values
    passed, observed = slo.check(columns, generator_fell_behind(load, rate or level, lags))
    if loop:
        observed["achieved_qps"] = loop.get("achieved_qps")
    return passed, observed


def generator_fell_behind(load: dict, qps: float, lags: np.ndarray | None = None) -> bool:
    """Whether a probe's load generator failed to deliver its rate (a hard fail).

    A run's own check flags a p99 dispatch lag over a fixed 10 ms; a probe judges lag against
    the gaps between its arrivals instead: a lag under a tenth of the mean gap leaves the arrival
    process the server saw as asked (at 0.3 req/s one 10.6 ms lag among 10 requests failed a
    vLLM probe whose p90 TTFT was 270 ms against a 10 s limit). Given the probe's dispatch
    ``lags``, more than 1 % of its requests, and more than one, must be that late: in a probe
    of 60 requests the p99 is its one worst request, and one stall of a busy machine (20 ms at
    10 req/s) does not change the load the server saw. Too low an achieved rate fails as in the
    run's check."""
    achieved, target = load.get("achieved_qps"), load.get("target_qps")
    if achieved is not None and target is not None and achieved < load["min_rate_fraction"] * target:
        return True
    bound = max(load["lag_threshold_s"], 0.1 / qps)
    if lags is not None:
        late = int(np.count_nonzero(lags > bound))
        return late > max(1, 0.01 * len(lags))
    lag = load.get("dispatch_lag_p99_s")
    return lag is not None and lag > bound


class Repeats:
    """Counts the probes at each rate: a repeat gets its own folder and its own workload seed
    (the same seed would replay the same requests, and a simulation would repeat exactly)."""

    def __init__(self, out_dir: Path, workload: dict) -> None:
        self.out_dir, self.seen = out_dir, {}
        self.prefix = "users_" if searches_users(workload) else "qps_"

    def next(self, level: float) -> tuple[Path, int]:
        n = self.seen.get(level, 0)
        self.seen[level] = n + 1
        return self.out_dir / (f"{self.prefix}{level:.4g}" + (f"_r{n + 1}" if n else "")), n


def simulated_probe(sim_settings: dict, workload: dict, slo: SLO, num_requests: int,
                    out_dir: Path, where: str):
    """A probe function over a simulator config mapping (the ``etalon.simulate`` file schema)."""
    from etalon.options import from_mapping
    from etalon.simulate import simulate
    from etalon.simulator.config import SimConfig

    repeats = Repeats(out_dir, workload)

    def probe(qps: float) -> Probe:
        out, n = repeats.next(qps)
        data = copy.deepcopy(sim_settings)
        data["workload"] = probe_workload(data.get("workload"), workload, qps, num_requests, n)
        data.update(output_dir=str(out), no_plots=True)
        cfg = from_mapping(SimConfig, data, where).validate()
        summary = simulate(cfg, quiet=True)
        table = read_table(out)
        measured = table.select(table.numbers("scheduled_at") >= cfg.warm_up)
        passed, observed = _judge(slo, measured, summary["load"], qps)
        return Probe(qps, passed, observed, str(out))

    return probe


def live_probe(settings: dict, extra_flags: list[str], workload: dict, slo: SLO,
               num_requests: int, out_dir: Path, where: str):
    """A probe function that runs ``run_benchmark`` with ``settings`` (its file keys: server,
    model, clients, ...) and ``extra_flags``, at the probe's rate."""
    clash = [a for a in extra_flags if a.split("=")[0] in RESERVED_FLAGS]
    if clash:
        raise UserError(f"{where}: benchmark_args must not set {clash}: the search sets them")
    # The probe's load generators must never be what limits the load: threads of the probe's
    # process, and an in-flight cap far above what a server at its capacity holds (the
    # default 2 x 10 made a chunked-prefill server at 12 req/s "fall behind": ~24 in flight)
    base = {"no_ray": True, "num_concurrent_requests_per_client": 256, **copy.deepcopy(settings)}
    if "workload" in base:
        raise UserError(f"{where}: benchmark: put the workload under the job's 'workloads'")

    repeats = Repeats(out_dir, workload)
    unit = "users" if searches_users(workload) else "req/s"

    def probe(qps: float) -> Probe:
        out, n = repeats.next(qps)
        out.mkdir(parents=True, exist_ok=True)
        config = {**base, "output_dir": str(out), "no_progress": True, "no_plots": True,
                  "no_report": True,
                  "workload": probe_workload(None, workload, qps, num_requests, n)}
        (out / "probe.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [sys.executable, "-m", "etalon.run_benchmark", "--config", str(out / "probe.yaml"),
               *extra_flags]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"{where}: the benchmark at {qps:g} {unit} failed: {last}")
        summary = json.loads((out / "summary.json").read_text())
        passed, observed = _judge(slo, read_table(out), summary["load"], qps)
        return Probe(qps, passed, observed, str(out))

    return probe
