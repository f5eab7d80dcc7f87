"""``python -m etalon.capacity_search --config JOB.yaml`` (``etalon search``): expand the job
into configurations, find each one's capacity under its SLO, and write one table over all.

Outputs (see capacity_search/README.md): ``capacity.json``, ``capacity.csv``, ``probes.csv``,
``margins.png``, ``capacity.png``, and per configuration its folder (probes, ledger, server
log). Rerunning the same command resumes: finished probes are reused, not run again.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from etalon.capacity_search.jobs import load_job
from etalon.capacity_search.outputs import format_table, write_outputs
from etalon.capacity_search.runner import run_all
from etalon.commands import entry_points, exit_process
from etalon.options import add_options, apply_namespace, check_required, option

PROG = "etalon.capacity_search"
DESCRIPTION = ("Capacity search: the highest request rate each configuration of a job takes "
               "within its SLO, live or simulated.")


@dataclass
class SearchCommandConfig:
    REQUIRED: ClassVar[tuple[str, ...]] = ("config",)

    config: str | None = option(None, "job file (YAML/JSON); see capacity_search/README.md",
                                metavar="FILE")
    output_dir: str = option("capacity_search_output", "where results go; rerunning into the "
                                                       "same folder resumes", metavar="DIR")
    simulate: bool = option(False, "replace every live deployment by its simulated twin")
    no_ray: bool = option(False, "run the configurations one by one in this process")
    ray_address: str | None = option(None, "run the configurations on this Ray cluster (without "
                                           "it: simulated ones in local processes, live ones "
                                           "on a local Ray instance)")
    no_plots: bool = option(False, "skip margins.png and capacity.png")
    no_report: bool = option(False, "skip report.html (the job's HTML report; probes never "
                                    "write their own)")
    wandb_project: str | None = option(None, "log every probe to this W&B project (one run per "
                                             "probe, grouped by configuration)")


def configure(parser) -> None:
    add_options(parser, SearchCommandConfig)


def execute(ns) -> int:
    return run(check_required(apply_namespace(SearchCommandConfig(), ns)))


def run(args: SearchCommandConfig) -> int:
    job = load_job(args.config)
    configs = job.configurations(simulate=args.simulate)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{PROG}: {len(configs)} configuration(s) -> {out}", file=sys.stderr)
    results = run_all(job, configs, out, not args.no_ray, args.ray_address)
    header = {"job": str(args.config), "simulate": args.simulate, "num_requests": job.num_requests,
              "search": asdict(job.search), "slos": {n: s.to_dict() for n, s in job.slos.items()}}
    report = write_outputs(out, header, results, plots=not args.no_plots)
    if not args.no_report:
        from etalon.report.html import write_run_report

        write_run_report(out, PROG)
    if args.wandb_project:
        from etalon.report.wandb_logger import log_capacity_job

        log_capacity_job(args.wandb_project, report)
    print()
    print(format_table(results))
    print(f"{PROG}: results in {out}", file=sys.stderr)
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"{PROG}: error: {r.error}", file=sys.stderr)
    return 1 if failed else 0


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
