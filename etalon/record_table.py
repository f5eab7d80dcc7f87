"""A run's records as columns: one row per request plus one flat table of every streamed chunk.

``RequestRecord`` objects are how a client or the simulator *collects* a request; once a run is
over, metrics, files and plots read columns. A 10k-request ShareGPT simulation streams 4.4 M
chunks: as objects that is 4.4 M floats to walk one by one, as columns it is two numpy arrays.

On disk a run is ``requests.parquet`` (the record's scalar fields, one row per request, counts
by source as JSON text) and ``tokens.parquet`` (``request_id``, ``time``, ``tokens``: every
chunk, in request order, zero-token chunks included). pandas reads both
(``pd.read_parquet``). A live run also keeps its crash-safe ``requests.jsonl`` stream, and
:func:`read_table` / :func:`read_records` load any of the three forms, old runs included.
"""

from __future__ import annotations

import itertools
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from etalon.cli_errors import UserError
from etalon.records import RequestRecord, load_records

REQUESTS_FILE = "requests.parquet"
TOKENS_FILE = "tokens.parquet"
JSONL_FILE = "requests.jsonl"

_CHUNK_FIELDS = ("chunk_times", "chunk_tokens")
# Tokens per chunk in memory: a count never near 2**31, and half the bytes of the longest
# column a run holds (one per chunk: 44 M in a 100k-request ShareGPT simulation). Files keep
# int64.
TOKEN_DTYPE = np.int32
_WRITE_SLICE = 1 << 22  # chunks per slice of tokens.parquet being written
_COUNT_FIELDS = ("prompt_token_counts", "output_token_counts")  # dicts, stored as JSON text
# the scalar fields of RequestRecord, in its order: the columns of requests.parquet
SCALAR_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RequestRecord) if f.name not in _CHUNK_FIELDS)
_KIND = {f.name: str(f.type).split(" ")[0].split("[")[0] for f in fields(RequestRecord)}
INT_FIELDS = tuple(n for n in SCALAR_FIELDS if _KIND[n] == "int")
_DEFAULTS = {f.name: f.default for f in fields(RequestRecord) if f.default is not MISSING}
# fields added after requests.parquet first shipped, and what an older table holds for them
LATER_FIELDS = {"prefix_group": None, "prefix_tokens": 0}


