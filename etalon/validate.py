"""``python -m etalon.validate``: does the model predict the live run? Predicted vs measured.

Replays a live run's arrivals and lengths (its ``requests.jsonl``) through the simulator timed by
a fitted profile (and, optionally, by a roofline calibrated to the same profile), and reports
TTFT, TBT and E2E percentiles of both with their relative errors, as a table, CSV, JSON and plot.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np

from etalon.cli_errors import UserError
from etalon.commands import entry_points
from etalon.engine.config import EngineConfig
from etalon.metrics.latency import latency_series
from etalon.options import add_options, apply_namespace, check_required, embed, option
from etalon.record_table import read_records
from etalon.report.files import write_csv

PROG = "etalon.validate"
DESCRIPTION = "Does the model predict the live run? Predicted vs measured."
METRICS = ("ttft", "tbt", "e2e_latency")
PERCENTILES = (50, 90, 99)


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

    def validate(self) -> ValidateConfig:
        check_required(self)
        if self.roofline_model and not self.roofline_hardware:
            raise UserError("--roofline-model needs --roofline-hardware")
        self.engine.validate()
        return self


def configure(parser) -> None:
    add_options(parser, ValidateConfig)


def execute(ns) -> int:
    validate(apply_namespace(ValidateConfig(), ns).validate())
    return 0


def percentiles(records) -> dict[str, dict[int, float | None]]:
    series = latency_series(records)
    out = {}
    for m in METRICS:
        values = series[m].values
        out[m] = {q: (float(np.percentile(values, q)) if len(values) else None) for q in PERCENTILES}
    return out


def compare(measured: dict, predicted: dict) -> list[dict]:
    rows = []
    for m in METRICS:
        for q in PERCENTILES:
            meas, pred = measured[m][q], predicted[m][q]
            err = (pred - meas) / meas if meas and pred is not None else None
            rows.append({"metric": m, "percentile": q, "measured_s": meas, "predicted_s": pred,
                         "relative_error": err})
    return rows


def _simulate(args: ValidateConfig, out: Path, name: str, **timing) -> list:
    from etalon.perf.config import PerfModelConfig
    from etalon.report.outputs import OutputConfig
    from etalon.simulate import simulate
    from etalon.simulator.config import SimConfig

    cfg = SimConfig(replay=args.requests, engine=args.engine, perf=PerfModelConfig(**timing),
                    outputs=OutputConfig(output_dir=str(out / name), no_plots=True)).validate()
    simulate(cfg, quiet=True)
    return read_records(out / name)


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
        report["models"][name] = compare(measured, percentiles(records))
    (out / "validation.json").write_text(json.dumps(report, indent=2, default=str))
    _write_csv(out / "validation.csv", report)
    _plot(live, models, out / "validation.png")
    print(format_table(report))
    return report


def format_table(report: dict) -> str:
    lines = [f"{'model':<10} {'metric':<12} {'pct':>4} {'measured ms':>12} {'predicted ms':>13} {'error':>8}"]
    for name, rows in report["models"].items():
        for row in rows:
            meas, pred, err = row["measured_s"], row["predicted_s"], row["relative_error"]
            lines.append(f"{name:<10} {row['metric']:<12} p{row['percentile']:<3} "
                         f"{(meas or 0) * 1e3:>12.1f} {(pred or 0) * 1e3:>13.1f} "
                         f"{(f'{err:+.1%}' if err is not None else 'n/a'):>8}")
    return "\n".join(lines)


def _write_csv(path: Path, report: dict) -> None:
    write_csv(path, ["model", "metric", "percentile", "measured_s", "predicted_s", "relative_error"],
              ([name, r["metric"], r["percentile"], r["measured_s"], r["predicted_s"], r["relative_error"]]
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
    sys.exit(main())
