"""validate's server-state comparison: the live scrape's gauge means and prefix-cache hit rate
against the simulated engine's, read from the two runs' summaries."""

from __future__ import annotations

import json

import pytest

from etalon.engine.gauges import KV_USAGE, RUNNING, WAITING
from etalon.validate import format_table, server_state


def _run(path, section):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"server_metrics": section}))
    return path


def _section(running, waiting, kv, hit_rate):
    gauge = lambda m: {"mean": m, "max": 2 * m, "samples": 10}  # noqa: E731
    return {"available": True, "gauges": {RUNNING: gauge(running), WAITING: gauge(waiting),
                                          KV_USAGE: gauge(kv)},
            "prefix_cache_hit_rate": hit_rate}


def test_gauge_means_and_hit_rate_are_set_side_by_side(tmp_path):
    live = _run(tmp_path / "live", _section(4.0, 2.0, 0.25, 0.60))
    sim = _run(tmp_path / "val" / "profiled", _section(5.0, 1.5, 0.20, 0.55))
    state = server_state(live / "requests.jsonl", {"profiled": sim})
    rows = {r["series"]: r for r in state["profiled"]}
    assert rows[RUNNING]["relative_error"] == pytest.approx(0.25)  # 5 against 4
    assert rows[WAITING]["difference"] == pytest.approx(-0.5)
    assert rows[KV_USAGE]["relative_error"] == pytest.approx(-0.2)
    assert rows["prefix_cache_hit_rate"]["difference"] == pytest.approx(-0.05)  # 5 points low
    table = format_table({"models": {}, "server_state": state})
    assert "+25.0%" in table and "-5.0 pt" in table


def test_a_live_run_without_a_scrape_has_no_server_state(tmp_path):
    live = _run(tmp_path / "live", {"available": False, "reason": "no /metrics"})
    sim = _run(tmp_path / "sim", _section(1.0, 0.0, 0.1, None))
    assert server_state(live, {"profiled": sim}) is None
    # a simulation without prefix caching has no hit rate: only the gauges are compared
    live2 = _run(tmp_path / "live2", _section(1.0, 0.0, 0.1, 0.5))
    rows = server_state(live2, {"profiled": sim})["profiled"]
    assert [r["series"] for r in rows] == [RUNNING, WAITING, KV_USAGE]
