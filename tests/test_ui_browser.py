"""End to end, as a person would: ``etalon ui`` serves on 127.0.0.1 and a free port, headless
Chromium (driven by Playwright, with the system's browser) chooses a model and a GPU and reads
the max concurrency off the planner, runs a small simulation, and re-opens it from the history.
Skipped, with the reason, without the ``ui`` extra, Playwright or a Chromium binary."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="the web app needs the 'ui' extra (pip install 'etalon[ui]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="no Playwright (pip install playwright)")

from etalon.ui.history import HistoryStore  # noqa: E402
from etalon.ui.planner import PlannerInputs, compute  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("ETALON_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``etalon ui`` on 127.0.0.1:<free port>, its history in a temporary folder."""
    tmp = tmp_path_factory.mktemp("ui")
    port = free_port()
    history = tmp / "history.sqlite"
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "etalon", "ui", "--port", str(port), "--history",
                             str(history)], cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp / "home")},
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"etalon ui did not start: {(tmp / 'server.log').read_text()}")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}", history, tmp, port
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    # stopping `etalon ui` stops its Streamlit server too: the port closes
    deadline = time.monotonic() + 10
    while listening_addresses(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not listening_addresses(port), "the Streamlit server outlived `etalon ui`"


@pytest.fixture(scope="module")
def page(served):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def choose(page, label: str, value: str) -> None:
    box = page.get_by_role("combobox", name=label)
    box.click()
    box.fill(value)
    page.get_by_role("option", name=value, exact=True).click()


def type_number(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")


def metric(page, label: str):
    return page.locator('[data-testid="stMetric"]', has_text=label).locator('[data-testid="stMetricValue"]')


def listening_addresses(port: int) -> set[str]:
    """The local addresses of sockets listening on ``port`` (Linux: /proc/net/tcp, tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_binds_loopback_only(served):
    _, _, tmp, port = served
    assert "serving on http://127.0.0.1:" in (tmp / "server.log").read_text()
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read the listening address from")
    # 0100007F is 127.0.0.1 (little-endian hex); 00000000 or :: would be every interface
    assert listening_addresses(port) == {"0100007F"}


def test_plan_simulate_and_reopen_from_history(served, page):
    url, history, tmp, _ = served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(url)
    # the planner: a model and a GPU, then the max concurrency read off the page
    choose(page, "Model", "qwen2.5-72b")
    choose(page, "GPU", "a100-80gb")
    type_number(page, "TP", "4")
    expected = compute(PlannerInputs(model="qwen2.5-72b", hardware="a100-80gb", tp=4, context_len=8192))
    # a list: every element that matches, so a stale one left from the last rerun cannot pass
    sync_api.expect(metric(page, "Max concurrency per replica")).to_have_text(
        [f"{expected.plan.max_concurrency:.2f}"], timeout=30_000)
    sync_api.expect(metric(page, "Recommended layout")).to_have_text(
        [expected.recommendation.layout.label()], timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "web_planner.png"), full_page=True)

    # a small simulation
    page.get_by_role("link", name="Simulator").click()
    out = tmp / "sim-e2e"
    field = page.get_by_label("Output folder", exact=False)
    field.fill(str(out))
    field.press("Enter")
    type_number(page, "Requests", "20")
    page.get_by_role("button", name="Run simulation").click()
    page.get_by_text(f"results in {out}").wait_for(timeout=60_000)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["num_completed"] == 20
    page.get_by_text("20 of 20").wait_for()
    report = page.frame_locator("iframe").first
    report.get_by_text("Summary: sim-e2e (simulated)").wait_for()
    page.screenshot(path=str(ARTIFACTS / "web_simulator.png"), full_page=True)

    # re-opened from the history: the newest calculation is that simulation, with its report
    page.get_by_role("link", name="History").click()
    page.get_by_text(f"results folder: {out.resolve()}").wait_for()
    page.frame_locator("iframe").first.get_by_text("Summary: sim-e2e (simulated)").wait_for()
    page.screenshot(path=str(ARTIFACTS / "web_history.png"), full_page=True)
    kinds = [e.kind for e in HistoryStore(history).entries()]
    assert kinds[0] == "simulate" and "planner" in kinds
