"""Capacity-search jobs: a YAML/JSON file that expands into configurations to search.

A configuration is one deployment × one workload × one SLO (the Cartesian product of the
job's lists, narrowed by ``include``/``exclude`` rules). A deployment is *launched* (the job
starts its server once per configuration and always stops it), an already running *url*, a
*benchmark* (run_benchmark flags that name the server themselves) or *simulated*. With
``--simulate`` every live deployment is replaced by its simulated twin: its ``simulate:``
mapping, or for an embedded server the simulator with the server's own engine and timing.

Every mistake is one line naming the file and the field. See capacity_search/README.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from etalon.capacity_search.launch import LaunchSpec
from etalon.capacity_search.search import SearchSettings
from etalon.capacity_search.slo import SLO
from etalon.cli_errors import UserError
from etalon.config_files import load_mapping

TOP_KEYS = {"slo", "slos", "search", "num_requests", "workloads", "deployments", "include",
            "exclude"}
DEPLOYMENT_KEYS = {"name", "launch", "url", "model", "simulate", "benchmark", "benchmark_args",
                   "resources"}
RULE_KEYS = ("deployment", "workload", "slo")
#: settings of ``etalon serve`` that the simulator does not have (the rest are shared)
SERVE_ONLY = {"host", "port", "model", "tokenizer", "max_queue"}
DEFAULT = "default"


@dataclass
class Deployment:
    name: str
    launch: LaunchSpec | None = None
    url: str | None = None
    model: str | None = None
    simulate: dict | None = None
    benchmark: dict = field(default_factory=dict)  # run_benchmark settings for live probes
    benchmark_args: list[str] | None = None  # run_benchmark flags (they name the server)
    resources: dict = field(default_factory=dict)  # {cpus, gpus} for one configuration

    @property
    def kind(self) -> str:
        if self.launch is not None:
            return "launched"
        if self.url is not None:
            return "url"
        if self.benchmark_args is not None:
            return "benchmark"
        return "simulated"

    def twin(self) -> dict | None:
        """The simulator settings standing in for this deployment under ``--simulate``."""
        if self.simulate is not None:
            return self.simulate
        if self.launch is not None and self.launch.kind == "embedded":
            return {k: v for k, v in self.launch.args.items() if k not in SERVE_ONLY}
        return None

    def served_model(self) -> str | None:
        return self.launch.served_model() if self.launch else self.model

    def spec(self) -> dict:
        """What identifies the deployment's behaviour (its name excluded): part of the key."""
        return {"launch": vars(self.launch) if self.launch else None, "url": self.url,
                "model": self.model, "simulate": self.simulate, "benchmark": self.benchmark,
                "benchmark_args": self.benchmark_args}


