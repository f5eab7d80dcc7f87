"""The operator roofline against numbers worked out by hand from Llama-3-8B's and Mixtral's shapes
and the H100 datasheet, the fit against constants it must recover, and the simulator running it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from etalon.cli_errors import UserError
from etalon.perf import StepBatch
from etalon.perf.operator_roofline import OperatorEfficiency, OperatorRooflinePerfModel
from etalon.perf.registry import build_perf_model
from etalon.perf.roofline import RooflinePerfModel

H, KV, HD, INTER, VOCAB, LAYERS = 4096, 8, 128, 14336, 128256, 32  # Llama-3-8B's config.json
PEAK, BW = 989e12, 3350e9  # H100 SXM datasheet: dense bf16 FLOP/s, HBM3 bytes/s
NVLINK = 450e9  # NVLink 4, bytes/s per direction
KERNELS_PER_LAYER = 11  # 2 norms, qkv, rotary, attention, o, 2 residual adds, gate_up, act, down
PER_STEP = 3  # embedding, final norm, LM head


def llama(tp: int = 1, **eff) -> OperatorRooflinePerfModel:
    return OperatorRooflinePerfModel("llama-3-8b", "h100-sxm", tp=tp, efficiency=OperatorEfficiency(**eff))


def ops(model, batch: StepBatch) -> dict:
    return {t.name: t for t in model.operator_times(batch)}


def test_qkv_flops_are_the_hand_count():
    for t in (1, 512, 4096):
        qkv = ops(llama(), StepBatch.prefill(t))["qkv_proj"]
        assert qkv.count == LAYERS
        assert qkv.flops == pytest.approx(LAYERS * 2 * t * H * (H + 2 * KV * HD), rel=1e-12)


def test_flops_add_up_to_the_global_rooflines():
    # same shards, same FLOPs: matmuls, attention pairs (windowed) and the LM head
    batch = StepBatch(300, StepBatch.attention_pairs(300, 700), 1, 5, 5 * 900)
    for name, kw in (("llama-3-8b", {"tp": 2}), ("mixtral-8x7b", {"tp": 2}), ("gemma-2-9b", {})):
        model = OperatorRooflinePerfModel(name, "h100-sxm", **kw)
        total = sum(t.flops for t in model.operator_times(batch))
        assert total == pytest.approx(RooflinePerfModel(name, "h100-sxm", **kw).breakdown(batch).flops, rel=1e-9)


def test_a_batch_one_decode_is_weight_bytes_over_bandwidth_plus_kernel_floors():
    eff, floor = 0.8, 5e-6
    model = llama(bandwidth_efficiency=eff, bandwidth_half_bytes=0.0, kernel_floor=floor)
    ctx = 1000
    layer_weights = H * (H + 2 * KV * HD) + H * H + 3 * H * INTER + 2 * H
    weights = 2 * (LAYERS * layer_weights + VOCAB * H + H)  # bf16; the embedding is a lookup
    kv_read = LAYERS * 2 * KV * HD * 2 * (ctx + 1)
    expected = (weights + kv_read) / (BW * eff) + (LAYERS * KERNELS_PER_LAYER + PER_STEP) * floor
    got = model.step_time(StepBatch.decode(1, ctx))
    assert got == pytest.approx(expected, rel=2e-3)  # the rest: activations, a few MB
    assert {t.bound for t in model.operator_times(StepBatch.decode(1, ctx)) if "proj" in t.name} == {"memory"}
    # the global roofline at its defaults predicts this step faster than the operator model
    assert RooflinePerfModel("llama-3-8b", "h100-sxm").step_time(StepBatch.decode(1, ctx)) < got


def test_a_large_prefill_is_compute_bound_at_the_large_gemm_efficiency():
    t, e, floor = 8192, 0.7, 3e-6
    model = llama(gemm_efficiency=e, gemm_half_rows=64.0, kernel_floor=floor)
    times = ops(model, StepBatch.prefill(t))
    gemms = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    assert {times[g].bound for g in gemms} == {"compute"}
    flops = 2 * t * LAYERS * (H * (H + 2 * KV * HD) + H * H + 3 * H * INTER)
    expected = flops / (PEAK * e * t / (t + 64)) + 4 * LAYERS * floor
    assert sum(times[g].seconds for g in gemms) == pytest.approx(expected, rel=1e-9)


def test_tensor_parallel_halves_the_gemms_and_adds_two_all_reduces_per_layer():
    t, floor, latency, link = 4096, 3e-6, 25e-6, 0.8
    one, two = ops(llama(1), StepBatch.prefill(t)), ops(llama(2), StepBatch.prefill(t))
    for g in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"):
        assert two[g].seconds - LAYERS * floor == pytest.approx((one[g].seconds - LAYERS * floor) / 2, rel=1e-9)
    assert "tp_all_reduce" not in one
    payload = t * H * 2  # bf16 hidden states
    per_collective = latency + 2 * (2 - 1) / 2 * payload / (NVLINK * link)
    assert two["tp_all_reduce"].count == 2 * LAYERS
    assert two["tp_all_reduce"].seconds == pytest.approx(2 * LAYERS * per_collective, rel=1e-12)


def test_a_pipeline_sends_the_hidden_states_once_per_stage_boundary():
    t = 1000
    staged = ops(OperatorRooflinePerfModel("llama-3-8b", "h100-sxm", pp=4), StepBatch.prefill(t))
    assert staged["pp_send"].count == 3
    assert staged["pp_send"].seconds == pytest.approx(3 * (25e-6 + t * H * 2 / (NVLINK * 0.8)), rel=1e-12)
    # the layers are all still there: a step's latency runs through every stage
    assert staged["qkv_proj"].seconds == pytest.approx(ops(llama(), StepBatch.prefill(t))["qkv_proj"].seconds)


def test_the_floor_dominates_a_tiny_model_and_adds_once_per_launch():
    tiny = OperatorRooflinePerfModel("smollm2-135m", "h100-sxm")
    batch = StepBatch.decode(1, 100)
    launches = sum(t.count for t in tiny.operator_times(batch))
    no_floor = tiny.with_efficiency(kernel_floor=0.0).step_time(batch)
    assert tiny.step_time(batch) - no_floor == pytest.approx(launches * 3e-6, rel=1e-9)
    assert launches * 3e-6 > 0.75 * tiny.step_time(batch)
    assert ops(tiny, batch)["norm"].bound == "floor"


def test_moe_charges_only_the_experts_the_tokens_hit():
    model = OperatorRooflinePerfModel("mixtral-8x7b", "h100-sxm")  # 8 experts, 2 per token
    expert = 3 * 4096 * 14336
    one = ops(model, StepBatch.decode(1, 500))
    experts = one["experts_gate_up"], one["experts_down"]
    assert sum(t.flops for t in experts) == pytest.approx(LAYERS * 2 * 2 * expert, rel=1e-12)
    assert sum(t.bytes for t in experts) == pytest.approx(LAYERS * 2 * expert * 2, rel=1e-3)
    # 64 tokens hit 8 (1 - (6/8)^64) ~ 8 experts: four times the weights of one token's two
    many = ops(model, StepBatch.decode(64, 64 * 500))
    hit = 8 * (1 - 0.75 ** 64)
    activations = 64 * 2 * ((4096 + 2 * 14336) + (14336 + 4096)) * 2  # in and out of both GEMMs
    assert sum(many[n].bytes for n in ("experts_gate_up", "experts_down")) == pytest.approx(
        LAYERS * (hit * expert * 2 + activations), rel=1e-12)
    # under EP 2 each rank holds 4 whole experts and pays two all-to-alls per layer
    ep = ops(OperatorRooflinePerfModel("mixtral-8x7b", "h100-sxm", tp=2, ep=2), StepBatch.decode(1, 500))
    assert ep["ep_all_to_all"].count == 2 * LAYERS
    assert sum(ep[n].flops for n in ("experts_gate_up", "experts_down")) == pytest.approx(
        LAYERS * 2 * 2 * expert / 2, rel=1e-12)


@pytest.mark.parametrize("name, tp, pp, ep", [("llama-3-8b", 2, 1, 1), ("qwen3-30b-a3b", 2, 2, 2),
                                               ("deepseek-v3", 8, 2, 1), ("gemma-2-9b", 1, 1, 1)])
def test_perf_model_contract_positive_and_monotone(name, tp, pp, ep):
    from perf_contract import assert_positive_and_monotone

    model = OperatorRooflinePerfModel(name, "h100-sxm", tp=tp, pp=pp, ep=ep)
    assert_positive_and_monotone(model, trials=60, max_context=8192, more_prompt=True)


def test_a_prompt_joining_compute_bound_decode_attention_never_makes_it_cheaper():
    # a slow attention kernel makes decode attention compute-bound (4 query heads per KV head:
    # 4-row tiles); a joining prompt's long rows must not lend the decode pairs their shape
    model = llama(attention_efficiency=0.02)
    decode = StepBatch.decode(64, 64 * 8192)
    mixed = StepBatch(512, StepBatch.attention_pairs(512, 0), 1, 64, 64 * 8192)
    alone, joined = ops(model, decode)["attention"], ops(model, mixed)["attention"]
    assert alone.bound == "compute" and joined.seconds > alone.seconds
    pair = 4 * 32 * HD  # FLOPs per (query, key) pair and layer
    expected = LAYERS * pair * (64 * 8192 * (1 + 64 / 4) + 512 * 513 / 2 * (1 + 64 / (512 * 4)))
    assert joined.seconds == pytest.approx(expected / (PEAK * 0.02) + LAYERS * 3e-6, rel=1e-9)


def test_vectorised_decode_steps_equal_single_steps():
    model = llama(2)
    ctx = np.array([100.0, 5000.0, 40000.0])
    many = model.decode_step_times(16, ctx)
    assert many == pytest.approx([model.step_time(StepBatch.decode(16, int(c))) for c in ctx], rel=1e-12)
    assert np.all(np.diff(many) > 0)


def test_fit_recovers_known_constants_from_the_models_own_step_times():
    from test_calibration_roofline import synthetic_profile

    from etalon.calibration.operator_fit import fit_operator_roofline

    truth = llama(gemm_efficiency=0.61, bandwidth_efficiency=0.72, kernel_floor=4.5e-6)
    profile = synthetic_profile(truth, request_overhead=0.003, noise=0.0, seed=0)
    start = llama()  # the defaults: 0.70, 0.85, 3 µs
    fit = fit_operator_roofline(start, profile)
    assert fit.gemm_efficiency == pytest.approx(0.61, rel=0.01)
    assert fit.bandwidth_efficiency == pytest.approx(0.72, rel=0.01)
    assert fit.kernel_floor == pytest.approx(4.5e-6, rel=0.01)
    assert fit.request_overhead == pytest.approx(0.003, rel=0.01)
    assert fit.max_error < 1e-3 and fit.unconstrained == []
    unfitted = [start.step_time(StepBatch.decode(8, 8 * 600))]
    assert abs(unfitted[0] / truth.step_time(StepBatch.decode(8, 8 * 600)) - 1) > 0.1


def test_a_decode_only_profile_leaves_the_gemm_efficiency_alone():
    from etalon.calibration.operator_fit import fit_operator_points

    truth = llama(bandwidth_efficiency=0.7, kernel_floor=2e-6)
    batches = [StepBatch.decode(b, b * c) for b in (1, 4, 16) for c in (300, 3000)]
    y = np.array([truth.step_time(b) for b in batches])
    eff, request, _, unconstrained = fit_operator_points(llama(), batches, y, np.zeros(len(y), bool))
    assert unconstrained == ["gemm_efficiency"] and eff.gemm_efficiency == 0.70 and request == 0.0
    assert eff.bandwidth_efficiency == pytest.approx(0.7, rel=0.01)
    assert eff.kernel_floor == pytest.approx(2e-6, rel=0.01)


def test_fit_cli_prints_a_perf_model_the_registry_builds(tmp_path, capsys):
    from test_calibration_roofline import synthetic_profile

    from etalon.calibration.roofline_fit import main
    from etalon.profiles import save_profile

    truth = llama(gemm_efficiency=0.66, bandwidth_efficiency=0.8)
    path = save_profile(synthetic_profile(truth, 0.0, 0.0, 0), tmp_path / "p.json")
    assert main([str(path), "--model", "llama-3-8b", "--hardware", "h100-sxm", "--kind", "operator"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["gemm_efficiency"] == pytest.approx(0.66, rel=0.01)
    rebuilt = build_perf_model(printed["model"])
    assert rebuilt.step_time(StepBatch.prefill(777)) == pytest.approx(truth.step_time(StepBatch.prefill(777)), rel=0.01)


def test_bad_input_is_one_line_naming_the_field():
    with pytest.raises(UserError, match="efficiency.gemm_efficiency must be in"):
        llama(gemm_efficiency=1.5)
    with pytest.raises(UserError, match="kernel_flor"):
        build_perf_model({"kind": "operator_roofline", "model": "llama-3-8b", "hardware": "h100",
                          "efficiency": {"kernel_flor": 1e-6}})
    with pytest.raises(UserError, match="ep"):
        OperatorRooflinePerfModel("llama-3-8b", "h100", ep=0)
    from etalon.perf.config import PerfModelConfig, RooflineEfficiency

    with pytest.raises(UserError, match="--mfu"):
        PerfModelConfig(perf_model_kind="operator_roofline", efficiency=RooflineEfficiency(mfu=0.3)).validate()


def test_simulator_runs_it_and_small_decode_batches_are_slower_than_the_global_roofline(tmp_path):
    from etalon.simulate import simulate
    from etalon.simulator.config import SimConfig
    from etalon.workload.config import WorkloadConfig

    wl = WorkloadConfig.of(max_num_completed_requests=30, poisson_request_interval_generator_qps=2,
                           fixed_request_generator_prefill_tokens=256,
                           fixed_request_generator_decode_tokens=64)
    base = dict(model="llama-3-8b", hardware="h100-sxm", tp=2, workload=wl, no_plots=True)
    results = {}
    for kind in ("roofline", "operator_roofline"):
        cfg = SimConfig.of(**base, perf_model_kind=kind, output_dir=str(tmp_path / kind)).validate()
        results[kind] = simulate(cfg, quiet=True)
    for kind, r in results.items():
        assert r["counts"]["num_completed"] == 30
        assert r["simulation"]["replicas"][0]["perf_model"]["kind"] == kind
    tbt = {k: r["latency"]["tbt"]["p50"] for k, r in results.items()}
    # TP 2, batches of one or two: every kernel's floor and the all-reduces' fixed cost show
    assert tbt["operator_roofline"] > 1.2 * tbt["roofline"]


def test_estimate_latency_prints_each_operators_share(capsys):
    from etalon.estimate import main

    argv = ["latency", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--batch-size", "4",
            "--context-len", "512", "--operators"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "Per-operator times" in text and "gate_up_proj" in text and "tp_all_reduce" not in text
    assert main(argv + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)["operators"]
    model = llama()
    prefill, decode = data["prefill"], data["decode"]
    assert prefill["prefill_tokens"] == 2048 and decode["decode_batch"] == 4  # 4 x 512, one step
    assert decode["step_s"] == pytest.approx(model.step_time(StepBatch.decode(4, 4 * 513)))
    assert sum(o["seconds"] for o in prefill["operators"]) == pytest.approx(prefill["step_s"])
