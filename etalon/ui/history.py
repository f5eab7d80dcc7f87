"""The calculation history: every planner, estimator and simulator calculation, from the web app
or the CLI, as one row of one local SQLite file, so it can be re-opened, compared and plotted.

Where: ``$ETALON_HISTORY`` (a file path; ``off``/``0``/``none`` turns recording off), else
``~/.etalon/history.sqlite``. Recording from the CLI must never cost a command anything: it is
one small insert, and any failure is a warning line on stderr (``record_quietly``). Inputs are
stored through ``etalon.report.redact`` so an API key never lands in the file.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etalon.cli_errors import UserError
from etalon.report.redact import redact

ENV = "ETALON_HISTORY"
OFF = ("off", "0", "none", "false", "no", "")
DEFAULT_PATH = Path("~/.etalon/history.sqlite")
SCHEMA = """
CREATE TABLE IF NOT EXISTS calculations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    label TEXT NOT NULL,
    inputs TEXT NOT NULL,
    outputs TEXT NOT NULL,
    metrics TEXT NOT NULL,
    result_dir TEXT
)"""


class HistoryError(UserError):
    """The history file cannot be opened, read or written (one line, names the file)."""


@dataclass(frozen=True)
class Entry:
    """One stored calculation. ``metrics``: the outputs' numbers flattened to dotted keys
    (``plan.max_concurrency``), what comparisons and plots use."""

    id: int
    created: float
    kind: str
    source: str
    label: str
    inputs: dict
    outputs: dict
    metrics: dict[str, float]
    result_dir: str | None = None

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))


def history_path(explicit: str | Path | None = None) -> Path | None:
    """The history file: ``explicit``, else ``$ETALON_HISTORY``, else the default; None when
    recording is turned off."""
    text = str(explicit) if explicit is not None else os.environ.get(ENV)
    if text is None:
        return DEFAULT_PATH.expanduser()
    if text.strip().lower() in OFF:
        return None
    return Path(text).expanduser()


def flat_numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number (booleans excluded) in nested dicts, keyed by its dotted path;
    lists are left out (curves and per-stage detail are not what one compares by)."""
    out: dict[str, float] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(flat_numbers(value, f"{prefix}{key}."))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        if math.isfinite(data):
            out[prefix.rstrip(".")] = float(data)
    return out


def _json(data: Any) -> str:
    return json.dumps(data, default=str, allow_nan=False, separators=(",", ":")) if data is not None else "{}"


def _clean(data: Any) -> Any:
    """JSON-safe: non-finite floats become None (SQLite text must be strict JSON)."""
    if isinstance(data, Mapping):
        return {str(k): _clean(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_clean(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


class HistoryStore:
    """The SQLite file of calculations. Each call opens and closes its own connection, so the
    web app's threads and a CLI run in another process can share one file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    @contextmanager
    def _connect(self, create: bool) -> Iterator[sqlite3.Connection]:
        if not create and not self.path.is_file():
            raise HistoryError(f"{self.path}: no history file yet (run a calculation first)")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=2.0)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"{self.path}: cannot open the history file ({exc})") from None
        try:
            conn.execute(SCHEMA)
            yield conn
            conn.commit()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{self.path}: not a usable etalon history file ({exc}); move it "
                               f"away or set {ENV} to another path") from None
        finally:
            conn.close()

    def record(self, kind: str, inputs: Mapping, outputs: Mapping, *, source: str = "app",
               label: str = "", result_dir: str | Path | None = None) -> int:
        """Stores one calculation (inputs redacted); returns its id."""
        inputs, outputs = _clean(redact(dict(inputs))), _clean(dict(outputs))
        row = (time.time(), kind, source, label or kind, _json(inputs), _json(outputs),
               _json(flat_numbers(outputs)), None if result_dir is None else str(result_dir))
        with self._connect(create=True) as conn:
            cur = conn.execute("INSERT INTO calculations (created, kind, source, label, inputs, "
                               "outputs, metrics, result_dir) VALUES (?,?,?,?,?,?,?,?)", row)
            return int(cur.lastrowid)

    def entries(self, kind: str | None = None, limit: int = 500) -> list[Entry]:
        """The newest ``limit`` calculations (of ``kind``), newest first."""
        query = "SELECT * FROM calculations"
        args: tuple = ()
        if kind:
            query, args = query + " WHERE kind = ?", (kind,)
        with self._connect(create=False) as conn:
            rows = conn.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_entry(r) for r in rows]

    def kinds(self) -> list[str]:
        """The kinds of calculation the file holds, alphabetically."""
        with self._connect(create=False) as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT kind FROM calculations ORDER BY kind")]

    def get(self, entry_id: int) -> Entry:
        with self._connect(create=False) as conn:
            row = conn.execute("SELECT * FROM calculations WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise HistoryError(f"{self.path}: no calculation #{entry_id}")
        return _entry(row)


def _entry(row: tuple) -> Entry:
    id_, created, kind, source, label, inputs, outputs, metrics, result_dir = row
    return Entry(id_, created, kind, source, label, json.loads(inputs), json.loads(outputs),
                 json.loads(metrics), result_dir)


def compare(entries: list[Entry], keys: list[str] | None = None) -> tuple[list[str], list[list]]:
    """A table of entries side by side: one row per metric the entries share (or ``keys``),
    one column per entry (``#id kind``). Metrics only some entries have show None there."""
    if keys is None:
        shared = set.intersection(*(set(e.metrics) for e in entries)) if entries else set()
        keys = sorted(shared)
    header = ["metric", *(f"#{e.id} {e.label}" for e in entries)]
    return header, [[k, *(e.metrics.get(k) for e in entries)] for k in keys]


def record_quietly(kind: str, inputs: Mapping, outputs: Mapping, *, prog: str, label: str = "",
                   result_dir: str | Path | None = None) -> int | None:
    """What a CLI command calls after it succeeded: records, and on any failure prints one
    warning line and goes on (a history problem never fails a command)."""
    try:
        path = history_path()
        if path is None:
            return None
        return HistoryStore(path).record(kind, inputs, outputs, source="cli", label=label,
                                         result_dir=result_dir)
    except Exception as exc:  # noqa: BLE001 - the command's result matters, not the history
        print(f"{prog}: warning: not recorded in the history ({exc})", file=sys.stderr)
        return None
