"""The HTML report (``etalon report``): real run folders from the simulator, a live run against
the programmed server and a simulated capacity search; the numbers it carries are checked
against the summaries and against values computed here from the records; it loads nothing
from the network, stays small, rejects bad input in one line, and renders in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from etalon.cli_errors import UserError
from etalon.options import from_mapping
from etalon.record_table import read_table
from etalon.report.html import REPORT_FILE, embedded_data, render, write_report
from etalon.report.run_dir import load_run
from etalon.simulate import simulate
from etalon.simulator.config import SimConfig

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "etalon" / "report" / "html_assets"


def _simulate(out: Path, qps: float, n: int, **extra) -> Path:
    settings = {"model": "llama-3-8b", "hardware": "h100-sxm", "output_dir": str(out),
                "no_plots": True, "ttft_deadline": 0.05, "tbt_deadline": 0.0062,
                "workload": {"poisson_request_interval_generator_qps": qps,
                             "max_num_completed_requests": n, "seed": 7,
                             "fixed_request_generator_prefill_tokens": 512,
                             "fixed_request_generator_decode_tokens": 64}, **extra}
    simulate(from_mapping(SimConfig, settings, "test").validate(), report=True)
    return out


@pytest.fixture(scope="module")
def sims(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sims")
    return {"busy": _simulate(base / "busy", 24, 2000), "light": _simulate(base / "light", 4, 500)}


def _bench(*args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-ray",
                          "--model", "m", "--num-ray-clients", "1", *args],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def live(programmed_server, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("live")
    common = ("--fixed-request-generator-prefill-tokens", "64",
              "--fixed-request-generator-decode-tokens", "8",
              "--poisson-request-interval-generator-qps", "40", "--no-plots")
    _bench("--server", programmed_server.base_url, "--max-num-completed-requests", "24",
           "--tbt-deadline", "0.03", "--output-dir", str(base / "ok"), *common)
    _bench("--server", programmed_server.fault_url("http500"), "--max-num-completed-requests", "5",
           "--output-dir", str(base / "failing"), *common)
    return {"ok": base / "ok", "failing": base / "failing"}


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _charts(data: dict) -> dict[str, dict]:
    return {c["id"]: c for c in data["charts"]}


def _at(series: dict, x: float) -> float:
    """The series' y where its x is nearest ``x``."""
    xs = np.array(series["x"], dtype=float)
    return series["y"][int(np.argmin(np.abs(xs - x)))]


# --- a simulated run -------------------------------------------------------------------------

def test_a_simulation_writes_its_report_with_the_summary_numbers(sims):
    run = sims["busy"]
    page = (run / REPORT_FILE).read_text()
    data = embedded_data(page)
    summary = _summary(run)
    assert data["runs"][0]["summary"]["latency"]["ttft"]["p50"] == summary["latency"]["ttft"]["p50"]
    assert data["runs"][0]["simulated"] is True
    # the static table shows the same p50 (ms, one decimal), readable without the script
    p50_ms = f"{summary['latency']['ttft']['p50'] * 1e3:.1f}"
    assert re.search(rf"<td>TTFT</td><td>{re.escape(p50_ms)}</td>", page)
    charts = _charts(data)
    for chart in ("cdf_ttft", "cdf_tbt", "cdf_e2e_latency", "cdf_dispatch_lag", "ttft_vs_prompt",
                  "throughput", "completions", "in_flight", "miss_rate", "sim_batch_size",
                  "sim_queue_length", "sim_kv_blocks_used"):
        assert chart in charts and charts[chart]["series"][0]["x"], chart
        assert f'id="chart-{chart}"' in page
    assert all(len(s["x"]) <= 2000 for c in charts.values() for s in c["series"])


def test_the_report_a_run_writes_from_its_columns_is_the_one_its_files_give(sims):
    # simulate hands the report the columns it wrote (no reading back, no recomputing): the
    # page must be the one `etalon report` renders from the folder
    run = sims["busy"]
    written = embedded_data((run / REPORT_FILE).read_text())
    again = embedded_data(render([run]))
    for data in (written, again):
        data.pop("generated_at")
    assert written == again


def test_the_cdfs_pass_through_the_summary_percentiles(sims):
    run = sims["busy"]
    data = embedded_data((run / REPORT_FILE).read_text())
    summary = _summary(run)
    for name in ("ttft", "tbt", "e2e_latency"):
        series = _charts(data)[f"cdf_{name}"]["series"][0]
        x, q = np.array(series["x"]), np.array(series["y"])
        for p, frac in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            expect = summary["latency"][name][p] * 1e3
            assert np.interp(frac, q, x) == pytest.approx(expect, rel=1e-4), (name, p)


