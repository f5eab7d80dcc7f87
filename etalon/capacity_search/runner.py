"""Runs a job's configurations: each one's server up once, its search, its server down.

Configurations that share a server (the same ``url`` or ``benchmark_args`` deployment) form a
*lane* and run one after another; every other configuration is a lane of its own. Lanes run as
Ray tasks that ask for what they need (a launched configuration its ``resources``: GPUs for
TP×PP, which Ray pins to one node and exposes through ``CUDA_VISIBLE_DEVICES``; CPUs), so
simulated and CPU-only configurations run side by side and ``--ray-address`` spreads them over
a cluster. A failure (a server that never gets ready, a probe that cannot run) ends that
configuration only: it is reported, its finished probes stay in its ledger.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from etalon.capacity_search.jobs import Configuration, Job
from etalon.capacity_search.intervals import capacity_interval
from etalon.capacity_search.launch import LaunchError, start
from etalon.capacity_search.ledger import ProbeLedger
from etalon.capacity_search.probes import live_probe, simulated_probe
from etalon.capacity_search.search import search_capacity
from etalon.cli_errors import UserError
from etalon.report.files import write_json


@dataclass
class ConfigResult:
    """One configuration's outcome, as ``capacity.json`` stores it."""

    config: dict
    key: str
    search: dict | None = None  # SearchResult.to_dict()
    error: str | None = None
    server: dict | None = None  # launched: pid, url, log, startup seconds
    probes_run: int = 0
    probes_reused: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def users(self) -> bool:
        return self.config.get("load") == "concurrency"

    @property
    def capacity_users(self) -> int | None:
        """A concurrency search's answer: the most closed-loop users that meet the SLO."""
        level = (self.search or {}).get("capacity_qps") if self.users else None
        return int(level) if level is not None else None

    @property
    def capacity_qps(self) -> float | None:
        """The most requests per second within the SLO: the rate a rate search found, or the
        rate a concurrency search's users achieved at its capacity (so the two compare)."""
        level = (self.search or {}).get("capacity_qps")
        if level is None or not self.users:
            return level
        at = [p for p in self.search["probes"] if p["qps"] == level and p["passed"]]
        rates = [p["observed"].get("achieved_qps") for p in at]
        rates = [r for r in rates if r is not None]
        return float(min(rates)) if rates else None

    def _rate(self, probe: dict) -> float:
        """The request rate a probe ran at: its level, or what its closed loop achieved."""
        achieved = probe["observed"].get("achieved_qps")
        return achieved if self.users and achieved is not None else probe["qps"]

    @property
    def max_goodput(self) -> dict | None:
        """The probe with the most good requests per second (deadline SLOs only): goodput can
        peak above the capacity, where the SLO's percentile already fails."""
        probes = [p for p in (self.search or {}).get("probes", [])
                  if p["observed"].get("good_fraction") is not None]
        if not probes:
            return None
        best = max(probes, key=lambda p: self._rate(p) * p["observed"]["good_fraction"])
        return {"qps": best["qps"],
                "goodput_qps": self._rate(best) * best["observed"]["good_fraction"]}

    def to_dict(self) -> dict:
        return {**self.config, "key": self.key, "capacity_qps": self.capacity_qps,
                "capacity_users": self.capacity_users, "max_goodput": self.max_goodput,
                "error": self.error, "server": self.server, "probes_run": self.probes_run,
                "probes_reused": self.probes_reused, "seconds": round(self.seconds, 2),
                "search": self.search, "capacity_interval": self.extra.get("capacity_interval")}


def config_dir(out_dir: Path, conf: Configuration) -> Path:
    return out_dir / conf.name


def run_configuration(job: Job, conf: Configuration, out_dir: Path, verbose: bool = True) -> ConfigResult:
    """Searches one configuration; its server (if launched) is stopped whatever happens."""
    out = config_dir(out_dir, conf)
    out.mkdir(parents=True, exist_ok=True)
    where = f"configuration {conf.name!r}"
    result = ConfigResult(conf.describe(), conf.key(job.num_requests))
    ledger = ProbeLedger(out / "probes.jsonl", result.key)
    began = time.monotonic()

    def show(p) -> None:
        if verbose:
            verdict = "pass" if p.passed else "FAIL: " + "; ".join(p.observed.get("reasons", []))
            level = f"{p.qps:8.0f} users" if conf.load == "concurrency" else f"{p.qps:8.3f} req/s"
            print(f"  {conf.name}: {level}  {verdict}", flush=True)

    try:
        with ExitStack() as stack:
            probe = _probe(job, conf, out, where, stack, result)
            sr = search_capacity(ledger.wrap(probe), conf.search_settings(job.search), show)
            result.search = sr.to_dict()
            interval = capacity_interval(job, conf, out, result.search["capacity_qps"],
                                         (lambda m: print(f"  {conf.name}: {m}", flush=True))
                                         if verbose else None)
            if interval is not None:
                result.extra["capacity_interval"] = interval
    except (LaunchError, UserError) as exc:
        result.error = str(exc)
        if verbose:
            print(f"  {conf.name}: ERROR {exc}", flush=True)
    result.probes_reused = ledger.reused
    result.probes_run = sum(ledger.calls.values()) - ledger.reused
    result.seconds = time.monotonic() - began
    write_json(out / "capacity.json", result.to_dict())
    return result


