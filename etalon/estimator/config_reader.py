"""Turn a Hugging Face ``config.json`` dict into a ``ModelSpec``.

Real configs name the same fact differently (``n_head`` / ``num_attention_heads``), omit what
their transformers class defaults, nest the language model of multimodal checkpoints under
``text_config``, and describe sliding windows and MoE layouts in family-specific ways. This module
resolves all of that in one place and raises ``EstimatorError`` naming the missing field and the
spellings it accepts, so a broken config fails with one readable line.
"""

from __future__ import annotations

from typing import Any, Callable

from etalon.estimator.dtypes import get_dtype
from etalon.estimator.errors import EstimatorError
from etalon.estimator.families import GENERIC, Family, get_family, text_model_type
from etalon.estimator.spec import MLASpec, MoESpec, ModelSpec

# Accepted spellings of each field, first match wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "n_embd", "n_embed", "d_model", "dim"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "n_kv_heads"),
    "vocab_size": ("vocab_size", "padded_vocab_size"),
    "intermediate_size": ("intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim"),
    "max_position_embeddings": (
        "max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
        "max_sequence_length", "model_max_length",
    ),
    "num_experts": ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"),
    "experts_per_token": ("num_experts_per_tok", "experts_per_token", "moe_top_k"),
}

# The text config inherits these from the outer multimodal config when it lacks them.
INHERITED = ("torch_dtype", "dtype", "tie_word_embeddings", "quantization_config")


