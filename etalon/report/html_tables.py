"""The report's tables as static HTML (they read without the chart script): each run's
summary, the comparison against the first run, errors by type, a capacity search's tables.

Every text that comes from a file is escaped here; numbers come formatted from the summaries.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Sequence

from etalon.report.compare import ComparisonRow
from etalon.report.console import summary_view


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    """An HTML table; a cell is text (escaped) or ``(text, css class)``."""
    def cell(value: Any, tag: str) -> str:
        text, klass = value if isinstance(value, tuple) else (value, "")
        attr = f' class="{escape(klass)}"' if klass else ""
        return f"<{tag}{attr}>{escape(str(text))}</{tag}>"

    head = ("<thead><tr>" + "".join(cell(h, "th") for h in header) + "</tr></thead>"
            if any(header) else "")
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}>{head}<tbody>{body}</tbody></table>"


def number(value: float | None, fmt: str = "{:.4g}") -> str:
    return "-" if value is None else fmt.format(value)


def short_number(text: str) -> str:
    """A CSV cell as shown: a number with 4 significant digits, any other text as it is."""
    try:
        return f"{float(text):.4g}" if text.strip() and not text.strip().isdigit() else text
    except ValueError:
        return text


def run_summary(summary: dict) -> str:
    """The console's summary (latency percentiles, facts, warnings) as HTML, plus a
    simulation's own facts."""
    view = summary_view(summary)
    parts = [table(view.latency_header, view.latency_rows, "latency")]
    facts = list(view.facts) + simulation_facts(summary.get("simulation"))
    parts.append(table(("", ""), [(k, (v, "text")) for k, v in facts], "facts"))
    parts += [f'<div class="warning">{escape(w)}</div>' for w in view.warnings]
    return "\n".join(parts)


def simulation_facts(sim: dict | None) -> list[tuple[str, str]]:
    if not sim:
        return []
    facts = [("simulated makespan", f"{number(sim.get('makespan_s'), '{:.1f}')} s "
                                    f"({number(sim.get('wall_time_s'), '{:.2f}')} s wall)"),
             ("preemptions / rejected", f"{sim.get('preemptions', 0)} / {sim.get('rejected', 0)}")]
    for r in (sim.get("replicas") or [])[:8]:
        facts.append((f"replica {r.get('pool')} {r.get('replica_id')}",
                      f"utilization {number(r.get('utilization'), '{:.1%}')}, mean batch "
                      f"{number(r.get('mean_batch_size'), '{:.2f}')}, mean queue "
                      f"{number(r.get('mean_queue_length'), '{:.2f}')}, KV peak "
                      f"{number(r.get('kv_peak_fraction'), '{:.1%}')}"))
    return facts


def comparison(labels: Sequence[str], rows: Sequence[ComparisonRow]) -> str:
    """Values of every run, and each later run's difference relative to the first."""
    header = ["metric", *(f"{lab}" for lab in labels), *(f"Δ {lab}" for lab in labels[1:])]
    out = []
    for r in rows:
        unit = f" ({r.unit})" if r.unit and r.unit != "1/s" else ""
        rel = ["-" if d is None else f"{d:+.1%}" for d in r.relative[1:]]
        out.append([r.label + unit, *(number(v) for v in r.values), *rel])
    return table(header, out, "comparison")


def errors(labels: Sequence[str], summaries: Sequence[dict]) -> str:
    """Requests by outcome and errors by type, one column per run, with a bar per count."""
    counts = [s.get("counts") or {} for s in summaries]
    kinds = sorted({k for c in counts for k in (c.get("errors_by_type") or {})})
    rows = [(f"{name}", [c.get(key, 0) for c in counts]) for name, key in
            (("requests", "num_requests"), ("completed", "num_completed"), ("empty", "num_empty"),
             ("unfinished", "num_unfinished"), ("errors (all types)", "num_errors"))]
    rows += [(f"error: {k}", [(c.get("errors_by_type") or {}).get(k, 0) for c in counts])
             for k in kinds]
    top = max([1] + [v for _, vals in rows[4:] for v in vals])
    body = []
    for name, vals in rows:
        cells = []
        for v in vals:
            bar = (f'<span class="bar" style="width:{max(2, round(80 * v / top))}px"></span>'
                   if name.startswith("error") and v else "")
            cells.append(f"<td>{v}{bar}</td>")
        body.append(f"<tr><td>{escape(name)}</td>{''.join(cells)}</tr>")
    head = "".join(f"<th>{escape(h)}</th>" for h in ("", *labels))
    return f'<table class="errors"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def settings(config: dict) -> str:
    """A run's (already redacted) settings, folded away."""
    text = json.dumps(config, indent=2, sort_keys=True, default=str)
    return (f"<details><summary>settings (config.json, secrets removed)</summary>"
            f'<pre class="config">{escape(text)}</pre></details>')


def probe_history(conf: dict) -> str:
    """A configuration's probes in the order they ran."""
    probes = (conf.get("search") or {}).get("probes") or []
    rows = []
    for i, p in enumerate(probes, 1):
        observed = p.get("observed") or {}
        verdict = ("pass", "pass") if p.get("passed") else ("FAIL", "fail")
        rows.append([i, number(p.get("qps")), verdict, number(observed.get("margin"), "{:+.3f}"),
                     ("; ".join(observed.get("reasons") or []), "text"),
                     (str(p.get("output_dir") or ""), "text")])
    return table(("#", "req/s", "verdict", "margin", "reasons", "probe folder"), rows, "probes")


def search_facts(conf: dict) -> str:
    s = conf.get("search") or {}
    low, high = s.get("interval") or (None, None)
    facts = [("capacity", f"{number(s.get('capacity_qps'))} req/s"),
             ("interval", f"{number(low)} – {number(high)} req/s"),
             ("boundary (interpolated)", f"{number(s.get('boundary_qps'))} req/s"),
             ("sharpness", number(s.get("sharpness"))),
             ("deployment / workload / SLO", f"{conf.get('deployment')} / {conf.get('workload')} "
                                             f"/ {conf.get('slo')}")]
    if conf.get("error") or s.get("note"):
        facts.append(("note", str(conf.get("error") or s.get("note"))))
    return table(("", ""), [(k, (v, "text")) for k, v in facts], "facts")
