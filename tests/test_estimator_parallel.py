"""Layouts: which TP sizes a model admits, and what the planner recommends."""

from __future__ import annotations

import pytest

from etalon.estimator import (
    EstimatorError,
    ParallelConfig,
    load_model,
    min_gpus,
    recommend_layout,
    valid_tp_sizes,
    validate_layout,
    weight_bytes,
)

GiB = 1024**3


@pytest.mark.parametrize(
    "name, expected",
    [
        ("llama-3.1-8b", [1, 2, 4, 8]),  # 32 heads, 8 KV heads, intermediate 14336
        ("smollm2-135m", [1, 3]),  # 9 heads, 3 KV heads; intermediate 1536 is not divisible by 9
        ("falcon-180b", [1, 2, 4, 8]),  # 232 = 8 * 29 heads, 8 KV heads
        ("qwen2.5-7b", [1, 2, 4]),  # 28 heads, 4 KV heads; TP 7 splits no KV head evenly
    ],
)
def test_valid_tp_sizes(name, expected):
    assert valid_tp_sizes(load_model(name), 8) == expected


def test_tp_beyond_kv_heads_replicates():
    assert 16 in valid_tp_sizes(load_model("llama-3.1-8b"), 32)


def test_invalid_tp_error_lists_valid_sizes():
    with pytest.raises(EstimatorError, match=r"--tp 3 .*valid TP sizes: 1, 2, 4, 8"):
        validate_layout(load_model("llama-3.1-8b"), ParallelConfig(tp=3))


def test_ep_needs_moe_and_must_divide_group():
    with pytest.raises(EstimatorError, match="mixture-of-experts"):
        validate_layout(load_model("llama-3.1-8b"), ParallelConfig(tp=2, ep=2))
    with pytest.raises(EstimatorError, match="must divide"):
        validate_layout(load_model("mixtral-8x7b"), ParallelConfig(tp=2, ep=4))


def test_small_model_needs_one_gpu():
    rec = min_gpus("llama-3.1-8b", "h100-sxm", context_len=8192)
    assert (rec.layout.tp, rec.layout.pp, rec.gpus) == (1, 1, 1)


def test_70b_bf16_cannot_fit_one_h100_and_recommendation_is_smallest_fitting_tp():
    model = load_model("llama-3.1-70b")
    # 141 GB of bf16 weights > 0.9 x 80 GB, so at least TP2; 64 x 8k-token requests need
    # 64 * 8192 * 327680 B = 160 GiB of KV in total, which TP4 (4 x ~37 GiB) cannot hold.
    assert weight_bytes(model) > 0.9 * 80 * GiB
    rec = recommend_layout(model, "h100-sxm", context_len=8192, concurrency=64)
    assert (rec.layout.tp, rec.layout.pp) == (8, 1)
    assert rec.plan.max_concurrency >= 64
    fitting = [c for c in rec.candidates if c.fits]
    assert [c.layout.tp for c in rec.candidates] == [1, 2, 4, 8] and len(fitting) == 1


def test_405b_needs_pipeline_across_nodes():
    # 405.9B params x 2 bytes = 756 GiB > 8 GPUs x 71.2 GiB budget: one 8-GPU node cannot hold it.
    rec = recommend_layout("llama-3.1-405b", "h100-sxm", context_len=8192, concurrency=1)
    assert rec.layout.tp == 8 and rec.layout.pp >= 2 and rec.nodes >= 2
    assert "PP" in rec.reasons[0]


def test_moe_recommendation_spreads_experts():
    rec = recommend_layout("mixtral-8x7b", "h100-sxm", context_len=4096, concurrency=16)
    assert rec.layout.ep == rec.layout.tp > 1


def test_impossible_target_is_a_clear_error():
    with pytest.raises(EstimatorError, match="does not fit"):
        recommend_layout("llama-3.1-405b", "rtx-2060", context_len=131072, concurrency=1000)
