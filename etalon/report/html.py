"""One self-contained HTML report of run folders (overlaid and compared) and capacity-search
folders: static tables, the chart data as inline JSON and a small inline SVG chart script
(``html_assets/``). Nothing is fetched, so the file opens offline, anywhere, later.

Charts draw at most a few thousand points per series (see :mod:`etalon.report.downsample`), so
a 10k-request run's report stays a few hundred kilobytes.
"""

from __future__ import annotations

import json
import re
import sys
import time
from html import escape
from importlib import resources
from pathlib import Path
from typing import Sequence

from etalon.cli_errors import UserError
from etalon.metrics.columns import RunColumns
from etalon.report import html_tables as tables
from etalon.report.capacity_view import OVERVIEW, capacity_charts
from etalon.report.charts import Chart
from etalon.report.compare import compare
from etalon.report.files import json_safe
from etalon.report.redact import redact
from etalon.report.run_dir import CapacityDir, RunDir, load
from etalon.report.run_view import RunCharts, build_charts

REPORT_FILE = "report.html"
DATA_ID = "etalon-data"


def _asset(name: str) -> str:
    return resources.files("etalon.report").joinpath("html_assets", name).read_text(encoding="utf-8")


def labels_of(paths: Sequence[Path]) -> list[str]:
    """Short unique names: the folder name, with its parents where two would clash."""
    parts = [p.resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{n} #{i + 1}" for i, n in enumerate(names)]


def chart_figure(chart: Chart) -> str:
    toggle = '<button class="logx" type="button">log x</button>' if chart.log_toggle else ""
    note = f'<div class="note">{escape(chart.note)}</div>' if chart.note else ""
    return (f'<figure class="chart" id="chart-{escape(chart.id)}"><figcaption>'
            f"{escape(chart.title)}</figcaption>{toggle}<div class=\"plot\"></div>"
            f'<div class="legend"></div><div class="tip"></div>{note}</figure>')


def runs_section(runs: list[RunDir], labels: list[str],
                 columns: dict[Path, RunColumns] | None = None) -> tuple[str, list[Chart], dict]:
    """HTML, charts and data of the runs, overlaid (``columns``: runs' columns by resolved
    folder, where the caller holds them with their latency series computed)."""
    held = columns or {}
    views = [RunCharts(lab, r, held[r.path.resolve()]) if r.path.resolve() in held
             else RunCharts.of(lab, r) for lab, r in zip(labels, runs)]
    charts = build_charts(views)
    summaries = [r.summary for r in runs]
    rows = compare(summaries)
    html = []
    if len(runs) > 1:
        html += [f"<h2>Comparison: every run against {escape(labels[0])}</h2>",
                 '<p class="note">Δ = (run − first run) / first run, from each summary.json. '
                 "With a simulation and a live run of the same workload this is predicted vs "
                 "measured.</p>", tables.comparison(labels, rows)]
    for lab, run in zip(labels, runs):
        kind = "simulated" if run.simulated else "live"
        opened = " open" if len(runs) == 1 else ""
        html += [f"<details class=\"summary\"{opened}><summary><h2>Summary: {escape(lab)} "
                 f"({kind})</h2></summary>", f'<p class="meta">{escape(str(run.path))}</p>',
                 tables.run_summary(run.summary), tables.settings(run.config), "</details>"]
    html += ["<h2>Requests and errors</h2>", tables.errors(labels, summaries)]
    by_id = {c.id: c for c in charts}
    groups = (("Latency distributions", [c for c in by_id if c.startswith("cdf_")]),
              ("Prompt length", ["ttft_vs_prompt"]),
              ("Over time", ["throughput", "completions", "in_flight"]),
              ("Deadlines", ["miss_rate"]),
              ("Simulation: batch, queue and KV cache", [c for c in by_id if c.startswith("sim_")]),
              ("The server's own metrics (/metrics; simulated under the same names)",
               [c for c in by_id if c.startswith("server_")]))
    for title, ids in groups:
        present = [by_id[i] for i in ids if i in by_id]
        if present:
            html.append(f"<h2>{escape(title)}</h2>")
            html += [chart_figure(c) for c in present]
    data = {"runs": [{"label": lab, "path": str(r.path), "simulated": r.simulated,
                      "summary": r.summary, "config": r.config} for lab, r in zip(labels, runs)],
            "comparison": [r.to_dict() for r in rows]}
    return "\n".join(html), charts, data


def capacity_section(job: CapacityDir, label: str) -> tuple[str, list[Chart], dict]:
    by_name = capacity_charts(job)
    for c in by_name.values():  # several jobs in one report keep their chart ids apart
        c.id = f"{re.sub(r'[^A-Za-z0-9_-]', '_', label)}_{c.id}"
    report = job.report
    html = [f"<h2>Capacity search: {escape(label)}</h2>",
            f'<p class="meta">{escape(str(job.path))} — job {escape(str(report.get("job")))}, '
            f'{"simulated" if report.get("simulate") else "live"}, best: '
            f'{escape(str(report.get("best")))}</p>']
    if job.table_header:
        rows = [[tables.short_number(v) for v in row] for row in job.table_rows]
        html.append(f'<div class="wide">{tables.table(job.table_header, rows, "capacity")}</div>')
    if OVERVIEW in by_name:
        html.append(chart_figure(by_name[OVERVIEW]))
    for name, conf in report["configurations"].items():
        html += [f"<h3>{escape(name)}</h3>", tables.search_facts(conf)]
        if name in by_name:
            html.append(chart_figure(by_name[name]))
        html.append(tables.probe_history(conf))
    return "\n".join(html), list(by_name.values()), {"path": str(job.path),
                                                     "report": redact(report)}


def render(paths: Sequence[str | Path], title: str | None = None,
           columns: dict[Path, RunColumns] | None = None) -> str:
    """The report page of run folders and/or capacity-search folders (``columns``: runs'
    columns by resolved folder, where the caller holds them: not read again)."""
    if not paths:
        raise UserError("give at least one run or capacity-search directory")
    held = columns or {}
    loaded = [load(p, held[Path(p).resolve()].table if Path(p).resolve() in held else None)
              for p in paths]
    labels = labels_of([Path(p) for p in paths])
    runs = [(lab, d) for lab, d in zip(labels, loaded) if isinstance(d, RunDir)]
    jobs = [(lab, d) for lab, d in zip(labels, loaded) if isinstance(d, CapacityDir)]
    body, charts = [], []
    data: dict = {"schema": 1, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if runs:
        html, run_charts, run_data = runs_section([d for _, d in runs], [lab for lab, _ in runs],
                                                  held)
        data.update(run_data)
        body.append(html)
        charts += run_charts
    data["capacity"] = []
    for lab, job in jobs:
        html, job_charts, job_data = capacity_section(job, lab)
        body.append(html)
        charts += job_charts
        data["capacity"].append(job_data)
    data["charts"] = [c.to_dict() for c in charts]
    title = title or "etalon report: " + ", ".join(labels)
    header = (f"<h1>{escape(title)}</h1><p class=\"meta\">generated "
              f"{escape(data['generated_at'])} from {len(paths)} folder(s); hover a chart for "
              f"values, click a legend entry to hide its series</p>")
    return _page(title, header + "\n".join(body), data)


def _page(title: str, body: str, data: dict) -> str:
    from etalon import __version__

    text = json.dumps(json_safe(data), separators=(",", ":"), allow_nan=False, default=str)
    # inside <script> no "<" may open a tag: "</script>" in a run's settings would end it
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    parts = {"title": escape(title), "version": escape(__version__), "style": _asset("report.css"),
             "body": body, "data": text, "script": _asset("report.js")}
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], _asset("page.html"))


