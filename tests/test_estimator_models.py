"""Model specs: parameter counts against published totals, KV sizes, and config parsing.

Published figures come from the model publishers (model cards, papers, blog posts) or, where the
publisher only gives a rounded name, from the parameter count the Hugging Face Hub derives from
the safetensors files; each row names its source. They are independent of our counting code.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest

from etalon.estimator import EstimatorError, catalog_names, kv_bytes_per_token, load_model

B = 1e9

# name: (published total, source)
PUBLISHED_TOTAL = {
    "llama-2-7b": (6.74 * B, "HF Hub safetensors count, meta-llama/Llama-2-7b-hf (6.74B)"),
    "llama-2-13b": (13.0 * B, "HF Hub safetensors count, meta-llama/Llama-2-13b-hf (13B)"),
    "llama-2-70b": (69.0 * B, "HF Hub safetensors count, meta-llama/Llama-2-70b-hf (69B)"),
    "llama-3-8b": (8.03 * B, "HF Hub safetensors count, meta-llama/Meta-Llama-3-8B (8.03B)"),
    "llama-3-70b": (70.6 * B, "HF Hub safetensors count, meta-llama/Meta-Llama-3-70B (70.6B)"),
    "llama-3.1-8b": (8.03 * B, "HF Hub safetensors count, meta-llama/Llama-3.1-8B (8.03B)"),
    "llama-3.1-70b": (70.6 * B, "HF Hub safetensors count, meta-llama/Llama-3.1-70B (70.6B)"),
    "llama-3.1-405b": (406 * B, "HF Hub safetensors count, meta-llama/Llama-3.1-405B (406B)"),
    "llama-3.3-70b": (70.6 * B, "HF Hub safetensors count, meta-llama/Llama-3.3-70B-Instruct (70.6B)"),
    "mistral-7b": (7.24 * B, "HF Hub safetensors count, mistralai/Mistral-7B-v0.1 (7.24B)"),
    "mixtral-8x7b": (46.7 * B, "Mistral AI, 'Mixtral of experts' blog post, Dec 2023 (46.7B total)"),
    "mixtral-8x22b": (141 * B, "Mistral AI, 'Cheaper, Better, Faster, Stronger' blog post, Apr 2024 (141B)"),
    "qwen2.5-7b": (7.61 * B, "Qwen2.5-7B-Instruct model card (Number of Parameters: 7.61B)"),
    "qwen2.5-14b": (14.7 * B, "Qwen2.5-14B-Instruct model card (14.7B)"),
    "qwen2.5-32b": (32.5 * B, "Qwen2.5-32B-Instruct model card (32.5B)"),
    "qwen2.5-72b": (72.7 * B, "Qwen2.5-72B-Instruct model card (72.7B)"),
    "qwen3-8b": (8.2 * B, "Qwen3-8B model card (8.2B)"),
    "qwen3-32b": (32.8 * B, "Qwen3-32B model card (32.8B)"),
    "qwen3-30b-a3b": (30.5 * B, "Qwen3-30B-A3B model card (30.5B total)"),
    "qwen3-235b-a22b": (235 * B, "Qwen3-235B-A22B model card (235B total)"),
    "deepseek-v3": (671 * B, "DeepSeek-V3 Technical Report, arXiv:2412.19437 (671B; HF's 685B adds the 14B MTP module)"),
    "gpt-oss-20b": (20.91 * B, "OpenAI gpt-oss model card, Aug 2025, Table 1 (20.91B total)"),
    "gpt-oss-120b": (116.83 * B, "OpenAI gpt-oss model card, Aug 2025, Table 1 (116.83B total)"),
    "phi-3-mini": (3.8 * B, "Phi-3 Technical Report, arXiv:2404.14219 (3.8B)"),
    "gemma-2-9b": (9.24 * B, "HF Hub safetensors count, google/gemma-2-9b (9.24B)"),
    "gemma-2-27b": (27.2 * B, "HF Hub safetensors count, google/gemma-2-27b (27.2B)"),
    "gemma-3-27b": (27.4 * B, "HF Hub safetensors count, google/gemma-3-27b-it (27.4B incl. the SigLIP vision tower)"),
    "falcon-180b": (180 * B, "TII Falcon-180B model card (180B)"),
    "bloom-176b": (176_247_271_424, "BigScience BLOOM model card (176,247,271,424 parameters)"),
    "smollm2-135m": (135e6, "HuggingFaceTB/SmolLM2-135M model card (135M)"),
}

# name: (published active, source, convention)
PUBLISHED_ACTIVE = {
    "mixtral-8x7b": (12.9 * B, "Mistral AI, 'Mixtral of experts' blog post (12.9B per token)", "active"),
    "mixtral-8x22b": (39 * B, "Mistral AI, Mixtral 8x22B blog post (39B active)", "active"),
    "deepseek-v3": (37 * B, "DeepSeek-V3 Technical Report (37B activated per token)", "active"),
    "qwen3-30b-a3b": (3.3 * B, "Qwen3-30B-A3B model card (3.3B activated)", "active"),
    "qwen3-235b-a22b": (22 * B, "Qwen3-235B-A22B model card (22B activated)", "active"),
    # OpenAI counts the unembedding but not the embedding table as active.
    "gpt-oss-20b": (3.61 * B, "OpenAI gpt-oss model card, Table 1 (3.61B active)", "active_excluding_embedding"),
    "gpt-oss-120b": (5.13 * B, "OpenAI gpt-oss model card, Table 1 (5.13B active)", "active_excluding_embedding"),
}


def test_every_catalog_model_has_a_published_figure():
    assert set(catalog_names()) == set(PUBLISHED_TOTAL)


@pytest.mark.parametrize("name", sorted(PUBLISHED_TOTAL))
def test_total_parameters_within_one_percent_of_published(name):
    published, source = PUBLISHED_TOTAL[name]
    total = load_model(name).params.total
    assert total == pytest.approx(published, rel=0.01), f"{name}: {total / B:.3f}B vs {source}"


@pytest.mark.parametrize("name", sorted(PUBLISHED_ACTIVE))
def test_active_parameters_match_published(name):
    published, source, convention = PUBLISHED_ACTIVE[name]
    active = getattr(load_model(name).params, convention)
    # Publishers round active counts to two significant digits ("37B", "3.3B").
    assert active == pytest.approx(published, rel=0.025), f"{name}: {active / B:.3f}B vs {source}"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("llama-3.1-8b", 131072),  # 2 * 32 layers * 8 KV heads * 128 * 2 bytes
        ("llama-3-70b", 327680),  # 2 * 80 * 8 * 128 * 2
        ("mixtral-8x7b", 131072),  # 2 * 32 * 8 * 128 * 2
        ("deepseek-v3", 70272),  # 61 * (512 + 64) * 2
    ],
)
def test_kv_bytes_per_token_bf16(name, expected):
    assert kv_bytes_per_token(load_model(name)) == expected


def test_fp8_kv_halves_bytes_per_token():
    model = load_model("llama-3.1-8b")
    assert kv_bytes_per_token(model, "fp8") == 65536


@pytest.mark.parametrize(
    "name, attention",
    [("llama-2-7b", "MHA"), ("llama-3.1-8b", "GQA"), ("deepseek-v3", "MLA"), ("falcon-180b", "GQA"), ("bloom-176b", "MHA")],
)
def test_attention_type(name, attention):
    assert load_model(name).attention_type == attention


def test_sliding_window_layouts():
    assert load_model("gemma-2-9b").layer_windows[:4] == (4096, None, 4096, None)
    gemma3 = load_model("gemma-3-27b")
    assert gemma3.sliding_layers == 62 - 62 // 6  # every sixth layer is global
    assert gemma3.layer_windows[5] is None and gemma3.layer_windows[0] == 1024
    oss = load_model("gpt-oss-20b")
    assert oss.sliding_layers == 12 and oss.layer_windows[0] == 128
    assert load_model("mistral-7b").sliding_layers == 32
    assert load_model("qwen2.5-7b").sliding_layers == 0  # use_sliding_window is false


def test_nested_text_config_of_multimodal_checkpoint():
    spec = load_model("gemma-3-27b")
    assert spec.model_type == "gemma3_text"
    assert spec.hidden_size == 5376 and spec.tie_word_embeddings
    assert 0.38 * B < spec.params.vision < 0.45 * B  # a SigLIP-400M-class encoder


def test_default_dtypes_from_quantization_config():
    assert load_model("deepseek-v3").weight_dtype == "fp8"
    oss = load_model("gpt-oss-120b")
    assert (oss.weight_dtype, oss.quantized_scope, oss.activation_dtype) == ("mxfp4", "experts", "bf16")
    assert load_model("llama-2-7b").activation_dtype == "fp16"


def test_catalog_resolves_hub_ids_and_names_case_insensitively():
    assert load_model("meta-llama/Llama-3.1-8B").name == "llama-3.1-8b"
    assert load_model("LLAMA-3.1-8B").name == "llama-3.1-8b"


def test_smollm2_matches_the_served_architecture():
    s = load_model("smollm2-135m")
    assert (s.hidden_size, s.num_layers, s.num_heads, s.num_kv_heads, s.intermediate_size, s.vocab_size) == (
        576, 30, 9, 3, 1536, 49152)
    assert s.tie_word_embeddings and s.max_context == 8192 and s.head_dim == 64


def _write(tmp_path, cfg: dict):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def test_local_config_folder_and_file(tmp_path):
    cfg = json.loads((resources.files("etalon") / "data" / "models" / "llama-3.1-8b.json").read_text())
    path = _write(tmp_path, cfg)
    assert load_model(tmp_path).params.total == load_model(path).params.total == load_model("llama-3.1-8b").params.total


def test_aliased_field_names_are_understood(tmp_path):
    # BLOOM-style spelling of a small MHA model.
    path = _write(tmp_path, {"model_type": "bloom", "n_embed": 64, "n_layer": 2, "n_head": 4, "vocab_size": 100})
    spec = load_model(path)
    assert (spec.hidden_size, spec.num_layers, spec.num_heads, spec.intermediate_size, spec.max_context) == (64, 2, 4, 256, 2048)


def test_missing_field_names_the_field(tmp_path):
    path = _write(tmp_path, {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 10,
                             "intermediate_size": 128, "max_position_embeddings": 128})
    with pytest.raises(EstimatorError, match="num_attention_heads"):
        load_model(path)


def test_unknown_model_suggests_close_names():
    with pytest.raises(EstimatorError, match="llama-3.1-8b"):
        load_model("lama-3.1-8b")


def test_unknown_model_type_falls_back_with_a_note(tmp_path):
    path = _write(tmp_path, {"model_type": "mystery", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                             "vocab_size": 10, "intermediate_size": 128, "max_position_embeddings": 128})
    spec = load_model(path)
    assert spec.notes and "mystery" in spec.notes[0]


def test_hub_id_offline_fails_with_one_clear_message(monkeypatch):
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EstimatorError, match="Hugging Face Hub") as err:
        load_model("no-such-org/no-such-model-xyz")
    assert "\n" not in str(err.value)
