"""``python -m etalon.sweep`` (``etalon sweep``): the load-latency curve of a server in one command.

Three kinds of run, each a full ``run_benchmark`` run in its own folder: a *synchronous* one
(one closed-loop user: the best latency the server gives, at the lowest useful rate), a
*throughput* one (many closed-loop users: the most requests per second it completes), then
``--sweep-rates`` open-loop runs at rates spaced evenly between those two. ``sweep.csv`` /
``sweep.json`` put every run's headline numbers side by side, ``sweep.png`` draws latency
against the achieved rate and ``report.html`` overlays the runs. The rates come from what the first two runs measured, so the sweep
fits the server without the user guessing its capacity.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from etalon.cli_errors import UserError
from etalon.commands import entry_points, exit_process
from etalon.options import add_config_file_flag, add_options, config_from_args, embed, option
from etalon.report.files import write_csv, write_json
from etalon.run_benchmark import BenchmarkConfig

PROG = "etalon.sweep"
DESCRIPTION = ("A load sweep of a live server: a synchronous run, a throughput run, then open-loop "
               "rates between them.")

#: sweep.csv's columns, read from each run's summary.json
COLUMNS = ("run", "kind", "target_qps", "achieved_qps", "requests_per_s", "output_tokens_per_s",
           "ttft_p50_s", "ttft_p90_s", "tbt_p50_s", "tbt_p90_s", "e2e_latency_p50_s",
           "e2e_latency_p90_s", "error_rate", "goodput_qps", "output_dir")


@dataclass
class SweepSettings:
    sweep_rates: int = option(4, "open-loop rates between the synchronous and the throughput "
                                 "run's rates (evenly spaced, ends excluded)")
    sweep_throughput_users: int = option(64, "closed-loop users of the throughput run (enough "
                                             "to keep the server saturated)")
    sweep_arrivals: str = option("poisson", "arrival process of the rate runs",
                                 choices=("poisson", "gamma"))

    def validate(self) -> None:
        if self.sweep_rates < 0:
            raise UserError(f"--sweep-rates must be >= 0, got {self.sweep_rates}")
        if self.sweep_throughput_users < 2:
            raise UserError(f"--sweep-throughput-users must be >= 2, got "
                            f"{self.sweep_throughput_users}")


@dataclass
class SweepConfig:
    """A benchmark's settings (every ``run_benchmark`` flag) and how to sweep its load."""

    benchmark: BenchmarkConfig = embed(BenchmarkConfig, exclude=("repeats",))
    sweep: SweepSettings = embed(SweepSettings, title="sweep")


def configure(parser) -> None:
    add_config_file_flag(parser, "; workload ones under 'workload:'")
    add_options(parser, SweepConfig)


def execute(ns) -> int:
    return run(config_from_args(SweepConfig, ns, what="sweep config"))


def _step(base: BenchmarkConfig, out: Path, name: str, workload: dict) -> BenchmarkConfig:
    cfg = copy.deepcopy(base)
    cfg.outputs.output_dir = str(out / name)
    cfg.outputs.should_use_given_dir = True
    cfg.outputs.no_report = True  # one report for the whole sweep, at the end
    w, provider = cfg.workload, workload["provider"]
    w.request_interval_generator_provider = provider
    w.interval_params[provider] = dataclasses.replace(w.interval_params[provider],
                                                      **workload["params"])
    return cfg


def plan_rates(low: float, high: float, k: int) -> list[float]:
    """``k`` rates evenly spaced strictly between ``low`` and ``high`` (req/s)."""
    if k == 0:
        return []
    if not high > low > 0:
        raise UserError(f"the throughput run's rate ({high:.3g} req/s) is not above the "
                        f"synchronous run's ({low:.3g} req/s): no rates to sweep between")
    return [low + (high - low) * i / (k + 1) for i in range(1, k + 1)]


