"""``python -m etalon.simulate``: simulate a serving deployment under a workload.

It writes the same ``requests.jsonl`` and ``summary.json`` as a live benchmark (plus the
simulation's own section), so every metric, plot and report reads a simulated run unchanged.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path

from etalon.cli_errors import run_cli
from etalon.records import RecordWriter
from etalon.simulator.config import (SIM_FIELDS, SimConfig, add_sim_args, config_from_mapping,
                                     load_config_file)
from etalon.workload.config import WorkloadConfig, add_workload_args

PROG = "etalon.simulate"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m etalon.simulate", description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None,
                   help="YAML/JSON file with any of the fields below (workload options under "
                        "'workload:'); flags given on the command line override it")
    add_sim_args(p)
    add_workload_args(p)
    return p


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> SimConfig:
    cfg = (config_from_mapping(load_config_file(args.config), where=args.config)
           if args.config else SimConfig())
    for f in SIM_FIELDS:
        if hasattr(args, f.name):
            setattr(cfg, f.name, getattr(args, f.name))
    for f in fields(WorkloadConfig):  # a workload flag overrides the file only when changed
        value = getattr(args, f.name)
        if value != parser.get_default(f.name):
            setattr(cfg.workload, f.name, value)
    return cfg.validate()


def simulate(cfg: SimConfig, *, quiet: bool = False) -> dict:
    """Runs one simulation and writes its outputs; returns the summary."""
    from etalon.metrics.summary import summarize
    from etalon.report.files import write_run_outputs
    from etalon.simulator.deployment import build_simulation
    from etalon.simulator.results import plot_timelines, simulation_summary
    from etalon.workload.replay import requests_from_records
    from etalon.workload.schedule import build_requests

    requests = requests_from_records(cfg.replay) if cfg.replay else build_requests(cfg.workload)
    if cfg.duration is not None:
        requests = [r for r in requests if r.arrival_time < cfg.duration]
    sim = build_simulation(cfg)
    started = time.perf_counter()
    result = sim.run(requests)
    wall = time.perf_counter() - started
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "requests.jsonl").unlink(missing_ok=True)
    with RecordWriter(out / "requests.jsonl") as writer:
        writer.write_all(result.records)
    measured = [r for r in result.records if r.scheduled_at >= cfg.warm_up]
    summary = summarize(measured, ttft_deadline=cfg.ttft_deadline, tbt_deadline=cfg.tbt_deadline)
    summary["simulation"] = {**simulation_summary(result), "wall_time_s": wall,
                             "num_requests": len(requests), "warm_up_s": cfg.warm_up}
    paths = write_run_outputs(out, measured, summary, {"simulation": cfg.to_dict()},
                              plots=not cfg.no_plots)
    if not cfg.no_plots:
        paths.update(plot_timelines(result, out))
    if not quiet:
        from etalon.report.console import print_summary

        print_summary(summary)
        print(f"{PROG}: {len(requests)} requests simulated in {wall:.2f} s; results in {out}",
              file=sys.stderr)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_cli(PROG, lambda: simulate(config_from_args(args, parser)) and 0)


if __name__ == "__main__":
    sys.exit(main())
