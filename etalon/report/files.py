"""Writes a run's result files: summary.json, config.json (redacted), per-metric CSVs, plots.

Results are written before plots, and each file is written to a temporary name and renamed,
so a crash or a plotting failure never leaves a half-written summary behind.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from etalon.metrics.latency import latency_series
from etalon.metrics.per_request import COLUMNS, request_rows
from etalon.records import RequestRecord
from etalon.report.plots import make_plots
from etalon.report.redact import redact

__all__ = ["write_run_outputs", "redact", "write_json", "write_csv"]

# Per-request deadline columns of requests.csv that also get a CSV of their own.
DEADLINE_CSVS: tuple[str, ...] = ("fluidity_index", "deadline_misses", "min_tbt_deadline")
_UNIT_SUFFIX = {"s": "_s", "s/token": "_s_per_token"}


def write_run_outputs(
    output_dir: str | Path,
    records: Sequence[RequestRecord],
    summary: dict,
    config: dict,
    *,
    plots: bool = True,
) -> dict[str, Path]:
    """Writes every result file into ``output_dir``; returns ``{name: path}``.

    Names: ``summary``, ``config``, ``requests`` (the flat table), ``csv/<metric>`` for each
    per-metric CSV and ``plot/<plot>`` for each PNG under ``plots/``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = list(records)
    params = summary.get("parameters", {}) if isinstance(summary, dict) else {}
    ttft_d, tbt_d = params.get("ttft_deadline_s"), params.get("tbt_deadline_s")

    paths = {
        "summary": write_json(out / "summary.json", summary),
        "config": write_json(out / "config.json", redact(config)),
    }
    for name, series in latency_series(records).items():
        column = name + _UNIT_SUFFIX.get(series.spec.unit, "")
        paths[f"csv/{name}"] = write_csv(
            out / f"{name}.csv", ("request_id", column), zip(series.request_ids, series.values)
        )
    rows = request_rows(records, ttft_d, tbt_d)
    paths["requests"] = write_csv(out / "requests.csv", COLUMNS,
                                  ([row[c] for c in COLUMNS] for row in rows))
    for name in DEADLINE_CSVS:
        values = [(row["request_id"], row[name]) for row in rows if row[name] is not None]
        if values:
            column = name + ("_s" if name == "min_tbt_deadline" else "")
            paths[f"csv/{name}"] = write_csv(out / f"{name}.csv", ("request_id", column), values)
    if plots:
        try:
            for name, path in make_plots(records, out / "plots").items():
                paths[f"plot/{name}"] = path
        except Exception as exc:  # plots are a view; the results above are already safe
            print(f"etalon: warning: plots were not written ({type(exc).__name__}: {exc})",
                  file=sys.stderr)
    return paths


def _json_safe(value: Any) -> Any:
    """Replaces NaN/inf with None (JSON has no such numbers) and numpy scalars with Python ones."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _atomic_write(path: Path, write) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        write(fh)
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Writes ``data`` as indented JSON (strict: no NaN) and returns the path."""
    text = json.dumps(_json_safe(data), indent=2, allow_nan=False, default=str)
    return _atomic_write(Path(path), lambda fh: fh.write(text + "\n"))


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Writes a CSV with ``header``; None becomes an empty cell."""

    def write(fh) -> None:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])

    return _atomic_write(Path(path), write)
