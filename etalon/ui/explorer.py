"""The results explorer's work: open run, simulation and capacity-search folders by path
(``etalon.report.run_dir.load``, the HTML report's own reader), one comparable row per folder for
filtering, sorting and plotting, and the multi-run HTML report of a selection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from etalon.cli_errors import UserError
from etalon.report.run_dir import CapacityDir, RunDir, load
from etalon.ui.history import flat_numbers

# summary.json sections whose numbers make the comparison columns
SECTIONS = ("latency", "throughput", "counts", "deadlines", "goodput")


@dataclass
class Opened:
    """Folders that opened and, per folder that did not, its one-line reason."""

    folders: list[RunDir | CapacityDir]
    problems: list[str]

    def table(self) -> pd.DataFrame:
        """One row per folder: path, kind, and every number of its summary (runs) or its best
        configuration (capacity searches), dotted keys as columns."""
        rows = []
        for d in self.folders:
            row: dict = {"folder": str(d.path)}
            if isinstance(d, RunDir):
                row["kind"] = "simulation" if d.simulated else "live run"
                for section in SECTIONS:
                    row.update(flat_numbers(d.summary.get(section) or {}, f"{section}."))
            else:
                row["kind"] = "capacity search"
                row["best"] = str(d.report.get("best"))
            rows.append(row)
        return pd.DataFrame(rows)


def split_paths(text: str) -> list[str]:
    """Folder paths from a text box: one per line (or comma-separated), blanks ignored."""
    return [p.strip() for line in text.splitlines() for p in line.split(",") if p.strip()]


def open_folders(paths: Sequence[str | Path]) -> Opened:
    """Each folder loaded by the report's reader; a bad one is a reason, not a failure of all."""
    folders, problems = [], []
    for p in paths:
        try:
            folders.append(load(Path(p).expanduser()))
        except UserError as exc:
            problems.append(str(exc))
    return Opened(folders, problems)


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The numeric columns a plot or a sort can use."""
    return [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]


def filter_table(table: pd.DataFrame, text: str) -> pd.DataFrame:
    """Rows whose folder or kind contains ``text`` (case-insensitive); all rows for no text."""
    if not text.strip():
        return table
    needle = text.strip().lower()
    mask = table["folder"].str.lower().str.contains(needle, regex=False) | \
        table["kind"].str.lower().str.contains(needle, regex=False)
    return table[mask]


def comparison_report(paths: Sequence[str | Path]) -> str:
    """The multi-run HTML report (overlaid charts, deltas against the first) of ``paths``."""
    from etalon.report.html import render

    return render([Path(p).expanduser() for p in paths])
