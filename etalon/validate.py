"""``python -m etalon.validate``: does the model predict the live run? Predicted vs measured.

Replays a live run's arrivals and lengths (its ``requests.jsonl``) through the simulator timed by
a fitted profile (and, optionally, by a roofline calibrated to the same profile), and reports
TTFT, TBT and E2E percentiles of both with their relative errors, as a table, CSV, JSON and plot.

With ``--intervals N`` the profiled prediction gets an interval per percentile from N replicas
(``etalon.simulator.intervals``): bootstrap refits of the profile, each replaying the run, and
— when the run's ``config.json`` holds its workload — that workload drawn again with seeds
``seed + 1 .. seed + N``, so the interval is one for a run of the workload, as the measured run
is. Each row then says whether the measured value is ``inside`` its interval, and the report
gives the ``coverage``: the fraction of rows inside.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import ClassVar
from pathlib import Path

import numpy as np

from etalon.cli_errors import UserError
from etalon.commands import entry_points, exit_process
from etalon.engine.config import EngineConfig
from etalon.engine.gauges import KV_USAGE, RUNNING, WAITING
from etalon.metrics.intervals import (
    METRICS,
    PERCENTILES,
    IntervalConfig,
    coverage,
    latency_percentiles,
)
from etalon.metrics.latency import latency_series
from etalon.options import add_options, apply_namespace, check_required, embed, option
from etalon.record_table import read_records
from etalon.report.files import write_csv

PROG = "etalon.validate"
DESCRIPTION = "Does the model predict the live run? Predicted vs measured."


@dataclass
class ValidateConfig:
    REQUIRED: ClassVar[tuple[str, ...]] = ("requests", "profile")

    requests: str | None = option(None, "a live run's records: its directory, requests.jsonl or "
                                         "requests.parquet", metavar="PATH")
    profile: str | None = option(None, "fitted profile (JSON) that times the simulator",
                                 metavar="FILE")
    roofline_model: str | None = option(None, "also simulate with a roofline of this model, its "
                                              "MFU/MBU fitted to the profile")
    roofline_hardware: str | None = option(None, "hardware of that roofline")
    roofline_dtype: str | None = option(None, "weight dtype of that roofline")
    output_dir: str = option("validation", "where the comparison goes", metavar="DIR")
    engine: EngineConfig = embed(EngineConfig, title="engine (the live server's settings)")
    intervals: IntervalConfig = embed(IntervalConfig, title="intervals (error bars)")

    def validate(self) -> ValidateConfig:
        check_required(self)
        if self.roofline_model and not self.roofline_hardware:
            raise UserError("--roofline-model needs --roofline-hardware")
        self.engine.validate()
        self.intervals.validate()
        return self


def configure(parser) -> None:
    add_options(parser, ValidateConfig)


def execute(ns) -> int:
    validate(apply_namespace(ValidateConfig(), ns).validate())
    return 0


percentiles = latency_percentiles


def compare(measured: dict, predicted: dict, intervals: dict | None = None) -> list[dict]:
    """One row per metric and percentile; with ``intervals`` (``percentile_intervals``) each row
    also has the interval and whether the measured value is ``inside`` it."""
    rows = []
    for m in METRICS:
        for q in PERCENTILES:
            meas, pred = measured[m][q], predicted[m][q]
            err = (pred - meas) / meas if meas and pred is not None else None
            row = {"metric": m, "percentile": q, "measured_s": meas, "predicted_s": pred,
                   "relative_error": err}
            if intervals is not None:
                iv = intervals[m][q]
                row.update(interval_low_s=iv.low if iv else None,
                           interval_high_s=iv.high if iv else None,
                           inside=iv.contains(meas) if iv else None)
            rows.append(row)
    return rows


def _sim_config(args: ValidateConfig, out: Path, name: str, **timing):
    from etalon.perf.config import PerfModelConfig
    from etalon.report.outputs import OutputConfig
    from etalon.simulator.config import SimConfig

    return SimConfig(replay=args.requests, engine=args.engine, perf=PerfModelConfig(**timing),
                     outputs=OutputConfig(output_dir=str(out / name), no_plots=True)).validate()


def _simulate(args: ValidateConfig, out: Path, name: str, **timing) -> list:
    from etalon.simulate import simulate

    simulate(_sim_config(args, out, name, **timing), quiet=True)
    return read_records(out / name)


def live_workload(requests: str):
    """The workload a live run was drawn from (its ``config.json``), or None when the run's
    folder has none (a bare requests file, a trace replay's records)."""
    from etalon.options import from_mapping
    from etalon.workload.config import WorkloadConfig

    path = Path(requests)
    config = (path if path.is_dir() else path.parent) / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{config}: cannot read the run's settings ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("workload"), dict):
        return None
    return from_mapping(WorkloadConfig, data["workload"], f"{config}: workload").validate()


def _intervals(args: ValidateConfig, out: Path, point: dict) -> tuple[dict, dict]:
    """The profiled prediction's replicas and intervals (``etalon.simulator.intervals``)."""
    from etalon.simulator.intervals import interval_section, simulate_replicas
    from etalon.workload.replay import requests_from_records

    settings = args.intervals
    workload, why = None, "the run's folder has no config.json with its workload"
    if "workload" in settings.wanted:
        try:
            workload = live_workload(args.requests)
        except UserError as exc:  # e.g. a trace file named relative to where the run ran
            why = f"the run's workload cannot be drawn again here ({exc})"
    cfg = _sim_config(args, out, "profiled", profile=args.profile)
    if "workload" in settings.wanted and workload is None and settings.interval_sources == "both":
        settings = replace(settings, interval_sources="fit")
    replicas = simulate_replicas(cfg, requests_from_records(args.requests), settings,
                                 workload=workload)
    if "workload" in args.intervals.wanted and workload is None:
        replicas.notes.append(f"workload: {why}")
    return interval_section(point, replicas, settings)


def validate(args: ValidateConfig) -> dict:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    live = [r for r in read_records(args.requests) if r.ok]
    if not live:
        raise UserError(f"{args.requests}: no successful requests to compare with")
    measured = percentiles(live)
    models = {"profiled": _simulate(args, out, "profiled", profile=args.profile)}
    report: dict = {"requests": args.requests, "profile": args.profile, "num_requests": len(live),
                    "measured": measured, "models": {}}
    if args.roofline_model:
        from etalon.calibration.roofline_fit import fit_roofline
        from etalon.perf.roofline import RooflinePerfModel
        from etalon.profiles import load_profile

        base = RooflinePerfModel(args.roofline_model, args.roofline_hardware, dtype=args.roofline_dtype)
        fit = fit_roofline(base, load_profile(args.profile))
        spec_path = out / "roofline_fitted.json"
        spec_path.write_text(json.dumps({"kind": "roofline", **fit.model.describe()}, indent=2))
        report["roofline_fit"] = fit.to_dict()
        models["roofline"] = _simulate(args, out, "roofline", perf_model_file=str(spec_path))
    for name, records in models.items():
        predicted = percentiles(records)
        if name == "profiled" and args.intervals.intervals:
            report["intervals"], ivs = _intervals(args, out, predicted)
            report["models"][name] = compare(measured, predicted, ivs)
            report["intervals"]["coverage"] = coverage(r["inside"] for r in report["models"][name])
        else:
            report["models"][name] = compare(measured, predicted)
    report["server_state"] = server_state(Path(args.requests), {n: out / n for n in models})
    (out / "validation.json").write_text(json.dumps(report, indent=2, default=str))
    _write_csv(out / "validation.csv", report)
    _plot(live, models, out / "validation.png")
    print(format_table(report))
    return report


STATE_GAUGES = (RUNNING, WAITING, KV_USAGE)


def server_state(requests: Path, sim_dirs: dict[str, Path]) -> dict | None:
    """The engine's internal state, measured against predicted: the mean of each gauge the live
    run scraped from the server's ``/metrics`` (batch, queue, KV use) beside the same series of
    each simulation, and the prefix-cache hit rate in percentage points. None when the live
    run has no scrape (a server without ``/metrics``, scraping off, an old run)."""
    live_dir = requests if requests.is_dir() else requests.parent
    measured = _server_metrics_of(live_dir)
    if not measured:
        return None
    out: dict = {}
    for name, sim_dir in sim_dirs.items():
        predicted = _server_metrics_of(sim_dir) or {}
        rows = []
        for gauge in STATE_GAUGES:
            m = (measured.get("gauges") or {}).get(gauge)
            p = (predicted.get("gauges") or {}).get(gauge)
            if m is None or p is None:
                continue
            diff = p["mean"] - m["mean"]
            rows.append({"series": gauge, "measured_mean": m["mean"], "predicted_mean": p["mean"],
                         "difference": diff,
                         "relative_error": diff / m["mean"] if m["mean"] else None})
        hit_m, hit_p = measured.get("prefix_cache_hit_rate"), predicted.get("prefix_cache_hit_rate")
        if hit_m is not None and hit_p is not None:
            rows.append({"series": "prefix_cache_hit_rate", "measured_mean": hit_m,
                         "predicted_mean": hit_p, "difference": hit_p - hit_m,
                         "relative_error": None})
        out[name] = rows
    return out


def _server_metrics_of(run_dir: Path) -> dict | None:
    """A run's ``summary.json`` section on its server's metrics, when it has a scrape."""
    path = run_dir / "summary.json"
    try:
        section = json.loads(path.read_text()).get("server_metrics") if path.is_file() else None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read the run's summary ({exc})") from None
    return section if isinstance(section, dict) and section.get("available") else None


def format_table(report: dict) -> str:
    intervals = report.get("intervals")
    head = f"{'model':<10} {'metric':<12} {'pct':>4} {'measured ms':>12} {'predicted ms':>13} {'error':>8}"
    if intervals:
        head += f" {'interval ms':>22} {'in':>3}"
    lines = [head]
    for name, rows in report["models"].items():
        for row in rows:
            meas, pred, err = row["measured_s"], row["predicted_s"], row["relative_error"]
            line = (f"{name:<10} {row['metric']:<12} p{row['percentile']:<3} "
                    f"{(meas or 0) * 1e3:>12.1f} {(pred or 0) * 1e3:>13.1f} "
                    f"{(f'{err:+.1%}' if err is not None else 'n/a'):>8}")
            if row.get("interval_low_s") is not None:
                span = f"[{row['interval_low_s'] * 1e3:.1f}, {row['interval_high_s'] * 1e3:.1f}]"
                line += f" {span:>22} {('yes' if row['inside'] else 'no'):>3}"
            lines.append(line)
    if intervals:
        cov = intervals["coverage"]
        level = _claimed_level(intervals)
        frac = f"{cov['fraction']:.0%}" if cov["fraction"] is not None else "n/a"
        lines.append(f"coverage: {cov['inside']} of {cov['checked']} measured values inside "
                     f"their interval ({frac}; the intervals claim {level}) over "
                     f"{intervals['replicas']} replicas varying {' + '.join(intervals['sources'])}")
        lines += [f"  not varied: {n}" for n in intervals["notes"]]
    for name, rows in (report.get("server_state") or {}).items():
        if rows:
            lines.append(f"server state ({name}; the server's /metrics against the simulated "
                         f"engine's, means over the run):")
        for row in rows:
            if row["series"] == "prefix_cache_hit_rate":
                lines.append(f"  {'prefix-cache hit rate':<30} {row['measured_mean']:>9.1%} "
                             f"{row['predicted_mean']:>9.1%} {row['difference'] * 100:>+8.1f} pt")
            else:
                err = row["relative_error"]
                lines.append(f"  {row['series']:<30} {row['measured_mean']:>9.3f} "
                             f"{row['predicted_mean']:>9.3f} "
                             f"{(f'{err:+.1%}' if err is not None else 'n/a'):>8}")
    return "\n".join(lines)


def _claimed_level(intervals: dict) -> str:
    levels = {iv["level"] for per in intervals["metrics"].values() for iv in per.values() if iv}
    return "/".join(f"{v:.0%}" for v in sorted(levels)) or "n/a"


CSV_COLUMNS = ["model", "metric", "percentile", "measured_s", "predicted_s", "relative_error",
               "interval_low_s", "interval_high_s", "inside"]


def _write_csv(path: Path, report: dict) -> None:
    """One row per model, metric and percentile; the interval columns only with intervals."""
    columns = CSV_COLUMNS if report.get("intervals") else CSV_COLUMNS[:6]
    write_csv(path, columns, ([name, *(r.get(k) for k in columns[1:])]
                              for name, rows in report["models"].items() for r in rows))


def _plot(live, models: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(12, 3.5))
    sources = {"measured": latency_series(live), **{k: latency_series(v) for k, v in models.items()}}
    for ax, m in zip(axes, METRICS):
        for label, series in sources.items():
            v = np.sort(series[m].values)
            if len(v):
                ax.plot(v * 1e3, np.arange(1, len(v) + 1) / len(v), label=label)
        ax.set_xlabel(f"{m} (ms)")
        ax.set_ylabel("CDF")
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
