"""A human summary of a run for the terminal: latency percentiles, rates, lengths, deadlines and
warnings (the generator fell behind; outputs shorter than requested).

The content is built once (:func:`summary_view`) and rendered with rich when it is installed,
as plain aligned text otherwise (and by :func:`format_summary`, for logs and tests).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

# (summary latency key, label) of the percentile table rows.
LATENCY_ROWS: tuple[tuple[str, str], ...] = (
    ("ttft", "TTFT"),
    ("ttft_from_schedule", "TTFT from schedule"),
    ("tbt", "TBT (per token)"),
    ("tpot", "TPOT"),
    ("e2e_latency", "E2E latency"),
    ("e2e_latency_from_schedule", "E2E from schedule"),
    ("dispatch_lag", "Dispatch lag"),
)
PERCENTILE_COLUMNS = ("p50", "p90", "p99")


@dataclass
class SummaryView:
    """What the console shows: a percentile table (ms), labelled facts and the run's warnings."""

    latency_header: tuple[str, ...] = ("metric (ms)", *PERCENTILE_COLUMNS, "count")
    latency_rows: list[tuple[str, ...]] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _num(value: Any, fmt: str = "{:.3g}", scale: float = 1.0) -> str:
    return "-" if value is None else fmt.format(value * scale)


def summary_view(summary: dict) -> SummaryView:
    """Picks the headline numbers out of a :func:`etalon.metrics.summary.summarize` dict."""
    view = SummaryView()
    latency = summary.get("latency", {})
    for key, label in LATENCY_ROWS:
        dist = latency.get(key) or {}
        view.latency_rows.append(
            (label, *(_num(dist.get(p), "{:.1f}", 1e3) for p in PERCENTILE_COLUMNS),
             str(dist.get("count", 0)))
        )
    counts = summary.get("counts", {})
    tput = summary.get("throughput", {})
    load = summary.get("load", {})
    view.facts += [
        ("requests", f"{counts.get('num_completed', 0)} completed / "
                     f"{counts.get('num_requests', 0)} total, {counts.get('num_empty', 0)} empty, "
                     f"{counts.get('num_errors', 0)} errors"),
        ("error rate", _num(tput.get("error_rate"), "{:.2%}")),
        ("output tokens/s", _num(tput.get("output_tokens_per_s"), "{:.1f}")),
        ("total tokens/s", _num(tput.get("total_tokens_per_s"), "{:.1f}")),
        ("requests/s", _num(tput.get("requests_per_s"), "{:.3f}")),
        ("achieved / target req/s", f"{_num(load.get('achieved_qps'))} / "
                                    f"{_num(load.get('target_qps'))}"),
    ]
    loop = load.get("closed_loop")
    if loop:
        view.facts.append(("closed loop", f"{loop['users']} users, think {loop['think_time_s']:g} s: "
                                          f"{_num(loop.get('achieved_qps'))} req/s achieved, "
                                          f"{_num(loop.get('littles_law_qps'))} by Little's law"))
    sessions = summary.get("sessions")
    if sessions:
        first, later = sessions["first_turn"], sessions["later_turns"]
        view.facts.append(("sessions", f"{sessions['sessions']} ({sessions['completed_sessions']} "
                                       f"completed); TTFT p50 first turn "
                                       f"{_num(first['ttft'].get('p50'), '{:.1f}', 1e3)} ms, later "
                                       f"turns {_num(later['ttft'].get('p50'), '{:.1f}', 1e3)} ms"))
    if counts.get("errors_by_type"):
        view.facts.append(("errors by type", ", ".join(
            f"{k}: {v}" for k, v in counts["errors_by_type"].items())))
    view.facts += _length_facts(summary)
    view.facts += _deadline_facts(summary)
    view.warnings = list(summary.get("warnings") or [])
    if load.get("fell_behind") and not any("FELL BEHIND" in w for w in view.warnings):
        view.warnings.append(load.get("warning") or "LOAD GENERATOR FELL BEHIND")
    return view


def _counts(counter: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.items()) or "-"


def _length_facts(summary: dict) -> list[tuple[str, str]]:
    """Requested vs delivered output, how requests finished, where token counts came from."""
    counts = summary.get("counts", {})
    out = (summary.get("lengths") or {}).get("output") or {}
    prompt = (summary.get("lengths") or {}).get("prompt") or {}
    facts = []
    if out.get("num_checked"):
        facts.append(("output tokens delivered", (
            f"{out['delivered_tokens']} of {out['requested_tokens']} requested "
            f"({_num(out.get('delivered_fraction'), '{:.1%}')}); {out['num_short']} requests "
            f"short, {out['num_empty']} empty")))
    if counts.get("finish_reasons"):
        sources = counts.get("finish_reason_sources") or {}
        inferred = sources.get("inferred", 0)
        note = f" ({inferred} inferred: the server sent none)" if inferred else ""
        facts.append(("finish reasons", _counts(counts["finish_reasons"]) + note))
    if prompt.get("count_sources") or out.get("count_sources"):
        facts.append(("token counts from", f"prompt: {_counts(prompt.get('count_sources') or {})}"
                                           f"; output: {_counts(out.get('count_sources') or {})}"))
    return facts


def _deadline_facts(summary: dict) -> list[tuple[str, str]]:
    dl = summary.get("deadlines") or {}
    facts = []
    if dl.get("tbt_deadline_s") is not None:
        fluidity = dl.get("fluidity_index") or {}
        facts += [
            ("deadline miss rate (mean)", _num(dl.get("mean_miss_rate"), "{:.2%}")),
            ("fluidity index p50 / min", f"{_num(fluidity.get('p50'))} / "
                                         f"{_num(fluidity.get('min'))}"),
        ]
    fluid = dl.get("fluid_token_rate") or {}
    if fluid:
        value = _num(fluid.get("tokens_per_s"), "{:.1f} tokens/s per request")
        facts.append(("fluid token rate", value if fluid.get("tokens_per_s") is not None
                      else f"- ({fluid.get('note')})"))
    good = summary.get("goodput")
    if good:
        facts.append(("goodput", f"{_num(good.get('requests_per_s'), '{:.3f}')} req/s "
                                 f"({_num(good.get('fraction'), '{:.1%}')} of requests)"))
    return facts


def format_summary(summary: dict) -> str:
    """The summary as plain aligned text."""
    view = summary_view(summary)
    table = [view.latency_header, *view.latency_rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(view.latency_header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in table]
    label_w = max((len(k) for k, _ in view.facts), default=0)
    lines += [""] + [f"{k.ljust(label_w)}  {v}" for k, v in view.facts]
    if view.warnings:
        lines += [""] + [f"WARNING: {w}" for w in view.warnings]
    return "\n".join(lines)


def print_summary(summary: dict, *, file: TextIO | None = None) -> None:
    """Prints the summary with rich tables and a red line per warning."""
    stream = file or sys.stdout
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(format_summary(summary), file=stream)
        return
    view = summary_view(summary)
    console = Console(file=stream)
    table = Table(title="Latency", title_justify="left")
    for i, name in enumerate(view.latency_header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in view.latency_rows:
        table.add_row(*row)
    facts = Table(show_header=False, box=None)
    facts.add_column(style="bold")
    facts.add_column()
    for key, value in view.facts:
        facts.add_row(key, value)
    console.print(table)
    console.print(facts)
    for warning in view.warnings:
        console.print(f"WARNING: {warning}", style="bold red", markup=False)
