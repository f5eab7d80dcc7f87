"""Settles a finished stream's token counts: the counts metrics use, where each came from, every
other count the client could make, and tokens per chunk.

Prompt: the server's ``usage`` when it sent one, else the tokenizer's count of the prompt as
the chat template wraps it (chat, with a template), else of the text alone, else the requested
length. The tokenizer counts are made before the run (``LLMClient.count_prompt``).

Output: the server's ``usage`` when it sent one. Without it, a content chunk is one generated
token when the stream is one token per chunk, as most servers stream — re-tokenizing the text
is not the same as counting generated tokens (tokens merge, special tokens vanish). With a
tokenizer the client checks that: it counts each chunk's text alone, and when the typical chunk
holds several tokens it uses the tokenizer's count of the whole text instead. Without a
tokenizer the chunk count is used unchecked.

When the total exceeds the number of chunks the server put several tokens in some chunks; the
extra tokens are assigned to chunks in proportion to each chunk's own token count (tokenizer) or
its length in characters, so per-token metrics see them.
"""

from __future__ import annotations

import numpy as np

from etalon.records import RequestRecord

# Prompt count sources, most trusted first.
PROMPT_PREFERENCE = ("usage", "chat_template", "tokenizer")


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


def one_token_per_chunk(chunk_counts: list[int]) -> bool:
    """Whether a stream is one token per chunk, from each chunk's text counted alone.

    A generated token re-encoded alone is nearly always one token; a few are not (a character
    split over two tokens, a token that only exists after the one before it), so the typical
    (median) chunk decides, not every chunk.
    """
    return bool(chunk_counts) and float(np.median(chunk_counts)) <= 1.0


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def settle_token_counts(record: RequestRecord, texts: list[str], usage: dict | None,
                        tokenizer) -> None:
    """Fills the record's prompt and output counts, their sources and ``chunk_tokens``."""
    usage = usage if isinstance(usage, dict) else {}
    settle_prompt(record, _count(usage.get("prompt_tokens")))
    settle_output(record, texts, _count(usage.get("completion_tokens")), tokenizer)


def settle_prompt(record: RequestRecord, usage_tokens: int | None) -> None:
    counts = dict(record.prompt_token_counts)
    if usage_tokens is not None:
        counts["usage"] = usage_tokens
    record.prompt_token_counts = counts
    source = next((s for s in PROMPT_PREFERENCE if s in counts), None)
    if source is None:
        record.num_prompt_tokens, record.prompt_tokens_source = (record.requested_prompt_tokens,
                                                                 "requested")
    else:
        record.num_prompt_tokens, record.prompt_tokens_source = counts[source], source


def settle_output(record: RequestRecord, texts: list[str], usage_tokens: int | None,
                  tokenizer) -> None:
    counts = {"chunks": len(texts)}
    per_chunk: list[int] | None = None
    if usage_tokens is not None:
        counts["usage"] = usage_tokens
        total, source = usage_tokens, "usage"
    elif tokenizer is not None and texts:
        per_chunk = tokenizer.count_many(texts)
        counts["tokenizer"] = tokenizer.count("".join(texts))
        if one_token_per_chunk(per_chunk):
            total, source = len(texts), "chunks"
        else:  # every content chunk carried at least one token
            total, source = max(counts["tokenizer"], len(texts)), "tokenizer"
    else:
        total, source = len(texts), "chunks"
    record.output_token_counts = counts
    record.num_output_tokens, record.output_tokens_source = total, source
    if texts:
        if total > len(texts) and per_chunk is None and tokenizer is not None:
            per_chunk = tokenizer.count_many(texts)
        weights = per_chunk if total > len(texts) and per_chunk else [len(t) for t in texts]
        record.chunk_tokens = split_tokens(total, weights)
