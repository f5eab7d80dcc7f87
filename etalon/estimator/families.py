"""Architecture families: the traits of a ``model_type`` that a config.json leaves implicit.

A Hugging Face config says ``"model_type": "qwen2"`` and expects the reader to know that Qwen2 has
biases on q/k/v but not on o, or that Gemma 2 alternates sliding-window and global layers. This
registry records those facts once per family so the parameter counter and the KV sizing never
branch on model names. Unknown model types fall back to ``GENERIC`` (a Llama-style decoder) and
the spec records that it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from etalon.estimator.errors import EstimatorError
from etalon.registry import raw, registry


@dataclass(frozen=True)
class Family:
    """Implicit traits of one ``model_type``.

    ``window_rule`` and ``moe_rule`` name entries of ``models.WINDOW_RULES`` / ``MOE_RULES``.
    ``defaults`` fills fields that real config.json files routinely omit because the
    transformers config class supplies them.
    """

    name: str
    gated_mlp: bool = True
    norm: str = "rms"  # "rms": weight only; "layer": weight and bias
    norms_per_layer: int = 2
    qk_norm: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    tie_default: bool = False
    intermediate_mult: float | None = None  # intermediate = mult * hidden when absent
    embedding_norm: bool = False
    attention_sinks: bool = False
    expert_bias: bool = False
    router_bias: bool = False
    shared_expert_gate: bool = False
    window_rule: str = "none"
    moe_rule: str = "all"
    defaults: dict[str, Any] = field(default_factory=dict)


GENERIC = Family("generic")

def register_family(family: Family, *model_types: str) -> None:
    """Registers ``family`` under each model type (``model_family`` registry); a duplicate
    model type is an error."""
    for model_type in model_types or (family.name,):
        raw("model_family").register(model_type, family)


def get_family(model_type: str) -> Family | None:
    """The registered family, or None for an unknown model type (callers fall back to GENERIC)."""
    families = registry("model_family")
    return families.get(model_type) if model_type in families else None


def known_model_types() -> list[str]:
    return list(registry("model_family").names())


# Multimodal wrappers whose text model's config lacks its own model_type.
MULTIMODAL_TEXT_TYPES: dict[str, str] = {
    "gemma3": "gemma3_text",
    "llava": "llama",
    "llava_next": "llama",
    "mistral3": "mistral",
    "llama4": "llama4_text",
    "qwen2_vl": "qwen2",
    "qwen2_5_vl": "qwen2",
}


def text_model_type(outer_type: str, text_config: dict) -> str:
    """The model_type of a nested ``text_config``."""
    inner = text_config.get("model_type")
    if inner:
        return str(inner)
    if outer_type in MULTIMODAL_TEXT_TYPES:
        return MULTIMODAL_TEXT_TYPES[outer_type]
    raise EstimatorError(
        f"text_config of model_type '{outer_type}' has no model_type; add one "
        f"(known: {', '.join(known_model_types())})"
    )


register_family(Family("llama"), "llama", "llama4_text", "granite", "olmo2", "internlm3")
register_family(Family("mistral", window_rule="all"), "mistral", "ministral")
register_family(Family("mixtral", window_rule="all"), "mixtral")
register_family(Family("phi3", window_rule="all"), "phi3")
register_family(Family("qwen2", qkv_bias=True, window_rule="qwen"), "qwen2")
register_family(
    Family("qwen2_moe", qkv_bias=True, window_rule="qwen", moe_rule="qwen", shared_expert_gate=True),
    "qwen2_moe",
)
register_family(Family("qwen3", qk_norm=True, window_rule="qwen"), "qwen3")
register_family(Family("qwen3_moe", qk_norm=True, window_rule="qwen", moe_rule="qwen"), "qwen3_moe")
register_family(Family("deepseek_v2", moe_rule="deepseek"), "deepseek_v2")
register_family(Family("deepseek_v3", moe_rule="deepseek", router_bias=True), "deepseek_v3")
register_family(
    Family(
        "gpt_oss", qkv_bias=True, o_bias=True, attention_sinks=True, expert_bias=True,
        router_bias=True, window_rule="layer_types",
    ),
    "gpt_oss",
)
register_family(Family("gemma", tie_default=True), "gemma")
register_family(
    Family("gemma2", tie_default=True, norms_per_layer=4, window_rule="alternate"), "gemma2"
)
register_family(
    Family(
        "gemma3_text", tie_default=True, norms_per_layer=4, qk_norm=True, window_rule="pattern",
        defaults={"vocab_size": 262208, "max_position_embeddings": 131072, "sliding_window_pattern": 6},
    ),
    "gemma3_text",
)
register_family(
    Family(
        "falcon", gated_mlp=False, norm="layer", tie_default=True, intermediate_mult=4.0,
        defaults={"max_position_embeddings": 2048},
    ),
    "falcon",
)
register_family(
    Family(
        "bloom", gated_mlp=False, norm="layer", qkv_bias=True, o_bias=True, mlp_bias=True,
        tie_default=True, intermediate_mult=4.0, embedding_norm=True,
        defaults={"max_position_embeddings": 2048},
    ),
    "bloom",
)
