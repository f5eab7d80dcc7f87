"""RooflinePerfModel: the textbook roofline numbers and the PerfModel contract."""

from __future__ import annotations

import numpy as np
import pytest

from etalon.estimator import EstimatorError
from etalon.perf.base import StepBatch
from etalon.perf.roofline import RooflinePerfModel, ring_allreduce_seconds

H100_BW = 3.35e12  # NVIDIA H100 SXM datasheet: 3.35 TB/s
H100_BF16 = 989e12  # dense bf16 tensor FLOP/s


def ideal(model="llama-3.1-8b", hardware="h100-sxm", **kw) -> RooflinePerfModel:
    return RooflinePerfModel(model, hardware, mfu=1.0, mbu=1.0, step_overhead=0.0, **kw)


def test_8b_decode_batch1_is_weight_bandwidth_bound():
    # ~16 GB of bf16 weights / 3.35 TB/s ~= 4.8 ms. Exactly: every weight but the embedding table
    # (a lookup: 128256 x 4096 x 2 bytes) is read once, plus 128 KiB of KV per cached token.
    t = ideal().step_time(StepBatch.decode(1, 1))
    streamed = 8.03e9 * 2 - 128256 * 4096 * 2
    assert t == pytest.approx((streamed + 2 * 131072) / H100_BW, rel=0.01)
    assert t == pytest.approx(16e9 / H100_BW, rel=0.10)
    assert ideal().breakdown(StepBatch.decode(1, 1)).bound == "memory"


def test_long_prefill_is_compute_bound_with_the_quadratic_term():
    n = 8192
    # 2 FLOPs per weight per token (non-embedding weights; LM head only for the last token) plus
    # causal attention: 4 * heads * head_dim FLOPs per pair per layer, n(n+1)/2 pairs.
    linear = 2 * (8.03e9 - 2 * 128256 * 4096) * n + 2 * 128256 * 4096
    attention = 32 * 4 * 32 * 128 * n * (n + 1) / 2
    t = ideal().step_time(StepBatch.prefill(n))
    assert t == pytest.approx((linear + attention) / H100_BF16, rel=0.01)
    assert ideal().breakdown(StepBatch.prefill(n)).bound == "compute"


def test_efficiency_factors_divide_the_bound_term():
    batch = StepBatch.decode(1, 1)
    slow = RooflinePerfModel("llama-3.1-8b", "h100-sxm", mfu=1.0, mbu=0.5, step_overhead=0.0)
    assert slow.step_time(batch) == pytest.approx(2 * ideal().step_time(batch))
    prefill = StepBatch.prefill(4096)
    half = RooflinePerfModel("llama-3.1-8b", "h100-sxm", mfu=0.5, mbu=1.0, step_overhead=0.0)
    assert half.step_time(prefill) == pytest.approx(2 * ideal().step_time(prefill))


def test_step_overhead_adds_once():
    a = RooflinePerfModel("llama-3.1-8b", "h100-sxm", step_overhead=0.002)
    b = RooflinePerfModel("llama-3.1-8b", "h100-sxm", step_overhead=0.0)
    batch = StepBatch.decode(4, 4000)
    assert a.step_time(batch) - b.step_time(batch) == pytest.approx(0.002)


def test_moe_decode_reads_only_routed_experts():
    # Mixtral at batch 1 touches 2 of 8 experts: bytes ~ active params (12.9B) minus the embedding table.
    t = ideal("mixtral-8x7b").step_time(StepBatch.decode(1, 1))
    assert t == pytest.approx((12.88e9 - 32000 * 4096) * 2 / H100_BW, rel=0.02)
    # A big batch touches every expert: all 46.7B parameters are streamed.
    t_big = ideal("mixtral-8x7b").breakdown(StepBatch.decode(256, 256))
    assert t_big.bytes == pytest.approx((46.7e9 - 32000 * 4096) * 2, rel=0.02)


def test_tp_allreduce_cost():
    # Ring: 2(n-1)/n * bytes / bw + 2(n-1) hops of latency, two all-reduces per layer.
    assert ring_allreduce_seconds(1e6, 4, 1e9, 1e-6) == pytest.approx(1.5e-3 + 6e-6)
    tp4 = RooflinePerfModel("llama-3.1-70b", "h100-sxm", tp=4)
    payload = 8192 * 2  # one token's hidden state in bf16
    expected = 2 * 80 * (1.5 * payload / 450e9 + 6 * 2e-6)
    assert tp4.breakdown(StepBatch.decode(1, 100)).comm_s == pytest.approx(expected)


def test_tp_splits_memory_time():
    one = ideal().breakdown(StepBatch.decode(1, 1))
    two = ideal(tp=2).breakdown(StepBatch.decode(1, 1))
    assert two.memory_s == pytest.approx(one.memory_s / 2, rel=0.01)


def test_sliding_window_caps_decode_reads():
    model = ideal("mistral-7b")  # all layers windowed at 4096
    a = model.step_time(StepBatch.decode(1, 4096))
    b = model.step_time(StepBatch.decode(1, 30000))
    assert a == pytest.approx(b)


def test_vectorised_decode_matches_scalar():
    model = RooflinePerfModel("gpt-oss-20b", "h100-sxm", tp=2)
    contexts = np.array([8, 800, 80_000, 800_000])
    fast = model.decode_step_times(8, contexts)
    slow = [model.step_time(StepBatch.decode(8, int(c))) for c in contexts]
    assert fast == pytest.approx(slow)


def test_perf_model_contract_positive_and_monotone():
    from perf_contract import assert_positive_and_monotone

    assert_positive_and_monotone(RooflinePerfModel("qwen3-30b-a3b", "a100-80gb", tp=2, pp=2))


def test_constructor_validates_and_describes():
    with pytest.raises(EstimatorError, match="mfu"):
        RooflinePerfModel("llama-3.1-8b", "h100-sxm", mfu=0.0)
    with pytest.raises(EstimatorError, match="valid TP sizes"):
        RooflinePerfModel("llama-3.1-8b", "h100-sxm", tp=3)
    d = RooflinePerfModel("llama-3.1-8b", "h100", mfu=0.4, mbu=0.7).describe()
    assert d["kind"] == "roofline" and d["mfu"] == 0.4 and d["mbu"] == 0.7 and d["hardware"] == "h100-sxm"


def test_fp8_weights_use_fp8_tensor_rate_and_halve_bytes():
    bf16 = ideal().breakdown(StepBatch.prefill(8192))
    fp8 = ideal(dtype="fp8").breakdown(StepBatch.prefill(8192))
    assert fp8.compute_s == pytest.approx(bf16.compute_s * 989 / 1979, rel=1e-9)  # datasheet rates
    d16 = ideal().breakdown(StepBatch.decode(1, 1)).memory_s
    d8 = ideal(dtype="fp8").breakdown(StepBatch.decode(1, 1)).memory_s
    assert d8 < 0.6 * d16


def test_from_spec_round_trips_describe_and_rejects_unknown_keys():
    model = RooflinePerfModel("qwen3-8b", "a100-80gb", tp=2, mfu=0.4, mbu=0.6, step_overhead=0.001)
    spec = {k: v for k, v in model.describe().items() if k != "kind"}
    again = RooflinePerfModel.from_spec(spec)
    batch = StepBatch(512, StepBatch.attention_pairs(512, 100), 1, 7, 7 * 900)
    assert again.step_time(batch) == model.step_time(batch)
    with pytest.raises(ValueError, match="unknown key"):
        RooflinePerfModel.from_spec({**spec, "mfuu": 0.3})