def write_report(paths: Sequence[str | Path], output: str | Path, *,
                 title: str | None = None, columns: dict[Path, RunColumns] | None = None) -> Path:
    """Renders the report and writes it (to a temporary name first)."""
    page = render(paths, title, columns)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


def write_run_report(out_dir: str | Path, prog: str, runs: Sequence[str | Path] | None = None,
                     title: str | None = None, columns: RunColumns | None = None) -> Path | None:
    """``report.html`` at the end of a run or a job (of ``runs`` side by side, when given); a
    failure is one warning line, never a lost run (its results are written already).

    ``columns``: the run's own, exactly as written to ``out_dir``, when the caller holds them:
    the report then neither reads the records back nor recomputes their latency series (at
    10k ShareGPT requests, ~1 s and ~2 s)."""
    held = {Path(out_dir).resolve(): columns} if columns is not None else None
    try:
        return write_report(runs or [out_dir], Path(out_dir) / REPORT_FILE, title=title, columns=held)
    except Exception as exc:
        print(f"{prog}: warning: {REPORT_FILE} was not written ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return None


def embedded_data(page: str) -> dict:
    """The JSON data a report page carries (for tests and tools that read reports back)."""
    match = re.search(rf'<script type="application/json" id="{DATA_ID}">(.*?)</script>', page,
                      re.S)
    if not match:
        raise UserError("not an etalon report: no embedded data")
    return json.loads(match.group(1))
