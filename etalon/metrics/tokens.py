"""How many tokens a record carries and where that count came from (per record; the
columnar twins are :class:`etalon.metrics.columns.RunColumns`' ``output_tokens``/``prompt_tokens``)."""

from __future__ import annotations

from etalon.records import RequestRecord


def output_tokens(record: RequestRecord) -> tuple[int, str]:
    """``(count, source)``: the record's own count when it has one, else the streamed tokens."""
    if record.num_output_tokens is not None:
        return int(record.num_output_tokens), record.output_tokens_source or "unknown"
    return int(sum(t for t in record.chunk_tokens if t > 0)), "chunks"


def prompt_tokens(record: RequestRecord) -> tuple[int, str]:
    """``(count, source)``: the record's own count when it has one, else the requested length."""
    if record.num_prompt_tokens is not None:
        return int(record.num_prompt_tokens), record.prompt_tokens_source or "unknown"
    return int(record.requested_prompt_tokens), "requested"