@dataclass
class Configuration:
    """One search: a deployment under one workload and one SLO, live or simulated."""

    deployment: Deployment
    workload_name: str
    workload: dict
    slo_name: str
    slo: SLO
    simulated: bool
    name: str = ""

    def key(self, num_requests: int) -> str:
        """Identifies what a probe measures: a stored probe is reused only under the same key."""
        blob = json.dumps({"mode": "simulated" if self.simulated else "live",
                           "deployment": self.deployment.spec() if not self.simulated
                           else {"simulate": self.deployment.twin()},
                           "workload": self.workload, "slo": self.slo.to_dict(),
                           "num_requests": num_requests}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def load(self) -> str:
        """What the search varies: ``rate`` (open loop, req/s) or ``concurrency`` (users)."""
        return "concurrency" if searches_users(self.workload) else "rate"

    def search_settings(self, search: SearchSettings) -> SearchSettings:
        return search.for_users() if self.load == "concurrency" else search

    def describe(self) -> dict:
        return {"name": self.name, "deployment": self.deployment.name,
                "kind": "simulated" if self.simulated else self.deployment.kind,
                "workload": self.workload_name, "slo": self.slo_name, "load": self.load}


@dataclass
class Job:
    slos: dict[str, SLO]
    search: SearchSettings
    num_requests: int
    deployments: list[Deployment]
    workloads: dict[str, dict] = field(default_factory=lambda: {DEFAULT: {}})
    include: list[dict] = field(default_factory=list)
    exclude: list[dict] = field(default_factory=list)
    where: str = "job"

    def configurations(self, simulate: bool = False) -> list[Configuration]:
        """The Cartesian product, narrowed by the rules; ``simulate`` swaps in the twins."""
        out = []
        for dep in self.deployments:
            for wname, workload in self.workloads.items():
                for sname, slo in self.slos.items():
                    names = {"deployment": dep.name, "workload": wname, "slo": sname}
                    if self.include and not any(_matches(r, names) for r in self.include):
                        continue
                    if any(_matches(r, names) for r in self.exclude):
                        continue
                    simulated = simulate or dep.kind == "simulated"
                    if simulated and dep.twin() is None:
                        raise UserError(f"{self.where}: deployment {dep.name!r} has no simulated "
                                        "twin for --simulate: give it a 'simulate:' mapping")
                    parts = [dep.name] + ([wname] if len(self.workloads) > 1 else []) \
                        + ([sname] if len(self.slos) > 1 else [])
                    out.append(Configuration(dep, wname, workload, sname, slo, simulated,
                                             "/".join(parts)))
        if not out:
            raise UserError(f"{self.where}: the include/exclude rules leave no configuration")
        return out


def _matches(rule: dict, names: dict) -> bool:
    return all(names[k] in v for k, v in rule.items())


def _names(value, where: str) -> dict:
    """A named collection: a mapping name -> entry, or a list of entries with ``name``."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value):
        return {str(v["name"]): {k: x for k, x in v.items() if k != "name"} for v in value}
    raise UserError(f"{where}: expected a mapping of name -> settings")


def _rules(value, where: str, known: dict[str, set[str]]) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UserError(f"{where}: expected a list of rules like {{deployment: a, slo: [x, y]}}")
    rules = []
    for i, rule in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(rule, dict) or not rule or set(rule) - set(RULE_KEYS):
            raise UserError(f"{at}: a rule maps some of {', '.join(RULE_KEYS)} to names")
        norm = {}
        for k, v in rule.items():
            names = [str(x) for x in (v if isinstance(v, list) else [v])]
            missing = sorted(set(names) - known[k])
            if missing:
                raise UserError(f"{at}: unknown {k}(s) {missing}; the job has {sorted(known[k])}")
            norm[k] = set(names)
        rules.append(norm)
    return rules


def _deployment(d, at: str) -> Deployment:
    if not isinstance(d, dict) or "name" not in d:
        raise UserError(f"{at}: expected a mapping with 'name'")
    unknown = sorted(set(d) - DEPLOYMENT_KEYS)
    if unknown:
        raise UserError(f"{at}: unknown key(s) {unknown}; valid: {sorted(DEPLOYMENT_KEYS)}")
    targets = [k for k in ("launch", "url", "benchmark_args") if k in d]
    if len(targets) > 1 or (not targets and "simulate" not in d):
        raise UserError(f"{at}: give exactly one of 'launch', 'url', 'benchmark_args', or only "
                        "'simulate'")
    for key in ("simulate", "benchmark", "resources"):
        if key in d and not isinstance(d[key], dict):
            raise UserError(f"{at}: '{key}' must be a mapping")
    dep = Deployment(str(d["name"]), simulate=copy.deepcopy(d.get("simulate")),
                     benchmark=dict(d.get("benchmark") or {}), resources=dict(d.get("resources") or {}))
    if "launch" in d:
        dep.launch = LaunchSpec.from_mapping(d["launch"], f"{at}: launch")
    if "url" in d:
        dep.url = str(d["url"]).rstrip("/")
        if not dep.url.startswith(("http://", "https://")):
            raise UserError(f"{at}: url must be http(s)://..., got {d['url']!r}")
        if not d.get("model"):
            raise UserError(f"{at}: a 'url' deployment needs 'model' (the name requests carry)")
    dep.model = d.get("model")
    if "benchmark_args" in d:
        if not isinstance(d["benchmark_args"], list):
            raise UserError(f"{at}: 'benchmark_args' must be a list of run_benchmark flags")
        dep.benchmark_args = [str(a) for a in d["benchmark_args"]]
    bad = sorted(set(dep.resources) - {"cpus", "gpus"})
    if bad:
        raise UserError(f"{at}: resources: unknown key(s) {bad}; valid: ['cpus', 'gpus']")
    for k, v in dep.resources.items():
        if not isinstance(v, (int, float)) or v < 0:
            raise UserError(f"{at}: resources: {k} must be a number >= 0")
    if dep.simulate is not None:
        _check_simulate(dep.simulate, f"{at}: simulate")
    return dep


def _check_simulate(settings: dict, where: str) -> None:
    from etalon.options import from_mapping
    from etalon.simulator.config import SimConfig

    from_mapping(SimConfig, copy.deepcopy(settings), where).validate()


def load_job(path: str | Path) -> Job:
    where = str(path)
    data = load_mapping(path, "capacity-search job")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown}; valid: {sorted(TOP_KEYS)}")
    if ("slo" in data) == ("slos" in data):
        raise UserError(f"{where}: give 'slo' (one) or 'slos' (name -> SLO), not both or neither")
    if not data.get("deployments") or not isinstance(data["deployments"], list):
        raise UserError(f"{where}: needs a non-empty 'deployments' list")
    raw_slos = {DEFAULT: data["slo"]} if "slo" in data else _names(data["slos"], f"{where}: slos")
    slos = {str(n): SLO.from_mapping(s if isinstance(s, dict) else {}, f"{where}: slos.{n}"
                                     if "slos" in data else f"{where}: slo")
            for n, s in raw_slos.items()}
    search = data.get("search") or {}
    valid = {f.name for f in fields(SearchSettings)} - {"integer"}
    bad = sorted(set(search) - valid)
    if bad:
        raise UserError(f"{where}: search: unknown key(s) {bad}; valid: {sorted(valid)}")
    workloads = _names(data["workloads"], f"{where}: workloads") if data.get("workloads") \
        else {DEFAULT: {}}
    for wname, w in workloads.items():
        _check_workload(w, f"{where}: workloads.{wname}")
    deployments = [_deployment(d, f"{where}: deployments[{i}]")
                   for i, d in enumerate(data["deployments"])]
    names = [d.name for d in deployments]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: deployment names must be unique")
    try:
        num = int(data.get("num_requests", 500))
    except (TypeError, ValueError):
        raise UserError(f"{where}: num_requests must be an integer") from None
    if num < 10:
        raise UserError(f"{where}: num_requests must be >= 10")
    known = {"deployment": set(names), "workload": set(workloads), "slo": set(slos)}
    return Job(slos, SearchSettings(**search).validate(where), num, deployments,
               {str(k): dict(v or {}) for k, v in workloads.items()},
               _rules(data.get("include"), f"{where}: include", known),
               _rules(data.get("exclude"), f"{where}: exclude", known), where)


def _check_workload(workload, where: str) -> None:
    from etalon.options import from_mapping
    from etalon.workload.config import WorkloadConfig

    if not isinstance(workload, dict):
        raise UserError(f"{where}: expected a mapping of workload settings")
    from_mapping(WorkloadConfig, workload, where)
    provider = workload.get("request_interval_generator_provider", "poisson")
    if provider not in LEVELS:
        raise UserError(f"{where}: the search sets the rate of 'poisson' or 'gamma' arrivals or "
                        f"the users of 'closed_loop', not {provider!r}")


#: the workload setting a search sets, by arrival process: the rate of an open loop, the users
#: of a closed one (a concurrency search)
LEVELS = {"poisson": "poisson_request_interval_generator_qps",
          "gamma": "gamma_request_interval_generator_qps",
          "closed_loop": "closed_loop_request_interval_generator_users"}


def searches_users(workload: dict) -> bool:
    """Whether a configuration's search is over closed-loop users rather than a rate."""
    return workload.get("request_interval_generator_provider") == "closed_loop"


def probe_workload(base: dict | None, workload: dict, level: float, num_requests: int,
                   repeat: int = 0) -> dict:
    """The workload of one probe: the deployment's, the configuration's over it, then the load
    level (a rate, or a number of users) and, for the ``repeat``-th repeat at a level, the seed
    moved on by ``repeat``."""
    out = {**copy.deepcopy(base or {}), **copy.deepcopy(workload)}
    if repeat:
        from etalon.workload.config import WorkloadConfig

        out["seed"] = int(out.get("seed", WorkloadConfig().seed)) + repeat
    provider = out.get("request_interval_generator_provider", "poisson")
    users = provider == "closed_loop"
    out.update({"request_interval_generator_provider": provider,
                LEVELS[provider]: int(round(level)) if users else level,
                "max_num_completed_requests": num_requests})
    return out
