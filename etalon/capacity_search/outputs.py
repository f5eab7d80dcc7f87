"""A job's outputs: ``capacity.json``, one table over all configurations (CSV and console),
every probe in ``probes.csv``, and two plots: the SLO margin against the rate per
configuration (boundary and interval marked) and the capacity per configuration."""

from __future__ import annotations

import math
from pathlib import Path

from etalon.capacity_search.runner import ConfigResult
from etalon.report.files import write_csv, write_json

TABLE = ("configuration", "deployment", "kind", "workload", "slo", "load", "capacity_qps",
         "capacity_users", "interval_low", "interval_high", "boundary", "sharpness",
         "max_goodput_qps", "max_goodput_at", "probes_run", "probes_reused",
         "capacity_interval_low", "capacity_interval_high", "note")


def row(r: ConfigResult) -> dict:
    """One configuration's line. The interval, boundary and goodput's place are in the search's
    own unit: req/s for a rate search, users for a concurrency search (``load``), as is the
    ``capacity_interval`` over bootstrap/seed replicas (``etalon.capacity_search.intervals``)."""
    s = r.search or {}
    low, high = (s.get("interval") or (None, None))
    rep = r.extra.get("capacity_interval") or {}
    return {"configuration": r.config["name"], "deployment": r.config["deployment"],
            "kind": r.config["kind"], "workload": r.config["workload"], "slo": r.config["slo"],
            "load": r.config.get("load", "rate"), "capacity_qps": r.capacity_qps,
            "capacity_users": r.capacity_users, "interval_low": low, "interval_high": high,
            "boundary": s.get("boundary_qps"), "sharpness": s.get("sharpness"),
            "max_goodput_qps": (r.max_goodput or {}).get("goodput_qps"),
            "max_goodput_at": (r.max_goodput or {}).get("qps"),
            "probes_run": r.probes_run, "probes_reused": r.probes_reused,
            "capacity_interval_low": rep.get("low"), "capacity_interval_high": rep.get("high"),
            "note": r.error or s.get("note") or ""}


def best(results: list[ConfigResult]) -> ConfigResult | None:
    ok = [r for r in results if r.capacity_qps is not None and not r.error]
    return max(ok, key=lambda r: r.capacity_qps) if ok else None


def write_outputs(out: Path, header: dict, results: list[ConfigResult], plots: bool = True) -> dict:
    top = best(results)
    report = {**header, "best": top.config["name"] if top else None,
              "configurations": {r.config["name"]: r.to_dict() for r in results}}
    write_json(out / "capacity.json", report)
    write_csv(out / "capacity.csv", TABLE, ([row(r)[c] for c in TABLE] for r in results))
    write_csv(out / "probes.csv", ("configuration", "qps", "passed", "margin", "reasons", "output_dir"),
              ([r.config["name"], p["qps"], p["passed"], p["observed"].get("margin"),
                "; ".join(p["observed"].get("reasons", [])), p.get("output_dir")]
               for r in results for p in (r.search or {}).get("probes", [])))
    if plots:
        _plot_margins(results, out / "margins.png")
        _plot_capacity(results, out / "capacity.png")
    return report


def format_table(results: list[ConfigResult]) -> str:
    top = best(results)
    lines = [f"{'configuration':<32} {'capacity (req/s)':>16} {'users':>6} {'interval':>19} "
             f"{'probes':>9}  note"]
    for r in results:
        d = row(r)
        cap = f"{d['capacity_qps']:.3f}" if d["capacity_qps"] is not None else "none"
        users = str(d["capacity_users"]) if d["capacity_users"] is not None else "-"
        unit = " users" if d["load"] == "concurrency" else ""
        interval = (f"{d['interval_low']:.3g}–{d['interval_high']:.3g}{unit}"
                    if d["interval_low"] is not None and d["interval_high"] is not None else "-")
        probes = f"{d['probes_run']}+{d['probes_reused']}" if d["probes_reused"] else str(d["probes_run"])
        mark = " *" if r is top else ""
        lines.append(f"{d['configuration']:<32} {cap:>16} {users:>6} {interval:>19} {probes:>9}  "
                     f"{d['note']}{mark}")
    for r in results:
        rep = r.extra.get("capacity_interval")
        if rep and rep.get("low") is not None:
            lines.append(f"{r.config['name']}: capacity {rep['level']:.0%} interval "
                         f"{rep['low']:.3g}–{rep['high']:.3g} over {rep['replicas']} replicas "
                         f"varying {' + '.join(rep['sources'])}")
    if top is not None:
        lines.append("* the highest capacity; probes: run here + reused from an earlier run")
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_margins(results: list[ConfigResult], path: Path) -> None:
    """The SLO margin (<= 0: met) of every probe against its rate, one line per configuration."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, r in enumerate(results):
        s = r.search or {}
        pts = sorted((p["qps"], p["observed"].get("margin"), p["passed"]) for p in s.get("probes", []))
        pts = [(q, m, ok) for q, m, ok in pts if m is not None and math.isfinite(m)]
        if not pts:
            continue
        color = f"C{i % 10}"
        ax.plot([q for q, _, _ in pts], [m for _, m, _ in pts], "-", color=color, alpha=0.6,
                label=r.config["name"])
        for q, m, ok in pts:
            ax.plot(q, m, "o" if ok else "x", color=color)
        low, high = s.get("interval") or (None, None)
        if low is not None and high is not None:
            ax.axvspan(low, high, color=color, alpha=0.12)
        if s.get("capacity_qps") is not None:
            ax.axvline(s["capacity_qps"], color=color, linestyle=":")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("load: req/s, or users in a concurrency search; o pass, x fail; "
                  "shaded: capacity interval")
    ax.set_ylabel("SLO margin (log of worst value / target; <= 0 meets the SLO)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_capacity(results: list[ConfigResult], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 1.5 + 0.35 * len(results)))
    names = [r.config["name"] for r in results]
    for i, r in enumerate(results):
        d = row(r)
        if d["capacity_qps"] is None:
            ax.text(0, i, "  none" if not r.error else "  error", va="center", fontsize=8)
            continue
        ax.barh(i, d["capacity_qps"], color="tab:blue", alpha=0.7)
        if d["load"] == "rate" and d["interval_low"] is not None and d["interval_high"] is not None:
            ax.plot([d["interval_low"], d["interval_high"]], [i, i], color="black", linewidth=2)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("capacity (req/s; a concurrency search: the rate its users achieved); "
                  "black: interval")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
