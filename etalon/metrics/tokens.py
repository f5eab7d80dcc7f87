"""How many output tokens a record carries and where that count came from, for the client that
judges a request as it finishes (the columnar twin, over a whole run, is
:class:`etalon.metrics.columns.RunColumns`' ``output_tokens``)."""

from __future__ import annotations

from etalon.records import RequestRecord


def output_tokens(record: RequestRecord) -> tuple[int, str]:
    """``(count, source)``: the record's own count when it has one, else the streamed tokens."""
    if record.num_output_tokens is not None:
        return int(record.num_output_tokens), record.output_tokens_source or "unknown"
    return int(sum(t for t in record.chunk_tokens if t > 0)), "chunks"

