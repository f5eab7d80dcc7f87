"""Memory planning: weights, KV pool, blocks and concurrency against independent figures."""

from __future__ import annotations

import pytest

from etalon.estimator import (
    ParallelConfig,
    ServingConfig,
    kv_bytes_per_request,
    kv_cache_capacity,
    load_hardware,
    load_model,
    plan_memory,
    weight_bytes,
)

GiB = 1024**3


def test_llama31_8b_kv_pool_on_h100_matches_vllm():
    # Reference: vLLM's startup log for meta-llama/Llama-3.1-8B(-Instruct) on one 80 GB H100 at
    # --gpu-memory-utilization 0.9 reports about 51.4 GiB of KV cache (figure given in the etalon
    # issue for this estimator; vLLM 0.6-era logs print 54.6-54.9 GiB for the same setup).
    pool, blocks = kv_cache_capacity("llama-3.1-8b", "h100-sxm", tp=1, pp=1, dtype="bf16", kv_dtype="bf16",
                                     gpu_memory_utilization=0.9, block_size=16)
    assert pool / GiB == pytest.approx(51.4, rel=0.10)
    assert blocks == int(pool // (16 * 131072))


def test_weights_are_params_times_bytes():
    # 8.03B published parameters x 2 bytes (bf16) = 16.06 GB; vLLM logs "Model loading took 14.99 GiB".
    assert weight_bytes(load_model("llama-3.1-8b")) == pytest.approx(8.03e9 * 2, rel=0.005)
    assert weight_bytes(load_model("llama-3.1-8b")) / GiB == pytest.approx(14.99, abs=0.05)


@pytest.mark.parametrize("name, gib", [("gpt-oss-120b", 60.8), ("gpt-oss-20b", 12.8)])
def test_mxfp4_checkpoint_sizes(name, gib):
    # OpenAI gpt-oss model card (Aug 2025), Table 1: checkpoint sizes with MXFP4 experts
    # (4.25 bits per weight incl. the E8M0 scale per 32) and bf16 everything else.
    assert weight_bytes(load_model(name)) / GiB == pytest.approx(gib, rel=0.02)


def test_quantized_dtypes_shrink_linear_weights_only():
    model = load_model("llama-3.1-8b")
    embed_and_head = 2 * 128256 * 4096 * 2  # stay bf16
    linear = model.params.total - 2 * 128256 * 4096
    assert weight_bytes(model, "fp8") == pytest.approx(embed_and_head + linear * 1.0, rel=1e-3)
    assert weight_bytes(model, "int4") == pytest.approx(embed_and_head + linear * 4.125 / 8, rel=1e-3)


def test_kv_heads_replicated_when_tp_exceeds_them():
    model = load_model("llama-3-70b")  # 8 KV heads
    per_device = {tp: plan_memory(model, "h100-sxm", ParallelConfig(tp=tp), context_len=1024).kv_bytes_per_token_per_device
                  for tp in (4, 8, 16)}
    assert per_device[4] == 327680 / 4
    assert per_device[8] == per_device[16] == 327680 / 8  # one KV head per device, replicated beyond 8


def test_mla_latent_is_not_sharded_by_tp():
    plan = plan_memory("deepseek-v3", "h200", ParallelConfig(tp=8), context_len=4096)
    assert plan.kv_bytes_per_token_per_device == 70272


def test_sliding_window_layers_are_capped():
    model = load_model("gpt-oss-20b")  # 12 full layers, 12 sliding-window-128 layers, 2048 B/token/layer
    per_layer = 2 * 8 * 64 * 2
    assert kv_bytes_per_request(model, 100_000) == 12 * per_layer * 100_000 + 12 * per_layer * 128
    mistral = load_model("mistral-7b")  # every layer windowed at 4096
    assert kv_bytes_per_request(mistral, 32768) == kv_bytes_per_request(mistral, 4096)


def test_expert_parallel_holds_whole_experts():
    model = load_model("mixtral-8x7b")
    ep = plan_memory(model, "a100-80gb", ParallelConfig(tp=2, ep=2), context_len=1024)
    tp = plan_memory(model, "a100-80gb", ParallelConfig(tp=2), context_len=1024)
    expert = 3 * 4096 * 14336 * 2  # one gated expert in bf16
    assert ep.weights_gib == pytest.approx(tp.weights_gib, rel=1e-6)  # 4 whole experts == 8 halves
    assert ep.stages[0].weights > 32 * 4 * expert


def test_concurrency_and_blocks_are_consistent():
    plan = plan_memory("llama-3.1-8b", "h100-sxm", context_len=8192, batch_size=32)
    per_request = 8192 * 131072
    assert plan.max_concurrency == pytest.approx(plan.kv_pool_gib * GiB / per_request)
    assert plan.token_capacity == plan.num_blocks * 16
    assert plan.fits_batch and plan.kv_per_request_gib == pytest.approx(1.0)


def test_utilization_and_kv_dtype_move_the_pool_the_right_way():
    low = kv_cache_capacity("llama-3.1-8b", "h100-sxm", gpu_memory_utilization=0.5)
    high = kv_cache_capacity("llama-3.1-8b", "h100-sxm", gpu_memory_utilization=0.9)
    assert high.kv_pool_bytes - low.kv_pool_bytes == pytest.approx(0.4 * load_hardware("h100-sxm").memory_bytes)
    bf16 = kv_cache_capacity("llama-3.1-8b", "h100-sxm", kv_dtype="bf16").num_blocks
    fp8 = kv_cache_capacity("llama-3.1-8b", "h100-sxm", kv_dtype="fp8").num_blocks
    assert fp8 in (2 * bf16, 2 * bf16 + 1)


def test_model_too_big_has_no_pool():
    plan = plan_memory("llama-3.1-70b", "h100-sxm", context_len=1024)
    assert not plan.fits_weights and plan.num_blocks == 0 and plan.max_concurrency == 0


def test_pipeline_stages_split_weights():
    one = plan_memory("llama-3.1-70b", "h100-sxm", ParallelConfig(tp=2), context_len=1024)
    two = plan_memory("llama-3.1-70b", "h100-sxm", ParallelConfig(tp=2, pp=2), context_len=1024)
    assert len(two.stages) == 2
    assert max(s.weights for s in two.stages) < 0.55 * one.stages[0].weights


def test_serving_config_rejects_bad_values():
    with pytest.raises(ValueError, match="gpu-memory-utilization"):
        ServingConfig(gpu_memory_utilization=1.2)


def test_overriding_a_checkpoints_format_quantizes_every_linear_layer():
    model = load_model("gpt-oss-20b")  # checkpoint: MXFP4 experts only, attention stays bf16
    attention = sum(layer.attention for layer in model.params.layers)
    experts = sum(layer.experts for layer in model.params.layers)
    delta = weight_bytes(model, "fp8") - weight_bytes(model)
    assert delta == pytest.approx(attention * (1 - 2) + experts * (1 - 4.25 / 8), rel=0.01)
