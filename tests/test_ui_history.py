"""The calculation history: recorded by real ``etalon estimate`` / ``etalon simulate`` runs,
re-opened and compared; off when asked; a damaged or missing file is one line, never a failed
command. Every test points ETALON_HISTORY at its own tmp_path (and HOME too, so a slip would
show up there, not in the user's home)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from etalon.ui.history import HistoryError, HistoryStore, compare, flat_numbers, history_path

ROOT = Path(__file__).resolve().parents[1]
MEMORY = ["estimate", "memory", "--model", "llama-3.1-8b", "--hardware", "h100-sxm",
          "--context-len", "8192", "--json"]


def etalon(args: list[str], tmp_path: Path, history: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ETALON_HISTORY": history,
           "HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "etalon", *args], capture_output=True, text=True,
                          env=env, cwd=cwd or tmp_path)


def test_cli_calculations_are_recorded_reopened_and_compared(tmp_path):
    db = tmp_path / "h" / "history.sqlite"
    one = etalon(MEMORY, tmp_path, str(db))
    two = etalon([*MEMORY, "--tp", "2"], tmp_path, str(db))
    assert one.returncode == two.returncode == 0 and not one.stderr and not two.stderr
    printed = [json.loads(r.stdout)["plan"] for r in (one, two)]

    store = HistoryStore(db)  # a fresh object: the data came back from the file
    newest, oldest = store.entries()
    assert (oldest.kind, oldest.source, oldest.label) == ("estimate memory", "cli", "llama-3.1-8b on h100-sxm")
    assert oldest.inputs["tp"] == 1 and newest.inputs["tp"] == 2
    assert oldest.metrics["plan.max_concurrency"] == pytest.approx(printed[0]["max_concurrency"])
    assert store.get(newest.id).outputs["plan"]["num_blocks"] == printed[1]["num_blocks"]

    header, rows = compare([oldest, newest])
    assert header == ["metric", f"#{oldest.id} llama-3.1-8b on h100-sxm", f"#{newest.id} llama-3.1-8b on h100-sxm"]
    by_metric = {r[0]: r[1:] for r in rows}
    # TP2 halves the weights per device, so the pool and the concurrency grow
    conc = by_metric["plan.max_concurrency"]
    assert conc == pytest.approx([printed[0]["max_concurrency"], printed[1]["max_concurrency"]])
    assert conc[1] > conc[0]
    assert not (tmp_path / "home").exists()


def test_a_simulation_is_recorded_with_its_folder(tmp_path):
    db = tmp_path / "history.sqlite"
    res = etalon(["simulate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm",
                  "--max-num-completed-requests", "20", "--no-plots", "--no-report",
                  "--output-dir", "sim"], tmp_path, str(db))
    assert res.returncode == 0, res.stderr
    [entry] = HistoryStore(db).entries(kind="simulate")
    assert entry.result_dir == str((tmp_path / "sim").resolve())
    summary = json.loads((tmp_path / "sim" / "summary.json").read_text())
    assert entry.metrics["counts.num_completed"] == summary["counts"]["num_completed"] == 20
    assert entry.inputs["workload"]["max_num_completed_requests"] == 20


def test_off_records_nothing(tmp_path):
    res = etalon(MEMORY, tmp_path, "off")
    assert res.returncode == 0 and not res.stderr
    assert history_path("off") is None and history_path("OFF") is None
    assert list(tmp_path.rglob("*.sqlite")) == []


def test_a_damaged_history_is_a_warning_line_not_a_failed_command(tmp_path):
    db = tmp_path / "history.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    res = etalon(MEMORY, tmp_path, str(db))
    assert res.returncode == 0 and json.loads(res.stdout)["plan"]["max_concurrency"] > 0
    [line] = res.stderr.splitlines()
    assert line.startswith("etalon.estimate: warning: not recorded in the history") and str(db) in line
    with pytest.raises(HistoryError, match="not a usable etalon history file") as err:
        HistoryStore(db).entries()
    assert "\n" not in str(err.value)


def test_an_unwritable_place_is_a_warning_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    res = etalon(MEMORY, tmp_path, str(blocker / "history.sqlite"))
    assert res.returncode == 0
    [line] = res.stderr.splitlines()
    assert "warning: not recorded in the history" in line and "cannot open" in line


def test_a_missing_history_is_one_line(tmp_path):
    with pytest.raises(HistoryError, match="no history file yet"):
        HistoryStore(tmp_path / "none.sqlite").entries()
    assert not (tmp_path / "none.sqlite").exists()  # reading never creates the file
    store = HistoryStore(tmp_path / "h.sqlite")
    store.record("planner", {}, {"a": 1})
    with pytest.raises(HistoryError, match="no calculation #99"):
        store.get(99)


def test_secrets_never_reach_the_file(tmp_path):
    db = tmp_path / "h.sqlite"
    HistoryStore(db).record("simulate", {"model": "m", "api_key": "sk-abcdefgh12345678",
                                         "server_args": {"hf_token": "hf_abcdefghijklmnopqrstu"}},
                            {"x": float("nan"), "y": 2})
    raw = db.read_bytes()
    assert b"sk-abcdefgh" not in raw and b"hf_abcdefghij" not in raw
    [entry] = HistoryStore(db).entries()
    assert entry.inputs["model"] == "m" and entry.outputs["x"] is None and entry.metrics == {"y": 2.0}
    with sqlite3.connect(db) as conn:  # plain SQLite: other tools can read it
        assert conn.execute("SELECT count(*) FROM calculations").fetchone() == (1,)


def test_flat_numbers():
    assert flat_numbers({"a": {"b": 1, "c": True, "d": [1, 2], "e": float("inf")}, "f": 2.5, "g": "x"}) == \
        {"a.b": 1.0, "f": 2.5}


def test_recording_imports_nothing_heavy():
    code = ("import sys, etalon.ui.history; "
            "print(sorted(m for m in ('streamlit', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "[]"
