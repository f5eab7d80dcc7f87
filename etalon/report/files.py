"""Writes a run's result files: summary.json, config.json (redacted), the records as Parquet,
requests.csv, plots.

Results are written before plots are drawn in process (a helper process draws them meanwhile:
``etalon.report.plot_worker``), and each file is written to a temporary name and renamed, so a
crash or a plotting failure never leaves a half-written summary behind.

Per-sample CSVs (one line per TBT sample: 4.4 M lines, 15 s, for a 10k-request ShareGPT run)
are gone: every per-request metric is a column of ``requests.csv`` and every chunk a row of
``tokens.parquet``, from which any per-token metric is one vectorised step
(``etalon.metrics.latency.latency_series(read_table(run_dir))``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from etalon.metrics.columns import RunColumns
from etalon.metrics.per_request import request_frame
from etalon.record_table import RecordTable
from etalon.records import RequestRecord
from etalon.report.redact import redact

if TYPE_CHECKING:
    from concurrent.futures import Future

    from etalon.report.plot_worker import PlotWorker

__all__ = ["write_run_outputs", "redact", "write_json", "write_csv", "json_safe"]


def write_run_outputs(
    output_dir: str | Path,
    records: "Sequence[RequestRecord] | RecordTable | RunColumns",
    summary: dict,
    config: dict,
    *,
    plots: bool = True,
    stored: "Sequence[RequestRecord] | None" = None,
    plotter: "PlotWorker | None" = None,
    written: "Future[dict[str, Path]] | None" = None,
) -> dict[str, Path]:
    """Writes every result file into ``output_dir``; returns ``{name: path}``.

    Names: ``summary``, ``config``, ``records`` (``requests.parquet``), ``tokens``
    (``tokens.parquet``), ``requests`` (``requests.csv``, the flat per-request table) and
    ``plot/<plot>`` for each PNG under ``plots/``. ``stored``: the records the Parquet pair
    keeps when they are more than the measured ones (a simulation's warm-up requests).
    ``plotter``: the caller's :class:`PlotWorker`, whose ``finish()`` then gives the plots'
    names (they may still be drawing when this returns); without one they are drawn here.
    ``written``: the Parquet pair the caller is writing already
    (:meth:`RecordTable.write_in_background`), waited for here instead of written again.
    """
    from etalon.report.plot_worker import PlotWorker

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = RunColumns.of(records)
    params = summary.get("parameters", {}) if isinstance(summary, dict) else {}
    paths = {
        "summary": write_json(out / "summary.json", summary),
        "config": write_json(out / "config.json", redact(config)),
    }
    worker = plotter or PlotWorker()
    if plots:  # a helper draws them while the files below are written; in process, after them
        worker.submit(plot_specs(columns, worker), out / "plots")
    if written is None:
        table = columns.table if stored is None else RecordTable.from_records(stored)
        records = table.write(out)
    frame = request_frame(columns, params.get("ttft_deadline_s"), params.get("tbt_deadline_s"))
    paths["requests"] = _write_frame_csv(out / "requests.csv", frame)
    if written is not None:
        records = written.result()
    paths["records"], paths["tokens"] = records["requests"], records["tokens"]
    if plotter is None:
        paths.update(worker.finish())
    return paths


def plot_specs(columns: RunColumns, worker: "PlotWorker",
               names: "Iterable[str] | None" = None) -> dict:
    """The specs of the run's plots among ``names`` (default: every one) that ``worker`` was
    not handed yet; a failure is a warning and no plots."""
    from etalon.report.figures import RUN_PLOTS, run_specs
    from etalon.report.plot_worker import warn_not_drawn

    try:
        return run_specs(columns, set(RUN_PLOTS if names is None else names) - worker.submitted)
    except Exception as exc:  # plots are a view; the results are written regardless
        warn_not_drawn(exc)
        return {}


def json_safe(value: Any) -> Any:
    """Replaces NaN/inf with None (JSON has no such numbers) and numpy scalars with Python ones."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_frame_csv(path: Path, frame) -> Path:
    """``frame`` as CSV by Arrow's writer: 100k rows of ~35 columns in 0.3 s where pandas' takes
    2.4-3.4 s. Booleans are written ``True``/``False`` as pandas writes them (Arrow's own are
    lower case); Arrow quotes text cells, which every CSV reader unquotes."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, field in enumerate(table.schema):
        if pa.types.is_boolean(field.type):
            text = pc.if_else(table.column(i), "True", "False")
            table = table.set_column(i, field.name, text)
    return _atomic_write(path, lambda fh: pa_csv.write_csv(table, fh), binary=True)


def _atomic_write(path: Path, write, binary: bool = False) -> Path:
    """``write(file)`` into a temporary name beside ``path``, then renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    with (open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8", newline="")) as fh:
        write(fh)
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Writes ``data`` as indented JSON (strict: no NaN) and returns the path."""
    text = json.dumps(json_safe(data), indent=2, allow_nan=False, default=str)
    return _atomic_write(Path(path), lambda fh: fh.write(text + "\n"))


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Writes a CSV with ``header``; None becomes an empty cell."""

    def write(fh) -> None:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])

    return _atomic_write(Path(path), write)