def test_time_series_agree_with_the_records(sims):
    run = sims["busy"]
    data = embedded_data((run / REPORT_FILE).read_text())
    charts = _charts(data)
    table = read_table(run)
    sent, done = table.numbers("sent_at"), table.numbers("completed_at")
    t0 = np.nanmin(table.numbers("scheduled_at"))
    # requests in flight at a few times, counted one request at a time
    flight = charts["in_flight"]["series"][0]
    def in_flight(t: float) -> int:
        return sum(1 for s, d in zip(sent, done) if s <= t < d)

    for i in (10, 100, 200, 290):
        t = flight["x"][i] + t0
        slack = 1e-4 * abs(flight["x"][i]) + 1e-9  # chart times carry 5 significant digits
        low, high = sorted((in_flight(t - slack), in_flight(t + slack)))
        assert low <= flight["y"][i] <= high and high - low <= 2
    # output tokens/s integrated over the bins is every streamed token
    tput = charts["throughput"]["series"][0]
    width = tput["x"][1] - tput["x"][0]
    assert sum(tput["y"]) * width == pytest.approx(int(table.chunk_tokens.sum()), rel=1e-3)
    # at 24 req/s the roofline engine batches: the KV cache and batch are in use
    assert max(charts["sim_batch_size"]["series"][0]["y"]) > 1
    assert 0 < max(charts["sim_kv_blocks_used"]["series"][0]["y"]) <= 1


def test_the_miss_rate_curve_meets_the_summary_at_the_target(sims):
    run = sims["busy"]
    summary = _summary(run)
    curve = _charts(embedded_data((run / REPORT_FILE).read_text()))["miss_rate"]
    target_ms = summary["parameters"]["tbt_deadline_s"] * 1e3
    assert curve["vlines"][0]["x"] == pytest.approx(target_ms)
    mean = summary["deadlines"]["mean_miss_rate"]
    assert mean > 0.01  # the target is tight: the curve is not trivially 0
    assert _at(curve["series"][0], target_ms) == pytest.approx(mean, rel=1e-4)
    y = np.array(curve["series"][0]["y"])
    assert np.all(np.diff(y) <= 1e-12)  # a looser deadline never misses more


def test_a_large_runs_miss_rate_curve_is_drawn_from_requests_spread_over_it(sims, monkeypatch):
    # Above MISS_CURVE_REQUESTS the curve is the mean over an even sample of the completed
    # requests, and says so. Worked here request by request with the one-request evaluator.
    from etalon.metrics.deadlines import evaluate_deadlines
    from etalon.report import run_view

    run = sims["busy"]
    summary = _summary(run)
    table = read_table(run)
    monkeypatch.setattr(run_view, "MISS_CURVE_REQUESTS", 300)
    charts = run_view.RunCharts.of("busy", load_run(run))
    curve = run_view.miss_rate_curve([charts])
    assert "300 of 2,000 requests" in curve.note
    target = summary["parameters"]["tbt_deadline_s"]
    req = table.requests
    rows = np.linspace(0, len(req) - 1, 300).astype(np.int64)  # all 2,000 completed
    bounds = np.concatenate([[0], np.cumsum(req["num_chunks"].to_numpy())])
    rates = []
    for row in rows:
        times = table.chunk_times[bounds[row]:bounds[row + 1]]
        tokens = table.chunk_tokens[bounds[row]:bounds[row + 1]]
        out = evaluate_deadlines(np.repeat(times, tokens), req["scheduled_at"][row],
                                 summary["parameters"]["ttft_deadline_s"], target)
        rates.append(out.misses / (out.tokens_on_time + out.misses))
    series = curve.series[0]
    at = int(np.argmin(np.abs(np.asarray(series.x) - target * 1e3)))
    assert series.y[at] == pytest.approx(np.mean(rates), rel=1e-9)
    assert series.y[at] != pytest.approx(summary["deadlines"]["mean_miss_rate"], rel=1e-6)


# --- several runs: the validation view ------------------------------------------------------

def test_two_runs_are_overlaid_and_compared_against_the_first(sims, tmp_path):
    out = write_report([sims["light"], sims["busy"]], tmp_path / "cmp.html")
    page = out.read_text()
    data = embedded_data(page)
    first, second = _summary(sims["light"]), _summary(sims["busy"])
    by_label = {r["label"]: r for r in data["comparison"]}
    for label, metric, stat in (("TTFT p50", "ttft", "p50"), ("TBT p99", "tbt", "p99"),
                                ("E2E p90", "e2e_latency", "p90")):
        a, b = first["latency"][metric][stat], second["latency"][metric][stat]
        expect = (b - a) / a
        row = by_label[label]
        assert row["relative"][0] == 0 and row["relative"][1] == pytest.approx(expect, rel=1e-12)
        assert row["values"][1] == pytest.approx(b * 1e3)
        assert f"{expect:+.1%}" in page  # the static table shows it
    assert [len(c["series"]) for c in data["charts"] if c["id"].startswith("cdf_")] == [2] * 4