@dataclass
class RecordTable:
    """``requests``: one row per request (:data:`SCALAR_FIELDS` and ``num_chunks``; missing
    numbers are NaN, missing text None). ``chunk_times`` / ``chunk_tokens``: every chunk of
    every request, request after request, each request's chunks in arrival order."""

    requests: pd.DataFrame
    chunk_times: np.ndarray
    chunk_tokens: np.ndarray

    def __post_init__(self) -> None:
        total = int(self.requests["num_chunks"].sum()) if len(self.requests) else 0
        if total != len(self.chunk_times) or total != len(self.chunk_tokens):
            raise UserError(f"{total} chunks counted by the requests, {len(self.chunk_times)} times "
                            f"and {len(self.chunk_tokens)} token counts given")

    def __len__(self) -> int:
        return len(self.requests)

    # --- building ---------------------------------------------------------------------------

    @classmethod
    def from_records(cls, records: "list[RequestRecord] | RecordTable") -> "RecordTable":
        """Columns of collected records (a table is returned as it is)."""
        if isinstance(records, RecordTable):
            return records
        records = list(records)
        values = {name: [getattr(r, name) for r in records] for name in SCALAR_FIELDS}
        return cls.from_values(values, [r.chunk_times for r in records],
                               [r.chunk_tokens for r in records])

    @classmethod
    def from_values(cls, values: dict[str, list], chunk_times: list,
                    chunk_tokens: list | None = None) -> "RecordTable":
        """Columns of requests given field by field: ``values[name][i]`` is request i's
        ``name`` (a field left out takes ``RequestRecord``'s default), ``chunk_times[i]`` its
        chunks' times and ``chunk_tokens[i]`` their tokens (None: one token per chunk). What a
        collector that never makes record objects (the simulator) hands over."""
        n = len(chunk_times)
        data = {}
        for name in SCALAR_FIELDS:
            if name in values:
                data[name] = values[name]
            elif name in _COUNT_FIELDS:
                data[name] = [None] * n  # no counts: no JSON text
            else:
                data[name] = [_DEFAULTS[name]] * n
        for name in _COUNT_FIELDS:
            if name in values:
                data[name] = [_json(c) for c in data[name]]
        counts = np.fromiter(map(len, chunk_times), dtype=np.int64, count=n)
        data["num_chunks"] = counts
        total = int(counts.sum())
        times = _flat(chunk_times, float, total)
        tokens = (np.ones(total, dtype=TOKEN_DTYPE) if chunk_tokens is None
                  else _flat(chunk_tokens, TOKEN_DTYPE, total))
        return cls(pd.DataFrame(data, columns=[*SCALAR_FIELDS, "num_chunks"]), times, tokens)

    def to_records(self) -> list[RequestRecord]:
        """Back to objects (for code that walks requests one by one, e.g. a replay)."""
        cols = {name: _python_values(self.requests[name], name in INT_FIELDS) for name in SCALAR_FIELDS}
        for name in _COUNT_FIELDS:
            cols[name] = [json.loads(c) if c else {} for c in cols[name]]
        bounds = self.offsets
        times, tokens = self.chunk_times.tolist(), self.chunk_tokens.tolist()
        return [RequestRecord(**{name: cols[name][i] for name in SCALAR_FIELDS},
                              chunk_times=times[bounds[i]:bounds[i + 1]],
                              chunk_tokens=tokens[bounds[i]:bounds[i + 1]])
                for i in range(len(self))]

    def select(self, rows: np.ndarray) -> "RecordTable":
        """The requests where the boolean mask ``rows`` is True, with their chunks."""
        rows = np.asarray(rows, dtype=bool)
        keep = rows[self.chunk_row]
        return RecordTable(self.requests[rows].reset_index(drop=True), self.chunk_times[keep],
                           self.chunk_tokens[keep])

    # --- the shape of the chunk table --------------------------------------------------------

    @property
    def offsets(self) -> np.ndarray:
        """Request i's chunks are ``chunk_*[offsets[i]:offsets[i + 1]]``."""
        return np.concatenate([[0], np.cumsum(self.requests["num_chunks"].to_numpy(np.int64))])

    @property
    def chunk_row(self) -> np.ndarray:
        """The request row (position, not id) of every chunk."""
        return np.repeat(np.arange(len(self)), self.requests["num_chunks"].to_numpy(np.int64))

    def numbers(self, name: str) -> np.ndarray:
        """A numeric column as floats, NaN where a request has none."""
        return self.requests[name].to_numpy(dtype=float, na_value=np.nan)

    def missing(self, name: str) -> np.ndarray:
        """Where a column has no value."""
        return self.requests[name].isna().to_numpy()

    # --- files --------------------------------------------------------------------------------

    def write(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Writes ``requests.parquet`` and ``tokens.parquet`` (each to a temporary name first)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        requests = pa.Table.from_pandas(self.requests, schema=_requests_schema(pa), preserve_index=False)
        paths = {"requests": out / REQUESTS_FILE, "tokens": out / TOKENS_FILE}
        tmp = {name: path.with_name(path.name + ".tmp") for name, path in paths.items()}
        pq.write_table(requests, tmp["requests"])
        # The chunk table in slices: its request ids (one int64 per chunk) and the file's int64
        # token counts exist a slice at a time, not 44 M at once next to the run's columns.
        ids = self.requests["request_id"].to_numpy(np.int64)
        counts = self.requests["num_chunks"].to_numpy(np.int64)
        ends = np.cumsum(counts)
        schema = pa.schema([("request_id", pa.int64()), ("time", pa.float64()),
                            ("tokens", pa.int64())])
        # Times are zstd-compressed without a dictionary: a dictionary of 44 M mostly distinct
        # floats is built and dropped page by page (a 100k-request simulation: 2.05 -> 1.83 s
        # to write the chunks and 60 -> 27 MB on disk).
        with pq.ParquetWriter(tmp["tokens"], schema, compression="zstd",
                              use_dictionary=["request_id", "tokens"]) as writer:
            for start in range(0, max(len(self.chunk_times), 1), _WRITE_SLICE):
                stop = min(start + _WRITE_SLICE, len(self.chunk_times))
                writer.write_table(pa.table({
                    "request_id": _ids_of_chunks(ids, counts, ends, start, stop),
                    "time": self.chunk_times[start:stop],
                    "tokens": self.chunk_tokens[start:stop].astype(np.int64)}, schema=schema))
        for name, path in paths.items():
            os.replace(tmp[name], path)
        return paths

    def write_in_background(self, out_dir: str | os.PathLike) -> "Future[dict[str, Path]]":
        """:meth:`write` on a thread of its own, while the caller computes the summary: Arrow
        encodes and compresses without the GIL, so on a second core the files cost the run
        almost nothing (2.7 s of a 100k-request simulation's records). The table must not
        change until the future is done; ``result()`` gives the paths or raises the error."""
        pool = ThreadPoolExecutor(1, thread_name_prefix="etalon-records")
        future = pool.submit(self.write, out_dir)
        pool.shutdown(wait=False)  # the thread ends with its one task
        return future

    @classmethod
    def read_parquet(cls, requests_path: str | os.PathLike) -> "RecordTable":
        """``requests.parquet`` and the ``tokens.parquet`` beside it."""
        import pyarrow.parquet as pq

        path = Path(requests_path)
        tokens_path = path.with_name(TOKENS_FILE)
        try:
            requests = pq.read_table(path).to_pandas()
            tokens = pq.read_table(tokens_path).to_pandas()
        except FileNotFoundError as exc:
            missing = tokens_path if path.exists() else path
            raise UserError(f"{missing}: not found (a run's records are {REQUESTS_FILE} "
                            f"and {TOKENS_FILE} side by side)") from None
        except Exception as exc:  # pyarrow's errors for a damaged or foreign file
            raise UserError(f"{path}: not a readable records table ({type(exc).__name__}: {exc})") from None
        for name, default in LATER_FIELDS.items():  # tables written before the field existed
            if name not in requests.columns:
                requests[name] = default
        missing = [c for c in (*SCALAR_FIELDS, "num_chunks") if c not in requests.columns]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
        for column in ("request_id", "time", "tokens"):
            if column not in tokens.columns:
                raise UserError(f"{tokens_path}: missing column {column!r}")
        try:
            return cls(requests[[*SCALAR_FIELDS, "num_chunks"]], tokens["time"].to_numpy(float),
                       tokens["tokens"].to_numpy(TOKEN_DTYPE))
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None


def _ids_of_chunks(ids: np.ndarray, counts: np.ndarray, ends: np.ndarray, start: int,
                   stop: int) -> np.ndarray:
    """The request id of each chunk in ``[start, stop)`` (``ends``: the cumulative ``counts``):
    the slice's requests' ids repeated, their first and last cut to the slice."""
    if stop <= start:
        return np.empty(0, dtype=np.int64)
    first, last = np.searchsorted(ends, [start, stop - 1], side="right")
    n = counts[first:last + 1].copy()
    n[0] = min(ends[first], stop) - start
    if last > first:
        n[-1] = stop - ends[last - 1]
    return np.repeat(ids[first:last + 1], n)


def _flat(parts: list, dtype, total: int) -> np.ndarray:
    """One array of every record's chunks: numpy arrays (the simulator's) are joined in C,
    lists (a live client's) are streamed through ``fromiter`` without a copy per record."""
    if parts and all(type(p) is np.ndarray for p in parts):
        # cast while joining: no int64 copy of 44 M token counts to cast afterwards
        return np.concatenate(parts, dtype=dtype, casting="same_kind") if total else np.empty(0, dtype)
    return np.fromiter(itertools.chain.from_iterable(parts), dtype=dtype, count=total)


def _requests_schema(pa):
    kinds = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "dict": pa.string()}
    return pa.schema([(n, kinds[_KIND[n]]) for n in SCALAR_FIELDS] + [("num_chunks", pa.int64())])


def _json(counts: dict) -> str | None:
    return json.dumps(counts, separators=(",", ":"), sort_keys=True) if counts else None


def _python_values(column: pd.Series, integers: bool) -> list:
    """A column as Python values, None where missing (ints come back as ints)."""
    values = column.astype(object).where(column.notna(), None).tolist()
    return [None if v is None else int(v) for v in values] if integers else values


def read_table(path: str | os.PathLike) -> RecordTable:
    """A run's records from a run directory, ``requests.parquet`` or ``requests.jsonl``.

    In a directory the Parquet pair wins when present (the complete, converted form); else the
    JSONL stream, which a live run writes as requests finish."""
    p = Path(path)
    if p.is_dir():
        p = p / REQUESTS_FILE if (p / REQUESTS_FILE).exists() else p / JSONL_FILE
    if p.suffix == ".parquet":
        return RecordTable.read_parquet(p)
    return RecordTable.from_records(load_records(p))


def read_records(path: str | os.PathLike) -> list[RequestRecord]:
    """Like :func:`read_table`, as record objects."""
    p = Path(path)
    if p.suffix == ".jsonl":
        return load_records(p)
    return read_table(p).to_records()
