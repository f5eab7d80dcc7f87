"""``python -m etalon.capacity_search --config JOB.yaml``: bisect each deployment's request rate
under the job's SLO and write ``capacity.json``, ``capacity.csv`` and a plot."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from etalon.capacity_search.jobs import Job, load_job, run_deployment
from dataclasses import dataclass
from typing import ClassVar

from etalon.commands import entry_points
from etalon.options import add_options, apply_namespace, check_required, option

PROG = "etalon.capacity_search"
DESCRIPTION = "Capacity search: bisect each deployment's request rate under the job's SLO."


@dataclass
class SearchCommandConfig:
    REQUIRED: ClassVar[tuple[str, ...]] = ("config",)

    config: str | None = option(None, "job file (YAML/JSON); see capacity_search/README.md",
                                metavar="FILE")
    output_dir: str = option("capacity_search_output", "where results go", metavar="DIR")
    no_ray: bool = option(False, "search simulated deployments one by one here")
    ray_address: str | None = option(None, "spread simulated searches over this Ray cluster")


def configure(parser) -> None:
    add_options(parser, SearchCommandConfig)


def execute(ns) -> int:
    return run(check_required(apply_namespace(SearchCommandConfig(), ns)))


def _search_all(job: Job, out: Path, use_ray: bool, address: str | None) -> dict:
    results = {}
    simulated = [d for d in job.deployments if not d.live]
    if use_ray and len(simulated) > 1:
        import ray

        from etalon.client.pool import init_ray

        init_ray(address)
        task = ray.remote(num_cpus=1)(run_deployment)
        refs = {d.name: task.remote(job, d, out, False) for d in simulated}
        for name, ref in refs.items():
            results[name] = ray.get(ref)
            print(f"  {name}: done", flush=True)
    else:
        for d in simulated:
            results[d.name] = run_deployment(job, d, out)
    for d in job.deployments:
        if d.live:
            results[d.name] = run_deployment(job, d, out)
    return results


def run(args: SearchCommandConfig) -> int:
    job = load_job(args.config)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _search_all(job, out, not args.no_ray, args.ray_address)
    report = {"slo": job.slo.to_dict(), "num_requests": job.num_requests,
              "deployments": {name: r.to_dict() for name, r in results.items()}}
    (out / "capacity.json").write_text(json.dumps(report, indent=2, default=str))
    with open(out / "capacity.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["deployment", "qps", "passed", "reasons"])
        for name, r in results.items():
            for p in r.probes:
                w.writerow([name, p.qps, p.passed, "; ".join(p.observed["reasons"])])
    _plot(results, out / "capacity.png")
    print(f"\n{'deployment':<24} {'capacity (req/s)':>16}  note")
    for name, r in results.items():
        cap = f"{r.capacity_qps:.3f}" if r.capacity_qps is not None else "none"
        print(f"{name:<24} {cap:>16}  {r.note or ''}")
    print(f"{PROG}: results in {out}", file=sys.stderr)
    return 0


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3 + 0.3 * len(results)))
    for i, (name, r) in enumerate(results.items()):
        for p in r.probes:
            ax.scatter(p.qps, i, marker="o" if p.passed else "x", color="tab:green" if p.passed else "tab:red")
        if r.capacity_qps is not None:
            ax.scatter(r.capacity_qps, i, marker="|", s=400, color="black")
    ax.set_yticks(range(len(results)), list(results))
    ax.set_xscale("log")
    ax.set_xlabel("request rate (req/s): o pass, x fail, | capacity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    sys.exit(main())