def test_a_live_run_and_a_simulation_in_one_report(live, sims, tmp_path):
    page = write_report([live["ok"], sims["light"]], tmp_path / "v.html").read_text()
    data = embedded_data(page)
    assert [r["simulated"] for r in data["runs"]] == [False, True]
    assert data["runs"][0]["summary"]["latency"]["ttft"]["p50"] == _summary(live["ok"])["latency"]["ttft"]["p50"]
    charts = _charts(data)
    assert len(charts["cdf_ttft"]["series"]) == 2
    assert len(charts["sim_batch_size"]["series"]) == 1  # only the simulation has a timeline
    assert (live["ok"] / REPORT_FILE).is_file()  # run_benchmark wrote its own


def test_errors_by_type_are_counted(live, tmp_path):
    page = write_report([live["ok"], live["failing"]], tmp_path / "e.html").read_text()
    errors = _summary(live["failing"])["counts"]["errors_by_type"]
    assert errors == {"http_500": 5}
    row = re.search(r"<tr><td>error: http_500</td><td>(\d+)</td><td>(\d+)<", page)
    assert row and row.groups() == ("0", "5")


# --- capacity search ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def capacity_job(tmp_path_factory) -> Path:
    from etalon.capacity_search.__main__ import SearchCommandConfig, run

    base = tmp_path_factory.mktemp("cap")
    perf = base / "perf.json"
    perf.write_text(json.dumps({"kind": "parametric", "step_overhead": 0,
                                "per_prefill_token": 1e-4, "per_attention_pair": 0,
                                "per_decode_seq": 0, "per_context_token": 0}))
    job = {"slo": {"ttft_percentile": 90, "ttft_max_s": 0.5},
           "search": {"start_qps": 2, "max_qps": 40, "tolerance": 0.1, "max_probes": 6},
           "num_requests": 200,
           "deployments": [{"name": name, "simulate": {
               "perf_model_file": str(perf), "max_batch_size": batch, "num_kv_blocks": 100000,
               "workload": {"fixed_request_generator_prefill_tokens": 1000,
                            "fixed_request_generator_decode_tokens": 1}}}
               for name, batch in (("one-at-a-time", 1), ("batched", 8))]}
    (base / "job.yaml").write_text(yaml.safe_dump(job))
    assert run(SearchCommandConfig(config=str(base / "job.yaml"), output_dir=str(base / "out"),
                                   no_ray=True, no_plots=True)) == 0
    return base / "out"


def test_a_capacity_search_renders_its_probes_and_boundaries(capacity_job):
    out = capacity_job
    page = (out / REPORT_FILE).read_text()
    assert not list(out.glob("*/qps_*/" + REPORT_FILE))  # the job's report only, none per probe
    data = embedded_data(page)
    report = json.loads((out / "capacity.json").read_text())
    assert data["capacity"][0]["report"]["configurations"].keys() == report["configurations"].keys()
    charts = _charts(data)
    for i, (name, conf) in enumerate(report["configurations"].items()):
        chart = charts[f"out_probes_{i}"]
        probes = conf["search"]["probes"]
        order = chart["series"][0]
        # the history in the order it ran (rates rounded to 5 digits, as every chart number)
        assert order["x"] == pytest.approx([p["qps"] for p in probes], rel=1e-4)
        passed = {s["name"]: s for s in chart["series"][1:]}["pass"]
        assert sorted(passed["x"]) == pytest.approx(sorted(p["qps"] for p in probes
                                                           if p["passed"]), rel=1e-4)
        assert {m["label"]: m["x"] for m in chart["vlines"]}["capacity"] == conf["capacity_qps"]
        low, high = conf["search"]["interval"]
        assert chart["vspans"] == [{"x0": low, "x1": high, "label": "interval", "group": 0}]
        assert f"<td>{conf['capacity_qps']:.4g}</td>" in page  # the table across configurations
        assert len(re.findall(r"<td class=\"(?:pass|fail)\">", page.split(f"<h3>{name}</h3>")[1]
                              .split("<h3>")[0])) == len(probes)


def test_a_configuration_that_failed_before_probing_keeps_the_others_charts(capacity_job, tmp_path):
    out = tmp_path / "job"
    shutil.copytree(capacity_job, out)
    report = json.loads((out / "capacity.json").read_text())
    first, second = list(report["configurations"])
    report["configurations"][first].update(search=None, capacity_qps=None,
                                           error="server never became ready")
    (out / "capacity.json").write_text(json.dumps(report))
    page = render([out])
    charts = _charts(embedded_data(page))
    assert "job_probes_0" not in charts  # nothing to draw for the failed one
    probes = report["configurations"][second]["search"]["probes"]
    assert charts["job_probes_1"]["series"][0]["x"] == pytest.approx([p["qps"] for p in probes],
                                                                     rel=1e-4)
    assert "server never became ready" in page.split(f"<h3>{first}</h3>")[1]


