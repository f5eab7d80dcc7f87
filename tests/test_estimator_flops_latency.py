"""FLOPs and the batch latency estimate."""

from __future__ import annotations

import pytest

from etalon.estimator import (
    attention_flops,
    causal_pairs,
    decode_flops,
    estimate_latency,
    linear_flops_per_token,
    load_model,
    prefill_flops,
)
from etalon.estimator.latency import chunked_prefill


def test_causal_pairs_match_brute_force():
    for tokens, before, window in [(10, 0, None), (10, 0, 4), (5, 7, 4), (100, 30, 64), (1, 1000, 128)]:
        brute = sum(min(p, window) if window else p for p in range(before + 1, before + tokens + 1))
        assert causal_pairs(tokens, before, window) == brute


def test_two_flops_per_parameter_per_token():
    # Kaplan et al.'s 2N rule: a forward pass costs about 2 FLOPs per non-embedding parameter.
    model = load_model("llama-3.1-8b")
    non_embedding = 8.03e9 - 2 * 128256 * 4096
    assert linear_flops_per_token(model) == pytest.approx(2 * non_embedding, rel=0.005)


def test_prefill_attention_is_quadratic():
    model = load_model("llama-3.1-8b")
    a1, a2 = attention_flops(model, 4096), attention_flops(model, 8192)
    assert a2 / a1 == pytest.approx(4.0, rel=0.001)
    assert prefill_flops(model, 4096).attention == pytest.approx(32 * 4 * 32 * 128 * 4096 * 4097 / 2)


def test_decode_attention_grows_linearly_with_context():
    model = load_model("llama-3.1-8b")
    d1, d2 = decode_flops(model, 1000), decode_flops(model, 2000)
    assert (d2.attention - d1.attention) == pytest.approx(32 * 4 * 32 * 128 * 1000)


def test_moe_flops_use_active_experts():
    mixtral = load_model("mixtral-8x7b")
    assert linear_flops_per_token(mixtral) == pytest.approx(2 * (12.88e9 - 2 * 32000 * 4096), rel=0.01)


def test_chunked_prefill_conserves_tokens_and_pairs():
    steps = chunked_prefill(3, 5000, 8192)
    assert sum(s.prefill_tokens for s in steps) == 15000
    assert all(s.prefill_tokens <= 8192 for s in steps)
    assert sum(s.prefill_attention for s in steps) == pytest.approx(3 * 5000 * 5001 / 2)


def test_latency_estimate_is_consistent():
    e = estimate_latency("llama-3.1-8b", "h100-sxm", batch_size=8, prompt_len=1024, output_len=128)
    assert e.e2e_s == pytest.approx(e.ttft_s + 127 * e.tpot_s)
    assert e.decode_tokens_per_s == pytest.approx(8 / e.tpot_s)
    assert e.decode_bound == "memory" and e.prefill_bound == "compute"
    ideal = estimate_latency("llama-3.1-8b", "h100-sxm", batch_size=8, prompt_len=1024, output_len=128,
                             mfu=1.0, mbu=1.0, step_overhead=0.0)
    assert ideal.tpot_s < e.tpot_s and ideal.ttft_s < e.ttft_s


def test_pipeline_bubble():
    e = estimate_latency("llama-3.1-70b", "h100-sxm", tp=4, pp=2, micro_batches=2, output_len=4)
    assert e.pp_bubble_fraction == pytest.approx(1 / 3)
