"""Reads request-trace CSV files for both trace generators, with one-line errors.

A trace is a CSV with a header row. Length traces need ``num_prefill_tokens`` and
``num_decode_tokens``; arrival traces need ``arrival_time`` or ``arrived_at`` (seconds; if both
are present ``arrival_time`` wins). Other columns (``num_total_tokens``, ``pd_ratio``, ...) are
ignored, and lines starting with ``#`` are comments. Errors name the file, the column and the
first bad data row (1-based, header and comment lines not counted), because a user fixing a
30,000-row trace needs to know where to look.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from etalon.cli_errors import UserError

PREFILL_COLUMN = "num_prefill_tokens"
DECODE_COLUMN = "num_decode_tokens"
ARRIVAL_COLUMNS = ("arrival_time", "arrived_at")


@dataclass(frozen=True)
class LengthTrace:
    """Token counts of a trace, in file order."""

    path: str
    prefill: np.ndarray
    decode: np.ndarray

    def __len__(self) -> int:
        return len(self.prefill)


def read_length_trace(path: str | os.PathLike) -> LengthTrace:
    """Prefill and decode token counts (non-negative integers) in file order (read-only arrays,
    parsed once per file version: each probe of a capacity search reads the same trace)."""
    resolved, mtime_ns, size = _file_key(path)
    prefill, decode = _length_columns(resolved, mtime_ns, size, str(path))
    return LengthTrace(str(path), prefill, decode)


@lru_cache(maxsize=8)
def _length_columns(resolved: str, mtime_ns: int, size: int, shown: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    table = _read_csv_cached(resolved, mtime_ns, size, shown)
    columns = (_token_column(table, PREFILL_COLUMN, shown), _token_column(table, DECODE_COLUMN, shown))
    for values in columns:
        values.flags.writeable = False
    return columns


def read_arrival_times(path: str | os.PathLike) -> np.ndarray:
    """Arrival times in seconds (non-negative, finite) in file order, not yet sorted."""
    table = _load_table(path)
    for name in ARRIVAL_COLUMNS:
        if name in table.columns:
            return _numeric_column(table, name, path)
    raise UserError(
        f"trace file '{path}' has no arrival-time column "
        f"{' or '.join(repr(c) for c in ARRIVAL_COLUMNS)} (columns found: {_columns(table)})"
    )


def _load_table(path: str | os.PathLike) -> pd.DataFrame:
    # Keyed on size and mtime so an edited file is re-read; both generators and validate()
    # may read the same trace, which this makes cheap.
    return _read_csv_cached(*_file_key(path), str(path))


def _file_key(path: str | os.PathLike) -> tuple[str, int, int]:
    """(resolved path, mtime ns, size) of an existing trace file, the key of its caches."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"trace file '{path}' does not exist")
    if not p.is_file():
        raise UserError(f"trace file '{path}' is not a file")
    stat = p.stat()
    return str(p.resolve()), stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=8)
def _read_csv_cached(resolved: str, mtime_ns: int, size: int, shown: str) -> pd.DataFrame:
    try:
        # Everything as text: numeric checks below then point at the exact bad cell.
        table = pd.read_csv(
            resolved, comment="#", dtype=str, keep_default_na=False, skipinitialspace=True
        )
    except pd.errors.EmptyDataError:
        raise UserError(f"trace file '{shown}' is empty") from None
    except pd.errors.ParserError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "parse error"
        raise UserError(f"trace file '{shown}' is not a valid CSV: {first_line}") from None
    except UnicodeDecodeError:
        raise UserError(f"trace file '{shown}' is not UTF-8 text") from None
    table.columns = [str(c).strip() for c in table.columns]
    if len(table) == 0:
        raise UserError(f"trace file '{shown}' has a header but no data rows")
    return table


def _numeric_column(table: pd.DataFrame, name: str, path: str | os.PathLike) -> np.ndarray:
    if name not in table.columns:
        raise UserError(
            f"trace file '{path}' has no column '{name}' (columns found: {_columns(table)})"
        )
    text = table[name].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raw = text.iloc[row]
        what = "is empty" if raw == "" else f"is not a finite number ({raw!r})"
        raise UserError(f"trace file '{path}': column '{name}' data row {row + 1} {what}")
    negative = values < 0
    if negative.any():
        row = int(np.argmax(negative))
        where = f"trace file '{path}': column '{name}' data row {row + 1}"
        raise UserError(f"{where} is negative ({text.iloc[row]})")
    return values


def _token_column(table: pd.DataFrame, name: str, path: str | os.PathLike) -> np.ndarray:
    values = _numeric_column(table, name, path)
    fractional = values != np.floor(values)
    if fractional.any():
        row = int(np.argmax(fractional))
        raise UserError(
            f"trace file '{path}': column '{name}' data row {row + 1} is not a whole number "
            f"({table[name].iloc[row].strip()})"
        )
    return values.astype(np.int64)


def _columns(table: pd.DataFrame) -> str:
    return ", ".join(table.columns) if len(table.columns) else "none"
