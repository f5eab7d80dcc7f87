"""``python -m etalon.validate``: does the model predict the live run? Predicted vs measured.

Replays a live run's arrivals and lengths (its ``requests.jsonl``) through the simulator timed by
a fitted profile (and, optionally, by a roofline calibrated to the same profile), and reports
TTFT, TBT and E2E percentiles of both with their relative errors, as a table, CSV, JSON and plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from etalon.cli_errors import run_cli
from etalon.engine.config import add_engine_args
from etalon.metrics.latency import latency_series
from etalon.records import load_records

PROG = "etalon.validate"
METRICS = ("ttft", "tbt", "e2e_latency")
PERCENTILES = (50, 90, 99)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m etalon.validate", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--requests", required=True, help="a live run's requests.jsonl")
    p.add_argument("--profile", required=True, help="fitted profile (JSON) that times the simulator")
    p.add_argument("--roofline-model", default=None,
                   help="also simulate with a roofline of this model, its MFU/MBU fitted to the profile")
    p.add_argument("--roofline-hardware", default=None, help="hardware of that roofline")
    p.add_argument("--roofline-dtype", default=None, help="weight dtype of that roofline")
    p.add_argument("--output-dir", default="validation", help="where the comparison goes")
    add_engine_args(p)
    return p


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


def _simulate(args, out: Path, name: str, **timing) -> list:
    from etalon.simulate import simulate
    from etalon.simulator.config import SimConfig

    cfg = SimConfig(replay=args.requests, scheduler=args.scheduler, max_batch_size=args.max_batch_size,
                    max_batched_tokens=args.max_batched_tokens, chunk_size=args.chunk_size,
                    num_kv_blocks=args.num_kv_blocks, block_size=args.block_size,
                    batch_window=args.batch_window, output_dir=str(out / name), no_plots=True,
                    **timing).validate()
    simulate(cfg, quiet=True)
    return load_records(out / name / "requests.jsonl")


def validate(args) -> dict:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    live = [r for r in load_records(args.requests) if r.ok]
    if not live:
        raise ValueError(f"{args.requests}: no successful requests to compare with")
    measured = percentiles(live)
    models = {"profiled": _simulate(args, out, "profiled", profile=args.profile)}
    report: dict = {"requests": args.requests, "profile": args.profile, "num_requests": len(live),
                    "measured": measured, "models": {}}
    if args.roofline_model:
        from etalon.calibration.roofline_fit import fit_roofline
        from etalon.perf.roofline import RooflinePerfModel
        from etalon.profiles import load_profile

        if not args.roofline_hardware:
            raise ValueError("--roofline-model needs --roofline-hardware")
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
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "metric", "percentile", "measured_s", "predicted_s", "relative_error"])
        for name, rows in report["models"].items():
            for r in rows:
                w.writerow([name, r["metric"], r["percentile"], r["measured_s"], r["predicted_s"],
                            r["relative_error"]])


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: validate(args) and 0)


if __name__ == "__main__":
    sys.exit(main())
