"""What one device of one pipeline stage holds and computes, given TP/EP sharding.

Memory planning, the roofline step time and the distributed (Petals) estimator all need the same
per-device quantities: resident weight bytes, KV bytes per cached token, matmul FLOPs per token
and attention FLOPs per (query, key) pair. Computing them here once keeps the three consistent.
Sharding follows ``params.LayerParams``: q/o split by heads, k/v by KV heads (replicated once
TP exceeds them), MLPs split by TP, routed experts split by TP or spread whole over EP ranks,
embeddings and LM head vocab-parallel, norms and routers replicated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from etalon.cli_errors import UserError
from etalon.estimator.dtypes import DType, get_dtype, get_kv_dtype
from etalon.estimator.layout import split_layers
from etalon.estimator.params import LayerParams
from etalon.estimator.spec import ModelSpec

Window = int | None


def resolve_dtypes(model: ModelSpec, dtype: str | None, kv_dtype: str | None) -> tuple[DType, DType]:
    """(weight dtype, KV dtype), defaulting to the model's own and to its activation dtype."""
    weight = get_dtype(dtype or model.weight_dtype)
    kv = get_kv_dtype(model.activation_dtype if kv_dtype in (None, "auto") else kv_dtype)
    return weight, kv


def kv_bytes_per_token_layer(model: ModelSpec, kv: DType) -> float:
    """KV bytes one token adds to one layer on a single device (no sharding).

    MHA/GQA/MQA cache K and V per KV head: ``2 * n_kv * head_dim * b``; MLA caches one latent and
    one rotary key shared by all heads: ``(kv_lora_rank + qk_rope_head_dim) * b``.
    """
    if model.mla is not None:
        return (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * kv.bytes
    return 2 * model.num_kv_heads * model.head_dim * kv.bytes


def kv_shard_fraction(model: ModelSpec, tp: int) -> float:
    """Share of a layer's KV one TP rank stores: KV heads split until each rank has one, then
    replicated; MLA's latent is replicated on every rank."""
    if model.mla is not None:
        return 1.0
    per_rank = max(model.num_kv_heads // tp, 1)
    return per_rank / model.num_kv_heads


def attention_flops_per_pair(model: ModelSpec) -> float:
    """FLOPs of one (query, key) pair in one layer: QK^T and PV, 2 FLOPs per multiply-add."""
    if model.mla is not None:
        return 2 * model.num_heads * (model.mla.qk_head_dim + model.mla.v_head_dim)
    return 4 * model.num_heads * model.head_dim


@dataclass(frozen=True)
class StageShard:
    """One device of one pipeline stage. Bytes and FLOPs are per device.

    ``embedding_bytes`` is the resident part a text decode step does not stream: the embedding
    table (a lookup) and any vision encoder. ``kv_bytes_per_token`` and
    ``attention_flops_per_pair`` are keyed by sliding window (None =
    full attention) so callers can cap window layers at their window.
    """

    layers: tuple[int, ...]
    has_embedding: bool
    has_lm_head: bool
    weight_bytes: float
    embedding_bytes: float
    expert_bytes: float
    kv_bytes_per_token: dict[Window, float]
    linear_flops_per_token: float
    attention_flops_per_pair: dict[Window, float]
    lm_head_flops_per_token: float
    num_experts: int
    experts_per_token: int

    @property
    def kv_bytes_per_token_total(self) -> float:
        return sum(self.kv_bytes_per_token.values())

    def kv_bytes_for_context(self, context_len: int) -> float:
        """KV bytes one request of ``context_len`` tokens holds here, windows capped."""
        return sum(b * (context_len if w is None else min(context_len, w)) for w, b in self.kv_bytes_per_token.items())

    def streamed_weight_bytes(self, tokens: float) -> float:
        """Weight bytes one step reads for ``tokens`` tokens: everything but the embedding table
        (a lookup) and, for MoE, only the experts the tokens are expected to hit:
        ``E * (1 - (1 - k/E)^tokens)`` of ``E`` per layer with uniform routing."""
        dense = self.weight_bytes - self.embedding_bytes - self.expert_bytes
        if not self.expert_bytes:
            return dense
        miss = (1.0 - self.experts_per_token / self.num_experts) ** tokens
        return dense + self.expert_bytes * (1.0 - miss)


class _Sizer:
    """Bytes of a parameter group under the weight dtype rules of ``dtypes.DType``."""

    def __init__(self, model: ModelSpec, weight: DType) -> None:
        self.high = get_dtype(model.activation_dtype).bytes if weight.quantized else weight.bytes
        self.low = weight.bytes
        # A checkpoint's own scope (gpt-oss: MXFP4 experts only) holds for its own format; a
        # different --dtype is applied to every linear layer.
        self.experts_only = model.quantized_scope == "experts" and weight.name == model.weight_dtype

    def linear(self, n: float) -> float:
        return n * (self.high if self.experts_only else self.low)

    def experts(self, n: float) -> float:
        return n * self.low

    def plain(self, n: float) -> float:
        return n * self.high


def _layer_weights(p: LayerParams, model: ModelSpec, size: _Sizer, tp: int, ep: int) -> tuple[float, float]:
    """(all resident bytes, routed-expert bytes) of one layer on one device."""
    kv_frac = kv_shard_fraction(model, tp)
    attn = size.linear(p.attn_heads / tp + p.attn_kv * kv_frac + p.attn_shared)
    mlp = size.linear(p.mlp / tp + p.shared_experts / tp)
    if p.experts:
        n_exp = model.moe.num_experts
        local = math.ceil(n_exp / ep) * p.expert_size if ep > 1 else p.experts / tp
        experts = size.experts(local)
    else:
        experts = 0.0
    return attn + mlp + experts + size.plain(p.router + p.norms), experts


def _layer_flops(p: LayerParams, model: ModelSpec, tp: int, ep: int) -> float:
    """Matmul FLOPs per token of one layer on one device (2 per multiply-add, active experts)."""
    kv_frac = kv_shard_fraction(model, tp)
    dense = p.attn_heads / tp + p.attn_kv * kv_frac + p.attn_shared + p.mlp / tp + p.shared_experts / tp + p.router
    if p.experts:
        k = model.moe.experts_per_token
        dense += k * p.expert_size / (ep if ep > 1 else tp)
    return 2.0 * dense


def stage_shards(
    model: ModelSpec,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    layer_counts: Sequence[int] | None = None,
    include_embeddings: bool = True,
) -> list[StageShard]:
    """Per-device shards of each pipeline stage.

    ``layer_counts`` overrides the even split (the distributed estimator gives each server its
    own share); ``include_embeddings=False`` leaves the embedding and LM head off the stages
    (a Petals client keeps them).
    """
    weight, kv = resolve_dtypes(model, dtype, kv_dtype)
    size = _Sizer(model, weight)
    counts = list(layer_counts) if layer_counts is not None else split_layers(model.num_layers, pp)
    if sum(counts) != model.num_layers or min(counts) < 1:
        raise UserError(f"layer counts {counts} must be positive and sum to {model.num_layers}")
    params = model.params
    kv_layer = kv_bytes_per_token_layer(model, kv) * kv_shard_fraction(model, tp)
    pair_flops = attention_flops_per_pair(model) / tp
    vocab_rows = model.vocab_size * model.hidden_size / tp
    shards = []
    start = 0
    for i, count in enumerate(counts):
        layers = tuple(range(start, start + count))
        start += count
        first, last = i == 0 and include_embeddings, i == len(counts) - 1 and include_embeddings
        weights = experts = 0.0
        flops = 0.0
        kv_by_window: dict[Window, float] = {}
        pairs_by_window: dict[Window, float] = {}
        for idx in layers:
            w, e = _layer_weights(params.layers[idx], model, size, tp, ep)
            weights += w
            experts += e
            flops += _layer_flops(params.layers[idx], model, tp, ep)
            window = model.layer_windows[idx]
            kv_by_window[window] = kv_by_window.get(window, 0.0) + kv_layer
            pairs_by_window[window] = pairs_by_window.get(window, 0.0) + pair_flops
        embedding = size.plain(vocab_rows) if first else 0.0
        # A tied LM head reuses the embedding on one device; a later stage needs its own copy.
        head_shared = model.tie_word_embeddings and first and last
        head = size.plain(vocab_rows) if last and not head_shared else 0.0
        final_norm = size.plain(params.final_norm) if last else 0.0
        vision = size.plain(params.vision / tp) if first else 0.0  # the encoder runs before layer 0
        shards.append(
            StageShard(
                layers=layers,
                has_embedding=first,
                has_lm_head=last,
                weight_bytes=weights + embedding + head + final_norm + vision,
                embedding_bytes=(0.0 if head_shared else embedding) + vision,
                expert_bytes=experts,
                kv_bytes_per_token=kv_by_window,
                linear_flops_per_token=flops,
                attention_flops_per_pair=pairs_by_window,
                lm_head_flops_per_token=2.0 * vocab_rows if last else 0.0,
                num_experts=model.moe.num_experts if model.moe else 0,
                experts_per_token=model.moe.experts_per_token if model.moe else 0,
            )
        )
    return shards