class _Fields:
    """Field access over one config dict with aliases, family defaults and clear errors."""

    def __init__(self, config: dict, family: Family, where: str) -> None:
        self.config = config
        self.family = family
        self.where = where

    def get(self, key: str, default: Any = None) -> Any:
        for alias in ALIASES.get(key, (key,)):
            value = self.config.get(alias)
            if value is not None:
                return value
        return self.family.defaults.get(key, default)

    def require(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            spellings = ALIASES.get(key, (key,))
            also = f" (also accepted: {', '.join(spellings[1:])})" if len(spellings) > 1 else ""
            raise EstimatorError(f"model config {self.where}: missing required field '{key}'{also}")
        return value

    def positive_int(self, key: str, value: Any | None = None) -> int:
        value = self.require(key) if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value <= 0:
            raise EstimatorError(f"model config {self.where}: '{key}' must be a positive integer, got {value!r}")
        return int(value)


# --- sliding windows: which layers attend over a window --------------------------------------

def _windows_none(f: _Fields, n: int, w: int | None) -> list[int | None]:
    return [None] * n


def _windows_all(f: _Fields, n: int, w: int | None) -> list[int | None]:
    return [w] * n


def _windows_alternate(f: _Fields, n: int, w: int | None) -> list[int | None]:
    # Gemma 2: even-indexed layers are local, odd ones global.
    return [w if i % 2 == 0 else None for i in range(n)]


def _windows_pattern(f: _Fields, n: int, w: int | None) -> list[int | None]:
    # Gemma 3: every ``sliding_window_pattern``-th layer is global, the others local.
    pattern = f.positive_int("sliding_window_pattern")
    return [None if (i + 1) % pattern == 0 else w for i in range(n)]


def _windows_qwen(f: _Fields, n: int, w: int | None) -> list[int | None]:
    # Qwen2/3 only use the window when asked, and only above ``max_window_layers``.
    if not f.get("use_sliding_window", False):
        return [None] * n
    start = int(f.get("max_window_layers", 0))
    return [w if i >= start else None for i in range(n)]


def _windows_layer_types(f: _Fields, n: int, w: int | None) -> list[int | None]:
    types = f.get("layer_types")
    if not isinstance(types, list) or len(types) != n:
        raise EstimatorError(
            f"model config {f.where}: 'layer_types' must list one attention type per layer ({n})"
        )
    return [w if "sliding" in str(t) else None for t in types]


WINDOW_RULES: dict[str, Callable[[_Fields, int, int | None], list[int | None]]] = {
    "none": _windows_none,
    "all": _windows_all,
    "alternate": _windows_alternate,
    "pattern": _windows_pattern,
    "qwen": _windows_qwen,
    "layer_types": _windows_layer_types,
}


# --- MoE: which layers are sparse ---------------------------------------------------------------

def _moe_all(f: _Fields, n: int) -> list[bool]:
    return [True] * n


def _moe_deepseek(f: _Fields, n: int) -> list[bool]:
    first_dense = int(f.get("first_k_dense_replace", 0))
    freq = int(f.get("moe_layer_freq", 1))
    return [i >= first_dense and i % freq == 0 for i in range(n)]


def _moe_qwen(f: _Fields, n: int) -> list[bool]:
    dense = set(f.get("mlp_only_layers", []) or [])
    step = int(f.get("decoder_sparse_step", 1))
    return [i not in dense and (i + 1) % step == 0 for i in range(n)]


MOE_RULES: dict[str, Callable[[_Fields, int], list[bool]]] = {
    "all": _moe_all,
    "deepseek": _moe_deepseek,
    "qwen": _moe_qwen,
}


# --- dtypes and quantization ---------------------------------------------------------------------

def _quant_bits(q: dict) -> str:
    bits = int(q.get("bits", q.get("w_bit", 4)))
    return {4: "int4", 8: "int8"}.get(bits, "int4")


QUANT_METHODS: dict[str, Callable[[dict], str]] = {
    "fp8": lambda q: "fp8",
    "fbgemm_fp8": lambda q: "fp8",
    "mxfp4": lambda q: "mxfp4",
    "gptq": _quant_bits,
    "awq": _quant_bits,
    "bitsandbytes": lambda q: "int4" if q.get("load_in_4bit") else "int8",
}


def _activation_dtype(f: _Fields, notes: list[str]) -> str:
    raw = f.get("torch_dtype") or f.get("dtype")
    if raw is None:
        notes.append("config has no torch_dtype; assuming bf16")
        return "bf16"
    name = get_dtype(str(raw)).name
    if name == "bf16":
        return "bf16"
    # vLLM's dtype=auto serves fp32 and fp16 checkpoints in fp16.
    return "fp16"


def _weight_dtype(f: _Fields, activation: str, notes: list[str]) -> tuple[str, str]:
    """(default weight dtype, which weights it applies to)."""
    quant = f.get("quantization_config")
    if not isinstance(quant, dict):
        return activation, "linear"
    method = str(quant.get("quant_method", "")).lower()
    if method not in QUANT_METHODS:
        notes.append(f"unknown quant_method '{method}'; sizing weights as {activation} (override with --dtype)")
        return activation, "linear"
    # MXFP4 checkpoints (gpt-oss) quantize only the routed experts.
    return QUANT_METHODS[method](quant), "experts" if method == "mxfp4" else "linear"


# --- the vision tower of multimodal checkpoints ---------------------------------------------------

def _vision_params(vision: dict, text_hidden: int, notes: list[str]) -> int:
    """Parameters of a ViT-style vision encoder plus a linear projector into the text model.

    Approximate by design: it covers SigLIP/CLIP-shaped towers (patch embedding, learned position
    embeddings, pre-norm blocks with MLP, final norm) so totals of multimodal checkpoints match
    their published sizes; it is not used for per-token compute.
    """
    try:
        h = int(vision["hidden_size"])
        inter = int(vision["intermediate_size"])
        layers = int(vision["num_hidden_layers"])
        patch = int(vision["patch_size"])
        image = int(vision["image_size"])
    except (KeyError, TypeError, ValueError):
        notes.append("vision_config lacks ViT fields; vision tower not counted")
        return 0
    channels = int(vision.get("num_channels", 3))
    patch_embed = channels * patch * patch * h + h
    positions = (image // patch) ** 2 * h
    block = 4 * (h * h + h) + (h * inter + inter + inter * h + h) + 4 * h
    projector = h * text_hidden + h
    return patch_embed + positions + layers * block + 2 * h + projector


# --- the reader ------------------------------------------------------------------------------------

def _text_config(config: dict, where: str) -> tuple[dict, str, dict | None]:
    """(language-model config, its model_type, vision config or None)."""
    outer_type = str(config.get("model_type", ""))
    text = config.get("text_config")
    if not isinstance(text, dict):
        return config, outer_type, None
    merged = dict(text)
    for key in INHERITED:
        if key not in merged and key in config:
            merged[key] = config[key]
    vision = config.get("vision_config")
    return merged, text_model_type(outer_type, text), vision if isinstance(vision, dict) else None


def spec_from_config(config: dict, name: str, where: str | None = None) -> ModelSpec:
    """Build a ModelSpec from a config.json dict; ``where`` names it in error messages."""
    where = where or name
    if not isinstance(config, dict):
        raise EstimatorError(f"model config {where}: expected a JSON object, got {type(config).__name__}")
    text, model_type, vision = _text_config(config, where)
    notes: list[str] = []
    family = get_family(model_type)
    if family is None:
        family = GENERIC
        notes.append(f"unknown model_type '{model_type}'; assuming a Llama-style decoder")
    f = _Fields(text, family, where)

    hidden = f.positive_int("hidden_size")
    layers = f.positive_int("num_hidden_layers")
    heads = f.positive_int("num_attention_heads")
    vocab = f.positive_int("vocab_size")
    if f.get("intermediate_size") is None and family.intermediate_mult:
        intermediate = int(family.intermediate_mult * hidden)
    else:
        intermediate = f.positive_int("intermediate_size")
    max_context = f.positive_int("max_position_embeddings")

    if f.get("multi_query") and not f.get("new_decoder_architecture"):
        kv_heads = 1
    else:
        kv_heads = f.positive_int("num_key_value_heads", f.get("num_key_value_heads") or heads)
    head_dim = f.get("head_dim")
    if head_dim is None:
        if hidden % heads:
            raise EstimatorError(
                f"model config {where}: hidden_size {hidden} is not a multiple of num_attention_heads "
                f"{heads}; add 'head_dim'"
            )
        head_dim = hidden // heads
    head_dim = f.positive_int("head_dim", head_dim)
    if heads % kv_heads:
        raise EstimatorError(
            f"model config {where}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
        )

    mla = None
    if f.get("kv_lora_rank") is not None:
        mla = MLASpec(
            kv_lora_rank=f.positive_int("kv_lora_rank"),
            qk_nope_head_dim=f.positive_int("qk_nope_head_dim"),
            qk_rope_head_dim=f.positive_int("qk_rope_head_dim"),
            v_head_dim=f.positive_int("v_head_dim"),
            q_lora_rank=int(f.get("q_lora_rank")) if f.get("q_lora_rank") else None,
        )
        kv_heads = heads

    moe = None
    num_experts = f.get("num_experts")
    if num_experts:
        expert_inter = f.positive_int("moe_intermediate_size", f.get("moe_intermediate_size") or intermediate)
        shared = int(f.get("n_shared_experts") or 0) * expert_inter
        shared = shared or int(f.get("shared_expert_intermediate_size") or 0)
        moe = MoESpec(
            num_experts=f.positive_int("num_experts", num_experts),
            experts_per_token=f.positive_int("experts_per_token"),
            expert_intermediate_size=expert_inter,
            moe_layers=tuple(MOE_RULES[family.moe_rule](f, layers)),
            shared_intermediate_size=shared,
            shared_expert_gate=family.shared_expert_gate and shared > 0,
        )

    window = f.get("sliding_window")
    window = int(window) if window else None
    if window is None:
        windows: list[int | None] = [None] * layers
    elif f.get("layer_types") is not None:
        windows = WINDOW_RULES["layer_types"](f, layers, window)
    else:
        windows = WINDOW_RULES[family.window_rule](f, layers, window)

    activation = _activation_dtype(f, notes)
    weight, scope = _weight_dtype(f, activation, notes)
    attention_bias = f.get("attention_bias", f.get("bias"))
    mlp_bias = f.get("mlp_bias", f.get("bias"))
    return ModelSpec(
        name=name,
        model_type=model_type,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=vocab,
        max_context=max_context,
        tie_word_embeddings=bool(f.get("tie_word_embeddings", family.tie_default)),
        gated_mlp=family.gated_mlp,
        norm=family.norm,
        norms_per_layer=family.norms_per_layer,
        qk_norm=family.qk_norm,
        qkv_bias=family.qkv_bias if attention_bias is None else bool(attention_bias),
        o_bias=family.o_bias if attention_bias is None else bool(attention_bias),
        mlp_bias=family.mlp_bias if mlp_bias is None else bool(mlp_bias),
        embedding_norm=family.embedding_norm,
        attention_sinks=family.attention_sinks,
        expert_bias=family.expert_bias,
        router_bias=family.router_bias,
        layer_windows=tuple(windows),
        mla=mla,
        moe=moe,
        weight_dtype=weight,
        activation_dtype=activation,
        quantized_scope=scope,
        vision_params=_vision_params(vision, hidden, notes) if vision else 0,
        source=where,
        notes=tuple(notes),
    )
