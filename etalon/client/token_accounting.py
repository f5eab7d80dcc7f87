"""Settles a finished stream's token counts: totals with their source, and tokens per chunk.

Totals come from the server's ``usage`` when it sent one, else the tokenizer on the whole text,
else the number of content chunks. When the total exceeds the number of chunks the server put
several tokens in some chunks; the extra tokens are assigned to chunks in proportion to each
chunk's own token count (tokenizer) or its length in characters, so per-token metrics see them.
"""

from __future__ import annotations

import numpy as np

from etalon.records import RequestRecord


def split_tokens(total: int, weights: list[float]) -> list[int]:
    """Splits ``total`` tokens over chunks: at least one each, the rest by largest remainder."""
    n = len(weights)
    if total <= n:
        return [1] * n
    w = np.asarray(weights, dtype=float)
    w = np.where(w > 0, w, 1e-9)
    extra = total - n
    share = extra * w / w.sum()
    base = np.floor(share).astype(int)
    left = extra - int(base.sum())
    if left:
        order = np.argsort(-(share - base), kind="stable")[:left]
        base[order] += 1
    return (base + 1).tolist()


def settle_token_counts(record: RequestRecord, prompt: str, texts: list[str],
                        usage: dict | None, tokenizer) -> None:
    usage = usage or {}
    if isinstance(usage.get("prompt_tokens"), int):
        record.num_prompt_tokens, record.prompt_tokens_source = usage["prompt_tokens"], "usage"
    elif tokenizer is not None:
        record.num_prompt_tokens, record.prompt_tokens_source = tokenizer.count(prompt), "tokenizer"
    else:
        record.num_prompt_tokens = record.requested_prompt_tokens
        record.prompt_tokens_source = "requested"

    if isinstance(usage.get("completion_tokens"), int):
        total, source = usage["completion_tokens"], "usage"
    elif tokenizer is not None and texts:
        total, source = tokenizer.count("".join(texts)), "tokenizer"
    else:
        total, source = len(texts), "chunks"
    record.num_output_tokens, record.output_tokens_source = total, source

    if texts:
        if tokenizer is not None and total > len(texts):
            weights = [tokenizer.count(t) for t in texts]
        else:
            weights = [len(t) for t in texts]
        record.chunk_tokens = split_tokens(total, weights)
