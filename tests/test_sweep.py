"""``etalon sweep`` against a server with programmed timing: one user, many users, rates between."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from etalon.cli_errors import UserError
from etalon.sweep import plan_rates


def test_rates_are_spaced_evenly_between_the_ends():
    assert plan_rates(2.0, 12.0, 4) == pytest.approx([4.0, 6.0, 8.0, 10.0])
    assert plan_rates(2.0, 12.0, 0) == []
    with pytest.raises(UserError, match="not above the synchronous"):
        plan_rates(5.0, 4.0, 2)


def test_sweep_runs_synchronous_throughput_and_rates_between(programmed_server, tmp_path):
    # The programmed server answers 5 tokens in 0.05 + 4 * 0.02 = 0.13 s whatever its load.
    # One user therefore gets at most 1 / 0.13 = 7.7 req/s; 8 users at most 8 / 0.13 = 61.5.
    latency, users = 0.05 + 4 * 0.02, 8
    out = tmp_path / "sweep"
    res = subprocess.run(
        [sys.executable, "-m", "etalon", "sweep", "--no-progress", "--no-ray",
         "--server", programmed_server.base_url, "--model", "m",
         "--max-num-completed-requests", "24", "--sweep-rates", "2",
         "--sweep-throughput-users", str(users), "--fixed-request-generator-prefill-tokens", "16",
         "--fixed-request-generator-decode-tokens", "5", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["run"] for r in rows] == ["synchronous", "throughput", "rate_1", "rate_2"]
    sync, peak = float(rows[0]["achieved_qps"]), float(rows[1]["achieved_qps"])
    assert 0.7 / latency <= sync <= 1.001 / latency
    assert 0.6 * users / latency <= peak <= 1.001 * users / latency
    # the rate runs sit at a third and two thirds of the way between what the ends measured
    targets = [float(r["target_qps"]) for r in rows[2:]]
    assert targets == pytest.approx([sync + (peak - sync) / 3, sync + 2 * (peak - sync) / 3])
    for r in rows:
        summary = json.loads((out / r["run"] / "summary.json").read_text())
        assert summary["counts"]["num_completed"] == 24
    modes = [json.loads((out / r["run"] / "summary.json").read_text())["load"]["mode"] for r in rows]
    assert modes == ["closed_loop", "closed_loop", "open_loop", "open_loop"]
    assert (out / "sweep.png").stat().st_size > 0 and "throughput" in res.stdout
    # one report over the four runs, none per run
    from etalon.report.html import embedded_data

    assert not any((out / r["run"] / "report.html").exists() for r in rows)
    page = (out / "report.html").read_text()
    assert all(r["run"] in page for r in rows) and embedded_data(page)