def _probe(job: Job, conf: Configuration, out: Path, where: str, stack: ExitStack,
           result: ConfigResult):
    dep = conf.deployment
    if conf.simulated:
        return simulated_probe(dep.twin(), conf.workload, conf.slo, job.num_requests, out, where)
    settings = dict(dep.benchmark)
    if dep.kind == "url":
        settings.update(server=dep.url, model=dep.model)
    if dep.kind != "launched":
        return live_probe(settings, dep.benchmark_args or [], conf.workload, conf.slo,
                          job.num_requests, out, where)
    probe = None

    def first_start(qps: float):
        # the server starts at the first probe the ledger cannot answer: a resumed job whose
        # probes are all stored never starts it
        nonlocal probe
        if probe is None:
            srv, url = start(dep.launch, out / "server.log", where)
            stack.callback(srv.stop)
            result.server = {"pid": srv.pid, "url": url, "log": str(srv.log_path),
                             "startup_s": round(srv.startup_seconds or 0.0, 2)}
            write_json(out / "server.json", result.server)
            probe = live_probe({**settings, "server": url, "model": dep.served_model()},
                               dep.benchmark_args or [], conf.workload, conf.slo,
                               job.num_requests, out, where)
        return probe(qps)

    return first_start


def lanes(configs: list[Configuration]) -> list[list[Configuration]]:
    """Configurations that share a server run in one lane, in order; the rest alone."""
    shared: dict[str, list[Configuration]] = {}
    out: list[list[Configuration]] = []
    for conf in configs:
        if not conf.simulated and conf.deployment.kind in ("url", "benchmark"):
            lane = shared.get(conf.deployment.name)
            if lane is None:
                lane = shared[conf.deployment.name] = []
                out.append(lane)
            lane.append(conf)
        else:
            out.append([conf])
    return out


def lane_resources(lane: list[Configuration]) -> dict:
    """What Ray reserves for a lane: the largest of its configurations' ``resources``."""
    cpus = max(float(c.deployment.resources.get("cpus", 1)) for c in lane)
    gpus = 0.0 if all(c.simulated for c in lane) else \
        max(float(c.deployment.resources.get("gpus", 0)) for c in lane)
    return {"num_cpus": cpus, "num_gpus": gpus}


def _run_lane(job: Job, lane: list[Configuration], out_dir: Path) -> list[ConfigResult]:
    return [run_configuration(job, conf, out_dir) for conf in lane]


def run_all(job: Job, configs: list[Configuration], out_dir: Path, use_ray: bool,
            address: str | None) -> list[ConfigResult]:
    """Every configuration's result, in the job's order.

    Lanes run one by one here (``use_ray`` false, or one lane), on the Ray cluster at
    ``address``, in local processes when every lane is simulated and no cluster is named, and
    otherwise on a local Ray instance (live lanes reserve their GPUs through it).
    """
    groups = lanes(configs)
    if not use_ray or len(groups) == 1:
        done = [r for lane in groups for r in _run_lane(job, lane, out_dir)]
    elif address is None and all(c.simulated for lane in groups for c in lane):
        done = _run_in_processes(job, groups, out_dir)
    else:
        done = _run_on_ray(job, groups, out_dir, address)
    order = {c.name: i for i, c in enumerate(configs)}
    return sorted(done, key=lambda r: order[r.config["name"]])


def _run_in_processes(job: Job, groups: list[list[Configuration]],
                      out_dir: Path) -> list[ConfigResult]:
    """Simulated lanes on this machine, as many at once as the cores hold their ``cpus``.

    A local Ray instance takes 5-7 s to start and stop on a 2-core machine, longer than the
    whole work of a small simulated job; worker processes (spawned, so no thread of this one
    is copied into them) start in about the time an import of etalon takes.
    """
    import multiprocessing
    import os

    cpus = max(lane_resources(lane)["num_cpus"] for lane in groups)
    workers = max(1, min(len(groups), int((os.cpu_count() or 1) // max(cpus, 1.0))))
    print(f"etalon.capacity_search: {len(groups)} simulated lanes in {workers} local "
          f"process(es)", file=sys.stderr)
    pool = multiprocessing.get_context("spawn").Pool(workers)
    try:
        running = [pool.apply_async(_run_lane, (job, lane, out_dir)) for lane in groups]
        results = [r for lane in running for r in lane.get()]
        pool.close()
        return results
    except BaseException:
        pool.terminate()  # Ctrl-C or a crash: stop the lanes; their ledgers hold every probe done
        raise
    finally:
        pool.join()


def _run_on_ray(job: Job, groups: list[list[Configuration]], out_dir: Path,
                address: str | None) -> list[ConfigResult]:
    import ray

    from etalon.client.pool import init_ray

    init_ray(address)
    task = ray.remote(_run_lane)
    refs = [task.options(**lane_resources(lane)).remote(job, lane, out_dir) for lane in groups]
    try:
        results: list[ConfigResult] = []
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for lane_results in ray.get(ready):
                results += lane_results
        return results
    except BaseException:
        # Ctrl-C or a crash: cancelling kills the lanes' workers, whose servers die with them
        # (each server gets SIGTERM when the process that started it dies)
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