def run(cfg: SweepConfig) -> int:
    from etalon import run_benchmark

    cfg.benchmark.validate()
    cfg.sweep.validate()
    out = cfg.benchmark.outputs.prepare()
    rows: list[dict] = []

    def one(name: str, kind: str, workload: dict, target: float | None) -> dict:
        step = _step(cfg.benchmark, out, name, workload)
        print(f"{PROG}: {name}", file=sys.stderr, flush=True)
        run_benchmark.run(step)
        summary = json.loads((Path(step.outputs.output_dir) / "summary.json").read_text())
        row = summary_row(name, kind, target, summary, step.outputs.output_dir)
        rows.append(row)
        write_csv(out / "sweep.csv", COLUMNS, ([r[c] for c in COLUMNS] for r in rows))
        return row

    sync = one("synchronous", "synchronous",
               {"provider": "closed_loop", "params": {"users": 1, "think_time_s": 0.0}}, None)
    users = cfg.sweep.sweep_throughput_users
    peak = one("throughput", "throughput",
               {"provider": "closed_loop", "params": {"users": users, "think_time_s": 0.0}}, None)
    rates = plan_rates(sync["achieved_qps"] or 0.0, peak["achieved_qps"] or 0.0,
                       cfg.sweep.sweep_rates)
    for i, qps in enumerate(rates, 1):
        one(f"rate_{i}", "rate", {"provider": cfg.sweep.sweep_arrivals, "params": {"qps": qps}}, qps)
    write_json(out / "sweep.json", {"runs": rows, "rates": rates})
    if not cfg.benchmark.outputs.no_plots:
        plot_sweep(rows, out / "sweep.png")
    if not cfg.benchmark.outputs.no_report:
        from etalon.report.html import write_run_report

        write_run_report(out, PROG, [r["output_dir"] for r in rows], title=f"sweep: {out.name}")
    print(format_sweep(rows))
    print(f"{PROG}: {len(rows)} runs; results in {out}", file=sys.stderr)
    return 0


def summary_row(name: str, kind: str, target: float | None, summary: dict, out_dir: str) -> dict:
    """One run's headline numbers. A closed loop's achieved rate is its users' (see
    ``load.closed_loop``), an open loop's is its send rate."""
    load = summary.get("load") or {}
    achieved = (load.get("closed_loop") or {}).get("achieved_qps") if load.get("closed_loop") \
        else load.get("achieved_qps")
    lat = summary.get("latency") or {}
    tput = summary.get("throughput") or {}

    def pct(metric: str, p: str) -> float | None:
        return (lat.get(metric) or {}).get(p)

    return {"run": name, "kind": kind, "target_qps": target, "achieved_qps": achieved,
            "requests_per_s": tput.get("requests_per_s"),
            "output_tokens_per_s": tput.get("output_tokens_per_s"),
            "ttft_p50_s": pct("ttft", "p50"), "ttft_p90_s": pct("ttft", "p90"),
            "tbt_p50_s": pct("tbt", "p50"), "tbt_p90_s": pct("tbt", "p90"),
            "e2e_latency_p50_s": pct("e2e_latency", "p50"),
            "e2e_latency_p90_s": pct("e2e_latency", "p90"),
            "error_rate": tput.get("error_rate"),
            "goodput_qps": (summary.get("goodput") or {}).get("goodput_qps"),
            "output_dir": out_dir}


def format_sweep(rows: list[dict]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1e3:.1f}"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3g}"

    lines = [f"{'run':<12} {'req/s':>8} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p90':>9} "
             f"{'TBT p90':>8} {'E2E p90':>8}  (ms)"]
    for r in rows:
        lines.append(f"{r['run']:<12} {num(r['achieved_qps']):>8} {num(r['output_tokens_per_s']):>8} "
                     f"{ms(r['ttft_p50_s']):>9} {ms(r['ttft_p90_s']):>9} {ms(r['tbt_p90_s']):>8} "
                     f"{ms(r['e2e_latency_p90_s']):>8}")
    return "\n".join(lines)


def plot_sweep(rows: list[dict], path: Path) -> None:
    """TTFT and TBT percentiles against the achieved rate, the sweep's runs in rate order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = sorted((r for r in rows if r["achieved_qps"] is not None), key=lambda r: r["achieved_qps"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = [r["achieved_qps"] for r in pts]
    for ax, metric, label in ((axes[0], "ttft", "TTFT"), (axes[1], "tbt", "TBT")):
        for p, style in (("p50", "o-"), ("p90", "s--")):
            y = [r[f"{metric}_{p}_s"] * 1e3 if r[f"{metric}_{p}_s"] is not None else float("nan")
                 for r in pts]
            ax.plot(x, y, style, label=f"{label} {p}")
        for r in pts:
            ax.annotate(r["run"], (r["achieved_qps"], 0), textcoords="offset points",
                        xytext=(0, 4), fontsize=6, rotation=90, xycoords=("data", "axes fraction"))
        ax.set_xlabel("achieved request rate (req/s)")
        ax.set_ylabel(f"{label} (ms)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
