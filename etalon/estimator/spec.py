"""The normalised description of a decoder-only LLM that every estimate is computed from.

``ModelSpec`` is what a Hugging Face config.json means once aliases, family defaults, nested
text configs and quantization settings are resolved (see ``config_reader``). It is frozen and
plain so it can be built by hand in tests or by a caller who has no config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from etalon.cli_errors import UserError

if TYPE_CHECKING:
    from etalon.estimator.params import ParamCounts


@dataclass(frozen=True)
class MLASpec:
    """Multi-head latent attention (DeepSeek-V2/V3): K and V are cached as one compressed latent
    of ``kv_lora_rank`` plus a shared rotary key of ``qk_rope_head_dim`` per token and layer."""

    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    q_lora_rank: int | None = None

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim


@dataclass(frozen=True)
class MoESpec:
    """Mixture-of-experts MLPs. ``moe_layers[i]`` says whether layer ``i`` is sparse (DeepSeek
    keeps its first layers dense). Shared experts run for every token; their total intermediate
    width is ``shared_intermediate_size`` (0 when there are none)."""

    num_experts: int
    experts_per_token: int
    expert_intermediate_size: int
    moe_layers: tuple[bool, ...]
    shared_intermediate_size: int = 0
    shared_expert_gate: bool = False

    @property
    def num_moe_layers(self) -> int:
        return sum(self.moe_layers)


@dataclass(frozen=True)
class ModelSpec:
    """Architecture facts of one model. Sizes are element counts; ``layer_windows[i]`` is the
    sliding-window length of layer ``i`` or None for full attention."""

    name: str
    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_context: int
    tie_word_embeddings: bool = False
    gated_mlp: bool = True
    norm: str = "rms"
    norms_per_layer: int = 2
    qk_norm: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    embedding_norm: bool = False
    attention_sinks: bool = False
    expert_bias: bool = False
    router_bias: bool = False
    layer_windows: tuple[int | None, ...] = ()
    mla: MLASpec | None = None
    moe: MoESpec | None = None
    weight_dtype: str = "bf16"
    activation_dtype: str = "bf16"
    quantized_scope: str = "linear"  # which weights a quantized dtype applies to: linear | experts
    vision_params: int = 0
    source: str = ""
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.layer_windows:
            object.__setattr__(self, "layer_windows", (None,) * self.num_layers)
        if len(self.layer_windows) != self.num_layers:
            raise UserError(
                f"{self.name}: {len(self.layer_windows)} layer windows for {self.num_layers} layers"
            )

    @property
    def reference(self) -> str:
        """A string ``load_model`` resolves back to this model (catalog name, path or Hub id)."""
        for prefix in ("catalog:", "hub:"):
            if self.source.startswith(prefix):
                return self.source[len(prefix):]
        return self.source or self.name

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def attention_type(self) -> str:
        """MHA, GQA, MQA or MLA, the family of the attention's KV layout."""
        if self.mla is not None:
            return "MLA"
        if self.num_kv_heads == self.num_heads:
            return "MHA"
        if self.num_kv_heads == 1:
            return "MQA"
        return "GQA"

    @property
    def sliding_layers(self) -> int:
        return sum(w is not None for w in self.layer_windows)

    @property
    def attention_layout(self) -> str:
        """Human summary, e.g. ``GQA, 12 of 24 layers sliding-window 128 (hybrid)``."""
        text = self.attention_type
        n = self.sliding_layers
        if n:
            windows = sorted({w for w in self.layer_windows if w is not None})
            kind = "hybrid" if n < self.num_layers else "all layers"
            text += f", {n} of {self.num_layers} layers sliding-window {'/'.join(map(str, windows))} ({kind})"
        return text

    @cached_property
    def params(self) -> "ParamCounts":
        """Parameter counts by component (computed once; see ``params.count_parameters``)."""
        from etalon.estimator.params import count_parameters

        return count_parameters(self)

    def summary(self) -> dict:
        """A JSON-able description for reports."""
        p = self.params
        out = {
            "name": self.name,
            "source": self.source,
            "model_type": self.model_type,
            "params_total": p.total,
            "params_active": p.active,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size,
            "max_context": self.max_context,
            "attention": self.attention_layout,
            "tie_word_embeddings": self.tie_word_embeddings,
            "weight_dtype": self.weight_dtype,
            "activation_dtype": self.activation_dtype,
        }
        if self.moe:
            out["moe"] = {
                "num_experts": self.moe.num_experts,
                "experts_per_token": self.moe.experts_per_token,
                "expert_intermediate_size": self.moe.expert_intermediate_size,
                "moe_layers": self.moe.num_moe_layers,
                "shared_intermediate_size": self.moe.shared_intermediate_size,
            }
        if self.mla:
            out["mla"] = {
                "kv_lora_rank": self.mla.kv_lora_rank,
                "qk_rope_head_dim": self.mla.qk_rope_head_dim,
                "qk_nope_head_dim": self.mla.qk_nope_head_dim,
                "v_head_dim": self.mla.v_head_dim,
                "q_lora_rank": self.mla.q_lora_rank,
            }
        if self.notes:
            out["notes"] = list(self.notes)
        return out
