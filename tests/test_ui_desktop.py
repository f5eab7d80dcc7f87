"""``etalon ui --desktop``: the Tk planner window under a virtual X display (Xvfb). It shows the
planner's numbers for the chosen model and GPU, a bad input is a message in the window, and a
screenshot of the window is kept as a test artifact (``$ETALON_TEST_ARTIFACTS``, else
``test-artifacts/`` in the repository)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

tk = pytest.importorskip("tkinter", reason="this Python has no tkinter (apt-get install python3-tk, "
                                           "or a Python built with tk-dev)")

from etalon.ui.planner import PlannerInputs, compute  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("ETALON_TEST_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture(scope="module")
def display():
    """A private X display on a free number; skipped (with the reason) without Xvfb."""
    if shutil.which("Xvfb") is None:
        pytest.skip("no Xvfb (apt-get install xvfb): the desktop window cannot be shown headless")
    for number in range(90, 120):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            break
    proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1024x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip(f"Xvfb :{number} did not start")
        time.sleep(0.05)
    yield f":{number}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def window(display):
    from etalon.ui.desktop import PlannerWindow

    root = tk.Tk(screenName=display)
    root.title("etalon capacity planner")
    yield PlannerWindow(root)
    root.destroy()


def test_the_window_shows_the_planners_numbers(window, display):
    window.model.set("qwen2.5-32b")
    window.hardware.set("a100-80gb")
    window.fields["tp"].set("2")
    window.fields["context_len"].set("32768")
    window.compute_button.invoke()  # as a click would
    window.root.update()
    expected = compute(PlannerInputs(model="qwen2.5-32b", hardware="a100-80gb", tp=2, context_len=32768))
    shown = {label: var.get() for label, var in window.facts.items()}
    assert shown == dict(expected.facts())
    assert shown["max concurrency @ 32,768 tokens"] == f"{expected.plan.max_concurrency:.2f} per replica"
    assert window.status.get() == ""
    _screenshot(window, display, "desktop_planner.png")


def test_a_calculation_in_the_window_is_in_the_history(window, tmp_path, monkeypatch):
    from etalon.ui.history import HistoryStore

    monkeypatch.setenv("ETALON_HISTORY", str(tmp_path / "h.sqlite"))
    result = window.compute()
    [entry] = HistoryStore(tmp_path / "h.sqlite").entries()
    assert (entry.kind, entry.source) == ("planner", "desktop")
    assert entry.metrics["plan.max_concurrency"] == pytest.approx(result.plan.max_concurrency)


@pytest.mark.parametrize("field,value,message", [
    ("tp", "two", "TP: expected a whole number, got 'two'"),
    ("tp", "3", "--tp 3 is invalid for llama-3.1-8b"),
    ("gpu_memory_utilization", "1.5", "--gpu-memory-utilization must be in (0, 1]"),
])
def test_bad_input_is_a_message_in_the_window(window, field, value, message):
    window.fields[field].set(value)
    assert window.compute() is None
    assert window.status.get().startswith(message)


def test_the_command_says_what_is_missing_without_a_display(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    res = subprocess.run([sys.executable, "-m", "etalon", "ui", "--desktop"], capture_output=True,
                         text=True, env={**env, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert res.returncode == 2
    assert res.stderr.startswith("etalon.ui: error: cannot open a window") and res.stderr.count("\n") == 1


def _screenshot(window, display: str, name: str) -> Path:
    """The window as a PNG (ImageMagick's ``import``, cropped to the window), else the whole
    screen as an X window dump (``xwd``); a warning when neither tool is there."""
    root = window.root
    root.update()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / name
    geometry = f"{root.winfo_width()}x{root.winfo_height()}+{root.winfo_rootx()}+{root.winfo_rooty()}"
    if shutil.which("import"):
        subprocess.run(["import", "-display", display, "-window", "root", "-crop", geometry, str(out)],
                       check=True, timeout=30)
    elif shutil.which("xwd"):
        out = out.with_suffix(".xwd")
        subprocess.run(["xwd", "-display", display, "-root", "-out", str(out)], check=True, timeout=30)
    else:
        warnings.warn("no screenshot: neither ImageMagick's import nor xwd is installed")
        return out
    assert out.stat().st_size > 1000
    return out
