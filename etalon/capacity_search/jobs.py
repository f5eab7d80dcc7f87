"""Capacity-search jobs: a YAML/JSON file naming an SLO, search settings and deployments.

Each deployment is searched on its own; simulated ones run as Ray tasks in parallel (on an
existing cluster with ``--ray-address``), live ones one after another — they share a server.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from etalon.capacity_search.probes import live_probe, simulated_probe
from etalon.capacity_search.search import SearchResult, SearchSettings, search_capacity
from etalon.capacity_search.slo import SLO
from etalon.cli_errors import UserError
from etalon.config_files import load_mapping

TOP_KEYS = {"slo", "search", "num_requests", "deployments"}
DEPLOYMENT_KEYS = {"name", "simulate", "benchmark_args"}


@dataclass
class Deployment:
    name: str
    simulate: dict | None = None
    benchmark_args: list[str] | None = None

    @property
    def live(self) -> bool:
        return self.benchmark_args is not None


@dataclass
class Job:
    slo: SLO
    search: SearchSettings
    num_requests: int
    deployments: list[Deployment]


def load_job(path: str | Path) -> Job:
    where = str(path)
    data = load_mapping(path, "capacity-search job")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown}; valid: {sorted(TOP_KEYS)}")
    if "slo" not in data or not data.get("deployments"):
        raise UserError(f"{where}: needs 'slo' and a non-empty 'deployments' list")
    search = data.get("search") or {}
    bad = sorted(set(search) - {f.name for f in fields(SearchSettings)})
    if bad:
        raise UserError(f"{where}: unknown search key(s) {bad}")
    deployments = []
    for i, d in enumerate(data["deployments"]):
        at = f"{where}: deployments[{i}]"
        if not isinstance(d, dict) or set(d) - DEPLOYMENT_KEYS or "name" not in d:
            raise UserError(f"{at}: expected name plus 'simulate' or 'benchmark_args' "
                             f"(got {sorted(d) if isinstance(d, dict) else d!r})")
        if ("simulate" in d) == ("benchmark_args" in d):
            raise UserError(f"{at}: give exactly one of 'simulate' and 'benchmark_args'")
        deployments.append(Deployment(str(d["name"]), d.get("simulate"),
                                      [str(a) for a in d["benchmark_args"]] if "benchmark_args" in d else None))
    names = [d.name for d in deployments]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: deployment names must be unique")
    num = int(data.get("num_requests", 500))
    if num < 10:
        raise UserError(f"{where}: num_requests must be >= 10")
    return Job(SLO.from_mapping(data["slo"], f"{where}: slo"), SearchSettings(**search).validate(where),
               num, deployments)


def run_deployment(job: Job, dep: Deployment, out_dir: Path, verbose: bool = True) -> SearchResult:
    where = f"deployment {dep.name!r}"
    out = out_dir / dep.name
    if dep.live:
        probe = live_probe(dep.benchmark_args, job.slo, job.num_requests, out, where)
    else:
        probe = simulated_probe(dep.simulate, job.slo, job.num_requests, out, where)

    def show(p) -> None:
        if verbose:
            verdict = "pass" if p.passed else "FAIL: " + "; ".join(p.observed["reasons"])
            print(f"  {dep.name}: {p.qps:8.3f} req/s  {verdict}", flush=True)

    return search_capacity(probe, job.search, show)
