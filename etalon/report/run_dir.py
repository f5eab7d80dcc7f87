"""What the HTML report reads from a folder: a run (live or simulated) or a capacity-search job.

A mistake in the input (a folder that is neither, a damaged ``summary.json``) is one
``UserError`` line that names the path; nothing here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from etalon.cli_errors import UserError
from etalon.record_table import JSONL_FILE, REQUESTS_FILE, RecordTable, read_table
from etalon.report.redact import redact

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
CAPACITY_FILE = "capacity.json"
CAPACITY_TABLE_FILE = "capacity.csv"


@dataclass
class RunDir:
    """One run's folder: its summary, its (redacted) settings, its records and, for a
    simulation, the per-replica timeline."""

    path: Path
    summary: dict
    config: dict
    table: RecordTable
    timeline: pd.DataFrame | None = None
    server_metrics: pd.DataFrame | None = None  # the server's /metrics over time (or simulated)

    @property
    def simulated(self) -> bool:
        return "simulation" in self.summary


@dataclass
class CapacityDir:
    """A capacity-search job's folder: ``capacity.json`` and the ``capacity.csv`` table."""

    path: Path
    report: dict
    table_header: list[str] = field(default_factory=list)
    table_rows: list[list[str]] = field(default_factory=list)


def read_json(path: Path, what: str) -> Any:
    """A JSON file, or a one-line error that names it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found ({what})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not readable as JSON ({what}): {exc}") from None


def is_capacity_dir(path: Path) -> bool:
    return (path / CAPACITY_FILE).is_file()


def load(path: str | Path, table: RecordTable | None = None) -> RunDir | CapacityDir:
    """A run folder or a capacity-search folder; anything else is a ``UserError``.
    ``table``: the run's records, when the caller holds them (they are not read again)."""
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{p}: not a directory (give a run's --output-dir or a capacity "
                        f"search's)")
    if is_capacity_dir(p):
        return load_capacity(p)
    if not (p / SUMMARY_FILE).is_file():
        raise UserError(f"{p}: not a run directory (no {SUMMARY_FILE}) nor a capacity-search "
                        f"directory (no {CAPACITY_FILE})")
    return load_run(p, table)


def load_run(p: Path, table: RecordTable | None = None) -> RunDir:
    summary = read_json(p / SUMMARY_FILE, "a run's summary")
    if not isinstance(summary, dict) or not isinstance(summary.get("latency"), dict):
        raise UserError(f"{p / SUMMARY_FILE}: not a run summary (no 'latency' section)")
    config = read_json(p / CONFIG_FILE, "a run's settings") if (p / CONFIG_FILE).is_file() else {}
    if not (p / REQUESTS_FILE).is_file() and not (p / JSONL_FILE).is_file():
        raise UserError(f"{p}: no records ({REQUESTS_FILE} or {JSONL_FILE})")
    try:
        table = read_table(p) if table is None else table
    except UserError:
        raise
    except (ValueError, KeyError, TypeError) as exc:  # a damaged JSONL stream
        raise UserError(f"{p}: records not readable ({type(exc).__name__}: {exc})") from None
    return RunDir(p, summary, redact(config), table, _timeline(p), _server_metrics(p))


def _server_metrics(p: Path) -> pd.DataFrame | None:
    from etalon.metrics.server_series import COLUMNS, SERIES_FILE, read

    try:
        frame = read(p)
    except Exception as exc:  # pyarrow's errors for a damaged file
        raise UserError(f"{p / SERIES_FILE}: not readable ({type(exc).__name__}: {exc})") from None
    if frame is not None and any(c not in frame.columns for c in COLUMNS):
        raise UserError(f"{p / SERIES_FILE}: needs the columns {', '.join(COLUMNS)}")
    return frame


def _timeline(p: Path) -> pd.DataFrame | None:
    from etalon.simulator.results import TIMELINE_COLUMNS, TIMELINE_FILE

    path = p / TIMELINE_FILE
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow's errors for a damaged file
        raise UserError(f"{path}: not readable ({type(exc).__name__}: {exc})") from None
    missing = [c for c in TIMELINE_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def load_capacity(p: Path) -> CapacityDir:
    import csv

    report = read_json(p / CAPACITY_FILE, "a capacity search's results")
    if not isinstance(report, dict) or not isinstance(report.get("configurations"), dict):
        raise UserError(f"{p / CAPACITY_FILE}: not a capacity-search result (no "
                        f"'configurations')")
    out = CapacityDir(p, report)
    table = p / CAPACITY_TABLE_FILE
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if rows:
            out.table_header, out.table_rows = rows[0], rows[1:]
    return out
