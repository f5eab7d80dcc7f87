"""``etalon ui``'s own command line: loopback by default, bad flags and a missing extra are one
line (exit 2), and the estimator's other subcommands record what they should."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import etalon.ui.__main__ as ui_command
from etalon.options import from_mapping
from etalon.ui.history import HistoryStore

ROOT = Path(__file__).resolve().parents[1]


def test_the_server_binds_loopback_unless_told():
    cmd = ui_command.streamlit_command(ui_command.UIConfig())
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8501"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    other = from_mapping(ui_command.UIConfig, {"host": "0.0.0.0", "port": 9000}, "test")
    cmd = ui_command.streamlit_command(other)
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"


def test_a_bad_port_is_one_line(capsys):
    assert ui_command.main(["--port", "70000"]) == 2
    assert capsys.readouterr().err == "etalon.ui: error: --port must be 1..65535, got 70000\n"


def test_without_the_extra_it_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setattr(ui_command, "find_spec", lambda name: None)
    assert ui_command.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("etalon.ui: error: the web app needs Streamlit: pip install 'etalon[ui]'")
    assert err.count("\n") == 1


def test_latency_is_recorded_and_catalog_is_not(tmp_path):
    db = tmp_path / "h.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ETALON_HISTORY": str(db), "HOME": str(tmp_path)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "etalon", "estimate", *args],  # noqa: E731
                                       capture_output=True, text=True, env=env, check=True)
    run("catalog")
    assert not db.exists()
    printed = json.loads(run("latency", "--model", "llama-3.1-8b", "--hardware", "l4", "--json").stdout)
    [entry] = HistoryStore(db).entries()
    assert entry.kind == "estimate latency" and entry.label == "llama-3.1-8b on l4"
    assert entry.metrics["estimate.ttft_s"] == pytest.approx(printed["estimate"]["ttft_s"])


def test_the_dockerfile_serves_the_app_with_flags_the_command_has():
    # the image cannot be built here; its command line is checked against the real parser
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    cmd = json.loads(next(ln for ln in lines if ln.startswith("CMD")).removeprefix("CMD").strip())
    assert cmd[:2] == ["etalon", "ui"]
    ns = ui_command.build_parser().parse_args(cmd[2:])
    cfg = from_mapping(ui_command.UIConfig, {"host": ns.host, "port": ns.port}, "Dockerfile")
    assert (cfg.host, cfg.port) == ("0.0.0.0", 8501)
    assert any('pip install' in ln and '.[ui]' in ln for ln in lines)