# --- what the file is ----------------------------------------------------------------------------

EXTERNAL = re.compile(r"(?:\bsrc\s*=|\bhref\s*=|url\(|@import|<link\b|<iframe\b|<img\b|<object\b|"
                      r"<embed\b)", re.I)


def test_the_report_loads_nothing_from_outside(live, sims, capacity_job, tmp_path):
    for asset in ASSETS.iterdir():  # the page's own code names no address at all
        assert "http" not in asset.read_text().lower(), asset
    page = write_report([live["ok"], sims["busy"], capacity_job], tmp_path / "all.html").read_text()
    assert not EXTERNAL.search(page)
    # the only addresses are the live run's own server, as text in its settings
    assert {re.match(r"https?://([^/:]+)", u).group(1)
            for u in re.findall(r"https?://[^\s\"'<\\]+", page)} <= {"127.0.0.1"}


def test_secrets_in_a_runs_settings_stay_out(sims, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sims["light"], run)
    config = json.loads((run / "config.json").read_text())
    config["client"] = {"api_key": "sk-live-0123456789abcdef", "base_url": "http://127.0.0.1:1/v1"}
    (run / "config.json").write_text(json.dumps(config))
    page = render([run])
    assert "sk-live-0123456789abcdef" not in page and "api_key" not in page


def test_size_stays_bounded_as_runs_grow(sims):
    small = (sims["light"] / REPORT_FILE).stat().st_size  # 500 requests
    big = (sims["busy"] / REPORT_FILE).stat().st_size  # 2000 requests
    per_request = max(big - small, 0) / 1500
    assert big + per_request * 8000 < 5e6  # extrapolated to 10k requests
    assert big < 500e3


def test_a_script_tag_in_the_data_cannot_end_the_script(sims, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sims["light"], run)
    (run / "config.json").write_text(json.dumps({"note": "</script><script>alert(1)</script>"}))
    page = render([run])
    assert "</script><script>alert(1)" not in page
    assert embedded_data(page)["runs"][0]["config"]["note"].startswith("</script>")


# --- bad input -------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etalon.report", *args], capture_output=True,
                          text=True, timeout=120)


def test_bad_input_is_one_line_naming_the_path(sims, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(sims["light"], broken)
    (broken / "summary.json").write_text('{"latency": {"ttft": ')
    for target, needle in ((empty, f"{empty}: not a run directory"),
                           (broken, f"{broken / 'summary.json'}: not readable as JSON"),
                           (tmp_path / "missing", f"{tmp_path / 'missing'}: not a directory")):
        res = _cli(str(target), "-o", str(tmp_path / "r.html"))
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], res.stderr
        assert "Traceback" not in res.stderr
    with pytest.raises(UserError, match="summary.json"):
        render([broken])


def test_the_command_writes_the_file_it_is_told(sims, tmp_path):
    out = tmp_path / "sub" / "mine.html"
    res = subprocess.run([sys.executable, "-m", "etalon", "report", str(sims["light"]), "-o",
                          str(out), "--title", "light load"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "<title>light load</title>" in out.read_text()


def test_no_report_skips_it(tmp_path):
    out = _simulate(tmp_path / "quiet", 4, 50, no_report=True)
    assert (out / "summary.json").is_file() and not (out / REPORT_FILE).exists()


# --- a real browser --------------------------------------------------------------------------

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _dom(browser: str, page: Path, tmp: Path) -> str:
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000",
                          "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _html_tag(dom: str) -> str:
    """The page's opening <html> tag, where the error hook leaves its mark."""
    match = re.search(r"<html\b[^>]*>", dom)
    assert match, dom[:500]
    return match.group(0)


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (apt-get install chromium); "
                                                "the browser rendering test needs one")
def test_a_headless_browser_draws_every_chart(sims, live, capacity_job, tmp_path):
    browser = _chromium()
    page = write_report([sims["busy"], live["ok"], capacity_job], tmp_path / "r.html")
    expected = len(embedded_data(page.read_text())["charts"])
    dom = _dom(browser, page, tmp_path)
    assert "data-js-error" not in _html_tag(dom), _html_tag(dom)
    assert f'data-charts-rendered="{expected}"' in dom
    drawn = re.sub(r"<script\b.*?</script>", "", dom, flags=re.S)  # what the script made
    assert drawn.count('<svg class="chart-svg"') == expected
    assert drawn.count('<path class="series"') > expected  # lines were drawn, not just frames
    # the error marker is live: a page whose script throws says so
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace('"use strict";', '"use strict"; null.x;', 1))
    assert 'data-js-error="' in _html_tag(_dom(browser, broken, tmp_path))
