"""``python -m etalon.simulate``: simulate a serving deployment under a workload.

It writes the same records (``requests.parquet`` + ``tokens.parquet``), ``requests.csv`` and
``summary.json`` as a live benchmark (plus the simulation's own section), so every metric, plot
and report reads a simulated run unchanged. The simulator has every record at the end, so it
writes the columns directly and no ``requests.jsonl`` stream.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from etalon.commands import entry_points, exit_process
from etalon.options import add_config_file_flag, add_options, config_from_args

# The simulator (and pandas with it) is imported where it is used, not here: the plot helper
# is a spawned process, which imports this module again before it draws (0.4 s of a core that
# the command's own threads want meanwhile).
if TYPE_CHECKING:
    from etalon.metrics.columns import RunColumns
    from etalon.report.plot_worker import PlotWorker
    from etalon.simulator.config import SimConfig

PROG = "etalon.simulate"
DESCRIPTION = "Simulate a serving deployment under a workload."
# streamed chunks up to which the CDF plots are handed to the plot helper before the summary
EARLY_CDF_CHUNKS = 1 << 24


def configure(parser) -> None:
    from etalon.simulator.config import SimConfig

    add_config_file_flag(parser, "; workload ones under 'workload:'")
    add_options(parser, SimConfig)


def execute(ns) -> int:
    from etalon.report.plot_worker import PlotWorker
    from etalon.simulator.config import SimConfig
    from etalon.ui.history import record_quietly

    cfg = config_from_args(SimConfig, ns, what="simulator config").validate()
    # started first, so that the helper imports matplotlib while the simulation runs
    with (PlotWorker() if cfg.outputs.no_plots else PlotWorker.start()) as plotter:
        summary = simulate(cfg, plotter=plotter)
    d, out = cfg.deployment, cfg.outputs
    # a timestamped subfolder's name is not known here; the history then keeps no folder
    folder = str(Path(out.output_dir).resolve()) if out.should_use_given_dir else None
    record_quietly("simulate", cfg.to_dict(), summary, prog=PROG,
                   label=f"{d.model} on {d.hardware}", result_dir=folder)
    return 0


def simulate(cfg: SimConfig, *, quiet: bool = False, report: bool | None = None,
             plotter: PlotWorker | None = None) -> dict:
    """Runs one simulation and writes its outputs; returns the summary.

    ``report``: write ``report.html`` (unless ``--no-report``); by default a run that prints
    (the command) does and a quiet one (a probe, a sweep's many simulations) does not.
    ``plotter``: draws the plots (in a helper process when the command started one); by
    default they are drawn in process."""
    from etalon.metrics.columns import RunColumns
    from etalon.metrics.summary import summarize
    from etalon.report.figures import STREAM_PLOTS
    from etalon.report.files import plot_specs, write_run_outputs
    from etalon.report.plot_worker import PlotWorker
    from etalon.simulator.deployment import build_simulation
    from etalon.simulator.results import simulation_summary, timeline_specs, write_timeline
    from etalon.workload.replay import requests_from_records
    from etalon.workload.schedule import build_requests

    requests = requests_from_records(cfg.replay) if cfg.replay else build_requests(cfg.workload)
    if cfg.duration is not None:
        requests = [r for r in requests if r.arrival_time < cfg.duration]
    sim = build_simulation(cfg)
    started = time.perf_counter()
    loop = cfg.workload.closed_loop()
    result = sim.run(requests, closed_loop=loop, sessions=cfg.workload.sessions())
    wall = time.perf_counter() - started
    del sim  # (its engines' state)
    out = cfg.outputs.prepare(fresh=("requests.jsonl", "requests.parquet", "tokens.parquet"))
    # The columns of the measured requests; where warm-up requests are written too, the files
    # are the whole table (read back by the report), not these columns.
    records, result.table = result.table, None
    warm = records.numbers("scheduled_at") < cfg.warm_up
    stored = records if warm.any() else None
    columns = RunColumns(records.select(~warm) if stored is not None else records)
    del records
    # the records' files are written on a second core while the summary is computed, and the
    # plots that need no summary are drawn meanwhile in the helper
    written = columns.table.write_in_background(out) if stored is None else None
    plotter = plotter or PlotWorker()
    if not cfg.outputs.no_plots:
        plotter.submit(timeline_specs(result), out / "plots")
        # the CDFs too where the token times are few: their samples and sorted copies, which
        # the summary reads after them, would otherwise sit beside the deadline walk's packing
        # of every token time (TBT alone: 700 MB more at 44 M tokens)
        early = STREAM_PLOTS if len(columns.chunk_times) > EARLY_CDF_CHUNKS else None
        plotter.submit(plot_specs(columns, plotter, early), out / "plots")
    summary = summarize(columns, ttft_deadline=cfg.deadlines.ttft_deadline,
                        tbt_deadline=cfg.deadlines.tbt_deadline,
                        closed_loop=(loop.users, loop.think_time_s) if loop else None)
    summary["simulation"] = {**simulation_summary(result), "wall_time_s": wall,
                             "num_requests": len(requests), "warm_up_s": cfg.warm_up}
    summary["server_metrics"] = _server_metrics(result, out)
    table = None
    if cfg.intervals.intervals:
        summary["intervals"], table = _intervals(cfg, requests, columns)
    held = columns if stored is None else None
    write_run_outputs(out, columns, summary, {"simulation": cfg.to_dict()},
                      plots=not cfg.outputs.no_plots, stored=stored, plotter=plotter,
                      written=written)
    write_timeline(result, out)
    del result, stored, columns
    if (not quiet if report is None else report) and not cfg.outputs.no_report:
        from etalon.report.html import write_run_report

        write_run_report(out, PROG, columns=held)
    del held
    plotter.finish()
    if not quiet:
        from etalon.report.console import print_summary

        print_summary(summary)
        if table:
            print(table)
        print(f"{PROG}: {len(requests)} requests simulated in {wall:.2f} s; results in {out}",
              file=sys.stderr)
    return summary


def _intervals(cfg: SimConfig, requests, measured: RunColumns) -> tuple[dict, str]:
    """The summary's ``intervals`` section (``etalon.simulator.intervals``) and its table."""
    from etalon.metrics.intervals import format_intervals, latency_percentiles
    from etalon.simulator.intervals import interval_section, simulate_replicas

    started = time.perf_counter()
    replicas = simulate_replicas(cfg, requests, cfg.intervals,
                                 workload=None if cfg.replay else cfg.workload)
    section, ivs = interval_section(latency_percentiles(measured), replicas, cfg.intervals)
    section["wall_time_s"] = time.perf_counter() - started
    title = f"intervals ({' + '.join(replicas.sources)})"
    notes = "".join(f"\n  not varied: {n}" for n in replicas.notes)
    return section, format_intervals(ivs, title) + notes


def _server_metrics(result, out) -> dict:
    """The engines' state under vLLM's /metrics names, as a live run's scrape has it
    (``server_metrics.parquet``), with the same summary section."""
    from etalon.metrics import server_series
    from etalon.simulator.results import SERIES_INTERVAL_S, server_series as simulated

    df = simulated(result, SERIES_INTERVAL_S)
    server_series.write(df, out)
    return {"source": "simulated", "interval_s": SERIES_INTERVAL_S, "available": True,
            **server_series.summarize_series(df)}


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
