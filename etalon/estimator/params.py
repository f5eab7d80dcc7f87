"""Parameter counts of a ModelSpec, per layer and by component.

Counts are exact for the architectures the families describe (they reproduce published totals
to well under 1%), and they are kept per layer and per sharding class because the memory
planner and the roofline need to know which weights TP splits by attention heads, which by KV
heads, which EP splits by expert, and which every GPU replicates.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spec computes its counts through this module, lazily
    from etalon.estimator.spec import ModelSpec


@dataclass(frozen=True)
class LayerParams:
    """Parameters of one decoder layer, grouped by how tensor parallelism shards them.

    - ``attn_heads``: q and o projections (and per-head sinks), split by attention heads.
    - ``attn_kv``: k and v projections, split by KV heads (replicated once TP > KV heads).
    - ``attn_shared``: replicated on every TP rank: MLA down-projections and their norms, q/k norms.
    - ``mlp``: the dense MLP (0 in MoE layers).
    - ``experts``: all routed experts; ``expert_size`` is one of them.
    - ``shared_experts``, ``router``, ``norms``.
    """

    attn_heads: int = 0
    attn_kv: int = 0
    attn_shared: int = 0
    mlp: int = 0
    experts: int = 0
    expert_size: int = 0
    shared_experts: int = 0
    router: int = 0
    norms: int = 0

    @property
    def total(self) -> int:
        return (
            self.attn_heads + self.attn_kv + self.attn_shared + self.mlp + self.experts
            + self.shared_experts + self.router + self.norms
        )

    def active(self, experts_per_token: int) -> int:
        """Parameters one token touches: every expert but the ``experts_per_token`` routed to."""
        if not self.experts:
            return self.total
        return self.total - self.experts + experts_per_token * self.expert_size

    @property
    def attention(self) -> int:
        return self.attn_heads + self.attn_kv + self.attn_shared


@dataclass(frozen=True)
class ParamCounts:
    """Parameters of a whole model. ``lm_head`` is 0 when tied to the embedding."""

    layers: tuple[LayerParams, ...]
    embedding: int
    lm_head: int
    final_norm: int
    vision: int
    experts_per_token: int

    @property
    def total(self) -> int:
        return self.embedding + self.lm_head + self.final_norm + self.vision + sum(l.total for l in self.layers)

    @property
    def active(self) -> int:
        """Parameters used per text token, counting the embedding table (Mistral's and DeepSeek's
        convention for "active parameters"); the vision tower is excluded."""
        return (
            self.embedding + self.lm_head + self.final_norm
            + sum(l.active(self.experts_per_token) for l in self.layers)
        )

    @property
    def active_excluding_embedding(self) -> int:
        """Active parameters without the input embedding table (OpenAI's gpt-oss convention: a
        table lookup is not compute). A tied LM head is still counted once."""
        head = self.lm_head if self.lm_head else self.embedding
        return self.active - self.embedding - self.lm_head + head

    def by_component(self) -> dict[str, int]:
        """Totals per component, for tables and breakdown plots."""
        out = {"embedding": self.embedding, "lm_head": self.lm_head, "final_norm": self.final_norm}
        for f in fields(LayerParams):
            if f.name != "expert_size":
                out[f.name] = sum(getattr(l, f.name) for l in self.layers)
        out["vision"] = self.vision
        return out


def _attention(spec: ModelSpec) -> LayerParams:
    h = spec.hidden_size
    if spec.mla is not None:
        m, heads = spec.mla, spec.num_heads
        shared = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank  # kv_a + its norm
        if m.q_lora_rank:
            shared += h * m.q_lora_rank + m.q_lora_rank  # q_a + its norm
            q = m.q_lora_rank * heads * m.qk_head_dim
        else:
            q = h * heads * m.qk_head_dim
        kv_b = m.kv_lora_rank * heads * (m.qk_nope_head_dim + m.v_head_dim)
        o = heads * m.v_head_dim * h
        return LayerParams(attn_heads=q + kv_b + o, attn_shared=shared)
    q_width = spec.num_heads * spec.head_dim
    kv_width = spec.num_kv_heads * spec.head_dim
    q = h * q_width + (q_width if spec.qkv_bias else 0)
    kv = 2 * (h * kv_width + (kv_width if spec.qkv_bias else 0))
    o = q_width * h + (h if spec.o_bias else 0)
    sinks = spec.num_heads if spec.attention_sinks else 0
    qk_norm = 2 * spec.head_dim if spec.qk_norm else 0
    return LayerParams(attn_heads=q + o + sinks, attn_kv=kv, attn_shared=qk_norm)


def _mlp(hidden: int, inter: int, gated: bool, bias: bool) -> int:
    if gated:
        return 3 * hidden * inter + ((2 * inter + hidden) if bias else 0)
    return 2 * hidden * inter + ((inter + hidden) if bias else 0)


def count_parameters(spec: ModelSpec) -> ParamCounts:
    """Count a model's parameters per layer and component."""
    h = spec.hidden_size
    norm_size = h * (2 if spec.norm == "layer" else 1)
    attention = _attention(spec)
    layers = []
    for i in range(spec.num_layers):
        moe = spec.moe
        sparse = moe is not None and moe.moe_layers[i]
        if sparse:
            expert = _mlp(h, moe.expert_intermediate_size, spec.gated_mlp, spec.expert_bias)
            shared = 0
            if moe.shared_intermediate_size:
                shared = _mlp(h, moe.shared_intermediate_size, spec.gated_mlp, False)
                shared += h if moe.shared_expert_gate else 0
            layer = LayerParams(
                experts=moe.num_experts * expert,
                expert_size=expert,
                shared_experts=shared,
                router=h * moe.num_experts + (moe.num_experts if spec.router_bias else 0),
            )
        else:
            layer = LayerParams(mlp=_mlp(h, spec.intermediate_size, spec.gated_mlp, spec.mlp_bias))
        layers.append(
            LayerParams(
                attn_heads=attention.attn_heads,
                attn_kv=attention.attn_kv,
                attn_shared=attention.attn_shared,
                mlp=layer.mlp,
                experts=layer.experts,
                expert_size=layer.expert_size,
                shared_experts=layer.shared_experts,
                router=layer.router,
                norms=spec.norms_per_layer * norm_size,
            )
        )
    embedding = spec.vocab_size * h + (2 * h if spec.embedding_norm else 0)
    return ParamCounts(
        layers=tuple(layers),
        embedding=embedding,
        lm_head=0 if spec.tie_word_embeddings else spec.vocab_size * h,
        final_norm=norm_size,
        vision=spec.vision_params,
        experts_per_token=spec.moe.experts_per_token if spec.moe else 0,
    )
