"""FLOPs of a forward pass: matmuls per token, causal attention, prefill and decode totals.

A matmul with ``n`` weights costs ``2n`` FLOPs per token (one multiply and one add). Attention
costs ``attention_flops_per_pair`` per (query, key) pair and layer: QK^T and PV over all heads.
A causal prefill of ``n`` tokens has ``n (n + 1) / 2`` pairs, which is the quadratic term; a
sliding-window layer sees at most ``window`` keys per query. The LM head runs only for tokens
that are sampled (the last of each prompt, every decode token), as in vLLM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from etalon.estimator.shards import attention_flops_per_pair
from etalon.estimator.spec import ModelSpec


def linear_flops_per_token(model: ModelSpec) -> float:
    """Matmul FLOPs one token costs in the decoder layers (routed experts: only the active ones)."""
    k = model.moe.experts_per_token if model.moe else 0
    return 2.0 * sum(layer.active(k) - layer.norms for layer in model.params.layers)


def lm_head_flops(model: ModelSpec) -> float:
    """FLOPs of the LM head for one sampled token."""
    return 2.0 * model.vocab_size * model.hidden_size


def causal_pairs(tokens: int, context_before: int = 0, window: int | None = None) -> float:
    """(query, key) pairs of ``tokens`` new tokens after ``context_before`` cached ones, each
    query attending to itself and everything before it, or to its last ``window`` keys."""
    if window is None:
        return tokens * (context_before + (tokens + 1) / 2.0)
    total = 0.0
    # Queries at positions context_before+1 .. context_before+tokens see min(position, window) keys.
    lo, hi = context_before + 1, context_before + tokens
    ramp_end = min(hi, window)
    if lo <= ramp_end:
        total += (lo + ramp_end) * (ramp_end - lo + 1) / 2.0
    flat_start = max(lo, window + 1)
    if flat_start <= hi:
        total += window * (hi - flat_start + 1)
    return total


@dataclass(frozen=True)
class Flops:
    """FLOPs of one pass, split into matmuls, attention and LM head."""

    linear: float
    attention: float
    lm_head: float

    @property
    def total(self) -> float:
        return self.linear + self.attention + self.lm_head

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def attention_flops(model: ModelSpec, tokens: int, context_before: int = 0) -> float:
    """Attention FLOPs of ``tokens`` new tokens after ``context_before`` cached ones."""
    per_pair = attention_flops_per_pair(model)
    return sum(per_pair * causal_pairs(tokens, context_before, w) for w in model.layer_windows)


def prefill_flops(model: ModelSpec, prompt_len: int) -> Flops:
    """FLOPs of prefilling one prompt of ``prompt_len`` tokens (and sampling its first token)."""
    return Flops(
        linear=linear_flops_per_token(model) * prompt_len,
        attention=attention_flops(model, prompt_len),
        lm_head=lm_head_flops(model),
    )


def decode_flops(model: ModelSpec, context_len: int) -> Flops:
    """FLOPs of generating one token with ``context_len`` tokens already cached."""
    return Flops(
        linear=linear_flops_per_token(model),
        attention=attention_flops(model, 1, context_len),
        lm_head=lm_head_flops(model),
    )
