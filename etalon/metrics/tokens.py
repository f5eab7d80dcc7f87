"""How many tokens a record carries, where that count came from, and when each token arrived."""

from __future__ import annotations

import numpy as np

from etalon.records import RequestRecord


def content_chunks(record: RequestRecord) -> tuple[np.ndarray, np.ndarray]:
    """``(times, tokens)`` of the chunks that carried at least one token, in arrival order.

    Chunks with a zero token count carry nothing a user sees, so they are dropped here and never
    reset a gap or count as a first token.
    """
    times = np.asarray(record.chunk_times, dtype=float)
    tokens = np.asarray(record.chunk_tokens, dtype=np.int64)
    keep = tokens > 0
    return times[keep], tokens[keep]


def token_times(record: RequestRecord) -> np.ndarray:
    """The arrival time of every streamed token: a chunk of k tokens gives k equal times."""
    times, tokens = content_chunks(record)
    return np.repeat(times, tokens)


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
